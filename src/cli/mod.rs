//! The command line: the `protokd` parser, its global options (`--threads`, and `--kernels`,
//! kept only to refuse it) and one module per subcommand, each holding that subcommand's
//! arguments and its `run` (check the arguments, call the library, print).

mod audit;
mod bench;
mod convert;
mod demo;
mod engine;
mod evaluate;
mod phantom;
mod score;
mod segment;
mod train;
mod validate;
mod verify;
mod window;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// ProtoKD: prototype knowledge distillation for brain-tumour segmentation with missing MRI
/// modalities. Every number is reproducible bit for bit (see the protokd-reference crate).
#[derive(Parser)]
#[command(name = "protokd", version, about, long_about = None)]
pub struct Cli {
    /// Worker threads (default: all cores). Results are bit-identical for every thread count.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Replaced by `--engine spec|cpu` (kept only to say so).
    #[arg(long, global = true, hide = true, num_args = 0..=1, default_missing_value = "")]
    kernels: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Re-run one computation from safetensors files and print the SHA-256 of every output.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write a cohort of BraTS-like phantom cases (MNI152 anatomy, simulated glioma).
    ///
    /// Example: protokd phantom --out phantoms --cases 4 --seed 1 --size 48,48,32
    Phantom(phantom::PhantomArgs),
    /// Dice, HD95, sensitivity and specificity of a segmentation against a label map, per
    /// region (WT, TC, ET), as the method page section 7 (medpy's hd95), and the BraTS
    /// challenge's legacy and lesion-wise Dice and HD95 (docs/metrics.md).
    ///
    /// Both files hold raw BraTS labels (0/1/2/4 for 2018-2021, 0/1/2/3 for 2023+, 2024 GLI/MET
    /// and PED sets with --labels or BraTS file names) on the same grid (dims and affine). HD95
    /// is in mm from the NIfTI voxel size unless --voxel-units.
    ///
    /// Example: protokd score --pred seg.nii.gz --label case_seg.nii.gz --json scores.json
    Score(score::ScoreArgs),
    /// Segment new cases with a trained model (sliding window, method page section 7).
    ///
    /// --input is a BraTS case folder, a dataset folder (then --out is a folder) or NIfTI files
    /// in the model's modality order. Labels are written in the input release's raw set.
    ///
    /// Example: protokd segment --model runs/t1ce-protokd/best.safetensors --input Brats18_X --out seg.nii.gz
    Segment(segment::SegmentArgs),
    /// Segment every case of a dataset with a model, score each against its labels and
    /// summarise (per-case CSV, JSON summary, a table like the paper's Table 1).
    ///
    /// Example: protokd evaluate --model runs/t1ce-protokd/best.safetensors --data BraTS2018 --cases data/brats2018-split/test_list.txt --out reports/t1ce-protokd
    Evaluate(evaluate::EvaluateArgs),
    /// The whole pipeline on BraTS-like phantoms: phantoms, a teacher, a unimodal baseline and a
    /// ProtoKD student, evaluated on held-out phantoms (a table like the paper's Table 1).
    ///
    /// The default plan (n_filters 4, 24 phantoms of 64 x 64 x 40 voxels, 30 epochs) takes a
    /// few minutes on 2 CPU cores; --full runs the paper's configuration (for a GPU).
    ///
    /// Example: protokd demo --out protokd-demo --modality t1ce
    Demo(demo::DemoArgs),
    /// Run the golden suite (four golden patches through every heavy operation and a whole
    /// ProtoKD step) on the specification and on every other engine (cpu and emulated always,
    /// cuda where a driver is present) and compare the bits; exits 1 on any difference.
    ///
    /// Example: protokd verify --json verify.json; protokd verify --engines cuda
    Verify(verify::VerifyArgs),
    /// The qualification report a validation team files: installation (build, binary SHA-256,
    /// machine, golden files), operation (every engine against the spec, thread counts, recorded
    /// hashes, PyTorch parity), performance (an end-to-end run on phantoms against its record,
    /// timings per engine) and the traceability matrix of docs/requirements.md. Writes
    /// report.html, report.md and report.json; exits 1 when a check fails.
    ///
    /// Example: protokd validate --out validation
    Validate(validate::ValidateArgs),
    /// Time a VNet forward or a whole ProtoKD step on seeded inputs (one warm-up, then
    /// --repeat timed runs: median, min, max, peak memory).
    ///
    /// Example: protokd bench --what step --shape 1,4,96,128,128 --filters 16 --repeat 3 --json step.json
    Bench(bench::BenchArgs),
    /// Convert a PyTorch checkpoint (.pth/.pt from torch.save) into protokd's checkpoint, and
    /// its Adam state, if any, into an optimiser file beside it. No Python, no pickle run.
    ///
    /// Example: protokd convert best_model.pth teacher.safetensors
    Convert(convert::ConvertArgs),
    /// Train a four-modality teacher or distil a student (run folders, resumable bit for bit).
    #[command(subcommand)]
    Train(train::TrainCommand),
}

