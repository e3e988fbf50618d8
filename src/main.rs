//! The `protokd` command-line tool.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use protokd::audit::replay as audit;
use protokd::data::phantom;
use protokd::modality::Modalities;
use protokd::train::cli as train_cli;
use protokd_reference::adam::AdamConfig;
use protokd_reference::step::{StepConfig, StepMode};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// ProtoKD: prototype knowledge distillation for brain-tumour segmentation with missing MRI
/// modalities. Every number is reproducible bit for bit (see the protokd-reference crate).
#[derive(Parser)]
#[command(name = "protokd", version, about, long_about = None)]
struct Cli {
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
    Audit(AuditCommand),
    /// Write a cohort of BraTS-like phantom cases (MNI152 anatomy, simulated glioma).
    ///
    /// Example: protokd phantom --out phantoms --cases 4 --seed 1 --size 48,48,32
    Phantom(PhantomCli),
    /// Dice, HD95, sensitivity and specificity of a segmentation against a label map, per
    /// region (WT, TC, ET), as the method page section 7 (medpy's hd95).
    ///
    /// Both files hold raw BraTS labels (0/1/2/4 for 2018-2021, 0/1/2/3 for 2023+) on the same
    /// grid (dims and affine). HD95 is in mm from the NIfTI voxel size unless --voxel-units.
    ///
    /// Example: protokd score --pred seg.nii.gz --label case_seg.nii.gz --json scores.json
    Score(ScoreCli),
    /// Segment new cases with a trained model (sliding window, method page section 7).
    ///
    /// --input is a BraTS case folder, a dataset folder (then --out is a folder) or NIfTI files
    /// in the model's modality order. Labels are written in the input release's raw set.
    ///
    /// Example: protokd segment --model runs/t1ce-protokd/best.safetensors --input Brats18_X --out seg.nii.gz
    Segment(protokd::infer::segment::SegmentArgs),
    /// Segment every case of a dataset with a model, score each against its labels and
    /// summarise (per-case CSV, JSON summary, a table like the paper's Table 1).
    ///
    /// Example: protokd evaluate --model runs/t1ce-protokd/best.safetensors --data BraTS2018 --cases data/brats2018-split/test_list.txt --out reports/t1ce-protokd
    Evaluate(protokd::eval::evaluate::EvaluateArgs),
    /// The whole pipeline on BraTS-like phantoms: phantoms, a teacher, a unimodal baseline and a
    /// ProtoKD student, evaluated on held-out phantoms (a table like the paper's Table 1).
    ///
    /// The default plan (n_filters 4, 24 phantoms of 64 x 64 x 40 voxels, 30 epochs) takes a
    /// few minutes on 2 CPU cores; --full runs the paper's configuration (for a GPU).
    ///
    /// Example: protokd demo --out protokd-demo --modality t1ce
    Demo(DemoCli),
    /// Run the golden suite (four golden patches through every heavy operation and a whole
    /// ProtoKD step) on the specification and on every other engine (cpu and emulated always,
    /// cuda where a driver is present) and compare the bits; exits 1 on any difference.
    ///
    /// Example: protokd verify --json verify.json; protokd verify --engines cuda
    Verify(VerifyCli),
    /// Time a VNet forward or a whole ProtoKD step on seeded inputs (one warm-up, then
    /// --repeat timed runs: median, min, max, peak memory).
    ///
    /// Example: protokd bench --what step --shape 1,4,96,128,128 --filters 16 --repeat 3 --json step.json
    Bench(BenchCli),
    /// Train a four-modality teacher or distil a student (run folders, resumable bit for bit).
    #[command(subcommand)]
    Train(TrainCommand),
}

#[derive(Args)]
struct DemoCli {
    /// Output folder (refused if it exists, unless --force).
    #[arg(long, default_value = "protokd-demo", value_name = "DIR")]
    out: PathBuf,
    /// The students' modality (t1, t2, t1ce, flair, or a comma-separated subset).
    #[arg(long, default_value = "t1ce")]
    modality: String,
    /// Students (unimodal and ProtoKD) for each of the four modalities.
    #[arg(long)]
    all_modalities: bool,
    /// The paper's configuration on 285 full-size phantoms (days on a CPU; meant for a GPU).
    #[arg(long)]
    full: bool,
    /// Replace the files of an existing output folder.
    #[arg(long)]
    force: bool,
    /// Folder holding the MNI152 templates (default: data/mni152).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    #[command(flatten)]
    engine: protokd::engine::EngineArg,
}

