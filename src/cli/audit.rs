//! `protokd audit forward` and `protokd audit step`: one computation re-run from safetensors
//! files, with the SHA-256 of every output tensor printed, and with `--accuracy` the accuracy
//! of every operation against the spec in float64 ([`protokd::audit::accuracy`]).

use super::engine::EngineArg;
use anyhow::{ensure, Result};
use clap::{Args, Subcommand, ValueEnum};
use protokd::audit::accuracy::{forward_of_files, step_of_files};
use protokd::audit::replay as audit;
use protokd::io::console::say;
use protokd::io::files::check_not_input;
use protokd::modality::Modalities;
use protokd_reference::adam::AdamConfig;
use protokd_reference::step::{StepConfig, StepMode};
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The subcommands of `protokd audit`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// One VNet forward pass.
    ///
    /// Example: protokd audit forward --weights student.safetensors --input x.safetensors --out y.safetensors
    Forward {
        /// Checkpoint: safetensors (protokd- or PyTorch-written) or a PyTorch .pth/.pt.
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
        /// Replace an existing --out file (never one of the inputs).
        #[arg(long)]
        force: bool,
        /// Then print the accuracy of every operation against the spec in float64.
        #[arg(long)]
        accuracy: bool,
        #[command(flatten)]
        engine: EngineArg,
    },
    /// One training step (no augmentation): losses, gradients and the updated state.
    ///
    /// Example: protokd audit step --student s.safetensors --teacher t.safetensors --batch b.safetensors --modality t1ce --out o.safetensors
    Step(StepArgs),
}

/// Arguments of `protokd audit step`.
#[derive(Args)]
pub struct StepArgs {
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
    /// Replace an existing --out file (never one of the inputs).
    #[arg(long)]
    force: bool,
    /// Which step.
    #[arg(long, value_enum, default_value_t = ModeArg::Protokd)]
    mode: ModeArg,
    /// Then print the accuracy of every operation against the spec in float64.
    #[arg(long)]
    accuracy: bool,
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
    engine: EngineArg,
}

/// `protokd audit step --mode`.
#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// L_seg + kd_weight * L_kd + proto_weight * L_proto against a frozen teacher.
    Protokd,
    /// L_seg on the student alone (unimodal baseline).
    Baseline,
    /// L_seg on all four channels (teacher pretraining).
    Teacher,
}

impl From<ModeArg> for StepMode {
    fn from(mode: ModeArg) -> StepMode {
        match mode {
            ModeArg::Protokd => StepMode::ProtoKd,
            ModeArg::Baseline => StepMode::Baseline,
            ModeArg::Teacher => StepMode::Teacher,
        }
    }
}

/// `protokd audit`: runs the computation, then lists the hashes of what it wrote.
pub fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Forward {
            weights,
            input,
            out,
            train,
            force,
            accuracy,
            engine,
        } => {
            check_not_input(
                &out,
                "--out",
                &[("--weights", &weights), ("--input", &input)],
            )?;
            let hashes = audit::forward(&engine.open()?, &weights, &input, &out, force, train)?;
            print_hashes(&hashes, &out)?;
            match accuracy {
                true => say(&forward_of_files(&weights, &input, train)?.markdown()),
                false => Ok(()),
            }
        }
        AuditCommand::Step(s) => step(&s),
    }
}

/// `protokd audit step`: checks the weights and Adam's settings, then runs the step.
fn step(s: &StepArgs) -> Result<()> {
    for (flag, v) in [
        ("--kd-weight", s.kd_weight),
        ("--proto-weight", s.proto_weight),
        ("--temperature", s.temperature),
    ] {
        ensure_finite_non_negative(flag, v)?;
    }
    ensure!(s.temperature > 0.0, "--temperature must be > 0");
    ensure_finite_non_negative("--lr", s.lr)?;
    ensure_finite_non_negative("--weight-decay", s.weight_decay)?;
    let config = StepConfig {
        mode: s.mode.into(),
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
    let mut inputs = vec![("--student", s.student.as_path()), ("--batch", &s.batch)];
    inputs.extend(s.teacher.as_deref().map(|t| ("--teacher", t)));
    check_not_input(&s.out, "--out", &inputs)?;
    let args = audit::StepArgs {
        student: &s.student,
        teacher: s.teacher.as_deref(),
        batch: &s.batch,
        modality,
        out: &s.out,
        force: s.force,
        config,
        compute: &s.engine.open()?,
    };
    let hashes = audit::step(&args)?;
    print_hashes(&hashes, &s.out)?;
    match s.accuracy {
        true => say(&step_of_files(&args)?.markdown()),
        false => Ok(()),
    }
}

/// Refuses the value of `flag` unless it is a finite number >= 0 (the message shows the value
/// as it was given).
fn ensure_finite_non_negative<T: Copy + Display + Into<f64>>(flag: &str, value: T) -> Result<()> {
    let v: f64 = value.into();
    ensure!(
        v.is_finite() && v >= 0.0,
        "{flag} must be a finite number >= 0, got {value}"
    );
    Ok(())
}

/// Prints one `sha256 <hex>  <name>` line per output tensor, then a summary. A closed pipe
/// (`protokd ... | head`) ends the listing quietly.
fn print_hashes(hashes: &[(String, String)], out: &Path) -> Result<()> {
    for (name, hash) in hashes {
        say(&format!("sha256 {hash}  {name}"))?;
    }
    say(&format!(
        "wrote {} tensors to {}",
        hashes.len(),
        out.display()
    ))
}