/// Runs the command line: the global options first, then the subcommand. The exit status is
/// success unless the subcommand says otherwise (`verify` on a difference, `train` on Ctrl-C).
pub fn run(cli: Cli) -> Result<ExitCode> {
    refuse_kernels_switch(cli.kernels.as_deref())?;
    start_thread_pool(cli.threads)?;
    match cli.command {
        Command::Audit(c) => audit::run(c)?,
        Command::Convert(a) => convert::run(a)?,
        Command::Phantom(a) => phantom::run(a)?,
        Command::Score(a) => score::run(a)?,
        Command::Segment(a) => segment::run(a)?,
        Command::Evaluate(a) => evaluate::run(a)?,
        Command::Demo(a) => demo::run(a)?,
        Command::Verify(a) => return verify::run(&a),
        Command::Validate(a) => return validate::run(&a),
        Command::Bench(a) => bench::run(a)?,
        Command::Train(c) => return train::run(&c),
    }
    Ok(ExitCode::SUCCESS)
}

/// Most worker threads per core `--threads` may ask for: 4. More threads than cores only add
/// switching (results are the same for every count), and a huge count would spawn thousands of
/// threads, each with its own stack, before any work starts.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// `--threads N`: the global rayon pool with `N` workers (default: rayon's, all cores); `N` must
/// lie in 1 ..= [`MAX_THREADS_PER_CORE`] x the cores (`available_parallelism`).
fn start_thread_pool(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let limit = MAX_THREADS_PER_CORE * cores;
        anyhow::ensure!(
            n <= limit,
            "--threads {n} is above the limit of {limit} ({MAX_THREADS_PER_CORE} per core, \
             {cores} cores)"
        );
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot start the thread pool")?;
    }
    Ok(())
}

/// The environment variable earlier versions read to choose the CPU kernels.
const KERNELS_ENV: &str = "PROTOKD_KERNELS";

/// `--kernels` and `PROTOKD_KERNELS` chose between the spec and the fast CPU kernels before
/// the engines were split; both are refused with the new spelling rather than ignored.
fn refuse_kernels_switch(kernels: Option<&str>) -> Result<()> {
    const NEW: &str = "use `--engine spec` for the specification or `--engine cpu` (the \
                       default) for the fast CPU engine; `protokd verify` compares every engine \
                       with the spec";
    if let Some(k) = kernels {
        let given = if k.is_empty() {
            String::new()
        } else {
            format!(" {k}")
        };
        anyhow::bail!("--kernels{given} was replaced by --engine: {NEW}");
    }
    if let Some(v) = std::env::var_os(KERNELS_ENV) {
        anyhow::bail!(
            "the environment variable {KERNELS_ENV} (= `{}`) is no longer read; unset it and \
             {NEW}",
            v.to_string_lossy()
        );
    }
    Ok(())
}