#[derive(Args)]
struct VerifyCli {
    /// Folder of the golden patches (default: golden/ here, else in the source tree).
    #[arg(long, value_name = "DIR")]
    golden: Option<PathBuf>,
    /// Also write the report as JSON (refused if it exists, unless --force).
    #[arg(long, value_name = "REPORT.json")]
    json: Option<PathBuf>,
    /// Replace an existing --json file.
    #[arg(long)]
    force: bool,
    /// The engines to compare with the spec, comma-separated (cpu, emulated, cuda). Default:
    /// every available one. `--device` is the older spelling.
    #[arg(
        long,
        alias = "device",
        value_enum,
        value_delimiter = ',',
        value_name = "ENGINES"
    )]
    engines: Vec<protokd::engine::EngineKind>,
}

#[derive(Args)]
struct BenchCli {
    /// What to time.
    #[arg(long, value_enum)]
    what: protokd::audit::bench::What,
    /// Input shape N,C,D,H,W (C = 4 for a step; D, H, W multiples of 16).
    #[arg(long, default_value = "1,4,96,128,128", value_name = "N,C,D,H,W")]
    shape: String,
    /// VNet width.
    #[arg(long, default_value_t = 16, value_name = "F")]
    filters: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 1, value_name = "W")]
    warmup: usize,
    /// Timed runs after the warm-up.
    #[arg(long, default_value_t = 3, value_name = "R")]
    repeat: usize,
    /// Also write the record as JSON (refused if it exists, unless --force).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Replace an existing --json file.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    engine: protokd::engine::EngineArg,
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Train the four-modality teacher (L_seg, poly learning rate; the paper's defaults).
    ///
    /// Example: protokd train teacher --data BraTS2018 --split-dir data/brats2018-split --out runs/teacher
    Teacher {
        #[command(flatten)]
        run: train_cli::RunOptions,
    },
    /// Train a student on one modality (or a subset): ProtoKD, pixel KD, or the unimodal baseline.
    ///
    /// Example: protokd train student --data BraTS2018 --split-dir data/brats2018-split --modality t1ce --teacher runs/teacher/best.safetensors --out runs/t1ce-protokd
    Student {
        /// Input modality, or a comma-separated subset (t1, t2, t1ce, flair).
        #[arg(long, value_name = "t1ce")]
        modality: String,
        /// Teacher checkpoint (protokd and kd).
        #[arg(long, value_name = "T.safetensors")]
        teacher: Option<PathBuf>,
        /// The student's loss.
        #[arg(long, value_enum, default_value = "protokd")]
        method: train_cli::StudentMethod,
        #[command(flatten)]
        run: train_cli::RunOptions,
    },
}

#[derive(Args)]
struct ScoreCli {
    /// The segmentation to score (NIfTI, raw BraTS labels).
    #[arg(long, value_name = "SEG.nii.gz")]
    pred: PathBuf,
    /// The reference label map (NIfTI, raw BraTS labels, same grid as --pred).
    #[arg(long, value_name = "GT.nii.gz")]
    label: PathBuf,
    /// Also write the metrics as JSON (atomically; refused if it exists, unless --force).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Replace an existing --json file.
    #[arg(long)]
    force: bool,
    /// HD95 in voxels (spacing 1 on every axis), as the authors' evaluation, instead of mm.
    #[arg(long)]
    voxel_units: bool,
    /// Label set of both files: 2018 (ET = 4) or 2023 (ET = 3). Default: inferred from the
    /// labels present (4 means 2018, 3 means 2023; with neither, labels 0-2 mean the same in
    /// both and 2018 is used).
    #[arg(long, value_name = "2018|2023")]
    release: Option<String>,
}

#[derive(Args)]
struct PhantomCli {
    /// Output folder (created if missing); receives one folder per case.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of cases (indices 0..N).
    #[arg(long, value_name = "N")]
    cases: u64,
    /// Cohort seed; the same seed gives the same bytes.
    #[arg(long, value_name = "S")]
    seed: u64,
    /// BraTS naming and labels: 2018 (`_t1 _t2 _t1ce _flair _seg`, ET = 4) or 2023 (`-t1n -t2w
    /// -t1c -t2f -seg`, ET = 3).
    #[arg(long, default_value = "2018", value_name = "2018|2023")]
    release: String,
    /// Voxels along x, y, z over the fixed 240 x 240 x 155 mm field of view.
    #[arg(long, default_value = "240,240,155", value_name = "X,Y,Z")]
    size: String,
    /// Folder holding the MNI152 T1, GM and WM templates (default: data/mni152 here, else
    /// in the source tree protokd was built from).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// One VNet forward pass.
    ///
    /// Example: protokd audit forward --weights student.safetensors --input x.safetensors --out y.safetensors
    Forward {
        /// Checkpoint (protokd- or PyTorch-written safetensors state_dict).
        #[arg(long, value_name = "W.safetensors")]
        weights: PathBuf,
        /// File holding `image`, f32 [N, C, D, H, W] (D, H, W multiples of 16).
        #[arg(long, value_name = "X.safetensors")]
        input: PathBuf,
        /// Output file; receives `features` and `logits` (f32).
        #[arg(long, value_name = "Y.safetensors")]
        out: PathBuf,
        /// Training mode (BatchNorm with batch statistics) instead of evaluation mode.
        #[arg(long)]
        train: bool,
        #[command(flatten)]
        engine: protokd::engine::EngineArg,
    },
    /// One training step (no augmentation): losses, gradients and the updated state.
    ///
    /// Example: protokd audit step --student s.safetensors --teacher t.safetensors --batch b.safetensors --modality t1ce --out o.safetensors
    Step(StepCli),
}

#[derive(Args)]
struct StepCli {
    /// Student checkpoint.
    #[arg(long, value_name = "S.safetensors")]
    student: PathBuf,
    /// Teacher checkpoint (four channels); --mode protokd only.
    #[arg(long, value_name = "T.safetensors")]
    teacher: Option<PathBuf>,
    /// Batch: `image` f32 [N, 4, D, H, W] (T1, T2, T1ce, FLAIR) and `label` [N, 1, D, H, W],
    /// internal labels 0..3 in any integer or float dtype.
    #[arg(long, value_name = "B.safetensors")]
    batch: PathBuf,
    /// Student modalities: t1, t2, t1ce, flair or a comma-separated subset (default: the
    /// student checkpoint's recorded modalities).
    #[arg(long)]
    modality: Option<String>,
    /// Output file: `loss.*`, `grad.<name>` and `param.<name>`.
    #[arg(long, value_name = "O.safetensors")]
    out: PathBuf,
    /// Which step.
    #[arg(long, value_enum, default_value_t = ModeArg::Protokd)]
    mode: ModeArg,
    /// Weight of the pixel-wise KD loss.
    #[arg(long, default_value_t = 10.0)]
    kd_weight: f32,
    /// Weight of the prototype loss.
    #[arg(long, default_value_t = 0.1)]
    proto_weight: f32,
    /// KD temperature.
    #[arg(long, default_value_t = 10.0)]
    temperature: f32,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Adam L2 weight decay.
    #[arg(long, default_value_t = 1e-5)]
    weight_decay: f64,
    #[command(flatten)]
    engine: protokd::engine::EngineArg,
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

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// L_seg + kd_weight * L_kd + proto_weight * L_proto against a frozen teacher.
    Protokd,
    /// L_seg on the student alone (unimodal baseline).
    Baseline,
    /// L_seg on all four channels (teacher pretraining).
    Teacher,
}

/// Prints one `sha256 <hex>  <name>` line per output tensor, then a summary. A closed pipe
/// (`protokd ... | head`) ends the listing quietly.
fn print_hashes(hashes: &[(String, String)], out: &std::path::Path) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut lines = hashes
        .iter()
        .map(|(name, hash)| format!("sha256 {hash}  {name}"))
        .collect::<Vec<_>>();
    lines.push(format!(
        "wrote {} tensors to {}",
        hashes.len(),
        out.display()
    ));
    for line in lines {
        match writeln!(stdout, "{line}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.context("cannot write to standard output")?,
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    refuse_kernels_switch(cli.kernels.as_deref())?;
    if let Some(n) = cli.threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot start the thread pool")?;
    }
    match cli.command {
        Command::Audit(AuditCommand::Forward {
            weights,
            input,
            out,
            train,
            engine,
        }) => {
            let hashes = audit::forward(&engine.open()?, &weights, &input, &out, train)?;
            print_hashes(&hashes, &out)?;
        }
        Command::Audit(AuditCommand::Step(s)) => {
            let mode = match s.mode {
                ModeArg::Protokd => StepMode::ProtoKd,
                ModeArg::Baseline => StepMode::Baseline,
                ModeArg::Teacher => StepMode::Teacher,
            };
            for (name, v) in [
                ("--kd-weight", s.kd_weight),
                ("--proto-weight", s.proto_weight),
                ("--temperature", s.temperature),
            ] {
                anyhow::ensure!(
                    v.is_finite() && v >= 0.0,
                    "{name} must be a finite number >= 0, got {v}"
                );
            }
            anyhow::ensure!(s.temperature > 0.0, "--temperature must be > 0");
            anyhow::ensure!(
                s.lr.is_finite() && s.lr >= 0.0,
                "--lr must be a finite number >= 0, got {}",
                s.lr
            );
            anyhow::ensure!(
                s.weight_decay.is_finite() && s.weight_decay >= 0.0,
                "--weight-decay must be a finite number >= 0, got {}",
                s.weight_decay
            );
            let config = StepConfig {
                mode,
                kd_weight: s.kd_weight,
                proto_weight: s.proto_weight,
                temperature: s.temperature,
                adam: AdamConfig {
                    lr: s.lr,
                    weight_decay: s.weight_decay,
                    ..AdamConfig::default()
                },
            };
            let modality = s.modality.as_deref().map(Modalities::parse).transpose()?;
            let args = audit::StepArgs {
                student: &s.student,
                teacher: s.teacher.as_deref(),
                batch: &s.batch,
                modality,
                out: &s.out,
                config,
                compute: &s.engine.open()?,
            };
            let hashes = audit::step(&args)?;
            print_hashes(&hashes, &s.out)?;
        }
        Command::Phantom(p) => run_phantom(p)?,
        Command::Score(s) => run_score(s)?,
        Command::Segment(a) => protokd::infer::segment::run(a)?,
        Command::Evaluate(a) => protokd::eval::evaluate::run(a)?,
        Command::Demo(d) => {
            let opts = protokd::demo::DemoOptions {
                compute: d.engine.open()?,
                out: d.out,
                modality: Modalities::parse(&d.modality).context("--modality")?,
                all_modalities: d.all_modalities,
                plan: if d.full {
                    protokd::demo::Plan::full()
                } else {
                    protokd::demo::Plan::small()
                },
                force: d.force,
                templates: d.templates,
            };
            protokd::demo::run(&opts, &mut |line| println!("{line}"))?;
        }
        Command::Bench(b) => run_bench(b)?,
        Command::Verify(v) => return run_verify(&v),
        Command::Train(t) => {
            protokd::train::install_interrupt_handler()?;
            let outcome = match &t {
                TrainCommand::Teacher { run } => train_cli::run(train_cli::Role::Teacher, run)?,
                TrainCommand::Student {
                    modality,
                    teacher,
                    method,
                    run,
                } => train_cli::run(
                    train_cli::Role::Student {
                        method: *method,
                        modality,
                        teacher: teacher.as_deref(),
                    },
                    run,
                )?,
            };
            if outcome.stopped == Some(protokd::train::Stop::Interrupted) {
                return Ok(ExitCode::from(130));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `protokd phantom`: checks the arguments, then writes the cohort, one line per case.
fn run_phantom(p: PhantomCli) -> Result<()> {
    let release = phantom::parse_release(&p.release).context("--release")?;
    let size = phantom::parse_size(&p.size)?;
    let config = phantom::PhantomConfig::new(size, release)?;
    anyhow::ensure!(p.cases >= 1, "--cases must be at least 1, got {}", p.cases);
    let dir = phantom::find_templates(p.templates.as_deref())?;
    let templates = phantom::Templates::load(&dir)?;
    let mut stdout = std::io::stdout().lock();
    let mut say = |line: String| match writeln!(stdout, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to standard output"),
    };
    phantom::write_cohort(
        &p.out,
        &templates,
        &config,
        p.seed,
        p.cases,
        |case, path| {
            let t = &case.tumour;
            say(format!(
                "wrote {}: {} tumour, R {:.1} mm, voxels NCR {} ED {} ET {}",
                path.display(),
                t.kind.name(),
                t.radius_mm,
                t.voxels[0],
                t.voxels[1],
                t.voxels[2]
            ))
        },
    )?;
    say(format!(
        "wrote {} case(s) to {} ({})",
        p.cases,
        p.out.display(),
        phantom::GENERATOR
    ))
}

/// `protokd verify`: every engine asked for (default: every available one) against the spec;
/// one line per engine, operation and patch.
fn run_verify(v: &VerifyCli) -> Result<ExitCode> {
    if let Some(path) = &v.json {
        protokd::io::files::check_new(path, "JSON report", v.force)?;
    }
    let golden = protokd::audit::verify::find_golden(v.golden.as_deref())?;
    let (engines, skipped) = if v.engines.is_empty() {
        protokd::audit::verify::available_engines()
    } else {
        anyhow::ensure!(
            !v.engines.contains(&protokd::engine::EngineKind::Spec),
            "--engines spec: the spec is what every engine is compared with; name cpu, emulated \
             or cuda"
        );
        let opened = v.engines.iter().map(|k| k.open()).collect::<Result<_>>()?;
        (opened, Vec::new())
    };
    for line in &skipped {
        println!("skipped    {line}");
    }
    let results = protokd::audit::verify::verify_engines(&golden, &engines)?;
    for c in &results {
        println!("{}", protokd::audit::verify::line(c));
    }
    for e in &engines {
        let mine: Vec<_> = results.iter().filter(|c| c.engine == e.kind()).collect();
        let same = mine.iter().filter(|c| c.differing == 0).count();
        println!(
            "{}: {same} of {} comparisons identical to the spec ({})",
            e.kind(),
            mine.len(),
            e.describe()
        );
    }
    let differing = results.iter().filter(|c| c.differing > 0).count();
    println!(
        "{} of {} comparisons identical (golden patches in {})",
        results.len() - differing,
        results.len(),
        golden.display()
    );
    if let Some(path) = &v.json {
        let report = protokd::audit::verify::report_json(&engines, &skipped, &golden, &results);
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        protokd::io::files::write_atomic(path, text.as_bytes())?;
    }
    Ok(if differing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `protokd bench`: runs, prints one line, writes the JSON record (if asked).
fn run_bench(b: BenchCli) -> Result<()> {
    let shape = protokd::audit::bench::parse_shape(&b.shape)?;
    if let Some(path) = &b.json {
        protokd::io::files::check_new(path, "JSON output", b.force)?;
    }
    let compute = b.engine.open()?;
    let record =
        protokd::audit::bench::run(b.what, shape, b.filters, (b.warmup, b.repeat), &compute)?;
    let gb = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("n/a".into(), |x| format!("{:.2} GB", x / 1e9))
    };
    println!(
        "{} {} n_filters {} on {} ({} threads): median {:.3} s, min {:.3} s, max {:.3} s over {} run(s); peak memory {}",
        record["what"].as_str().unwrap_or(""),
        b.shape,
        b.filters,
        record["device_description"].as_str().unwrap_or(""),
        record["threads"],
        record["median_s"].as_f64().unwrap_or(f64::NAN),
        record["min_s"].as_f64().unwrap_or(f64::NAN),
        record["max_s"].as_f64().unwrap_or(f64::NAN),
        b.repeat,
        gb(&record["peak_rss_bytes"])
    );
    if let Some(path) = &b.json {
        let mut text = serde_json::to_string_pretty(&record)?;
        text.push('\n');
        protokd::io::files::write_atomic(path, text.as_bytes())?;
    }
    Ok(())
}

/// `protokd score`: scores, writes the JSON (if asked) and prints the table.
fn run_score(s: ScoreCli) -> Result<()> {
    let release = s
        .release
        .as_deref()
        .map(phantom::parse_release)
        .transpose()
        .context("--release")?;
    let opts = protokd::eval::metrics::ScoreOptions {
        voxel_units: s.voxel_units,
        release,
    };
    if let Some(path) = &s.json {
        protokd::io::files::check_new(path, "JSON output", s.force)?;
    }
    let report = protokd::eval::metrics::score_files(&s.pred, &s.label, opts)?;
    if let Some(path) = &s.json {
        let mut text = serde_json::to_string_pretty(&report.to_json())?;
        text.push('\n');
        protokd::io::files::write_atomic(path, text.as_bytes())?;
    }
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", report.table()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to standard output"),
    }
}

fn main() -> ExitCode {
    // A panic is a bug in protokd, never the user's fault: report it in one line, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error in protokd (please report it): {info}");
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
