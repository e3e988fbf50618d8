//! `protokd train teacher` and `protokd train student`: their arguments, the configuration they
//! settle (the paper's, `--config` or the resumed run's), the run they start and its summary.

use super::engine::EngineArg;
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use protokd::modality::Modalities;
use protokd::train::config::{effective, Method};
use protokd::train::run::RunDir;
use protokd::train::{install_interrupt_handler, train, Outcome, Stop, TrainArgs};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The subcommands of `protokd train`.
#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the four-modality teacher (L_seg, poly learning rate; the paper's defaults).
    ///
    /// Example: protokd train teacher --data BraTS2018 --split-dir data/brats2018-split --out runs/teacher
    Teacher {
        #[command(flatten)]
        run: RunOptions,
    },
    /// Train a student on one modality (or a subset): ProtoKD, pixel KD, or the unimodal baseline.
    ///
    /// Example: protokd train student --data BraTS2018 --split-dir data/brats2018-split --modality t1ce --teacher runs/teacher/best.safetensors --out runs/t1ce-protokd
    Student {
        /// Input modality, or a comma-separated subset (t1, t2, t1ce, flair).
        #[arg(long, value_name = "t1ce")]
        modality: String,
        /// Teacher checkpoint (protokd and kd): safetensors or a PyTorch .pth/.pt.
        #[arg(long, value_name = "T.safetensors")]
        teacher: Option<PathBuf>,
        /// The student's loss.
        #[arg(long, value_enum, default_value = "protokd")]
        method: StudentMethod,
        #[command(flatten)]
        run: RunOptions,
    },
}

/// Options shared by both training commands.
#[derive(Args)]
pub struct RunOptions {
    /// Dataset folder (BraTS 2018-2021 or 2023+ naming; HGG/LGG groups allowed), or a folder
    /// of the authors' preprocessed <case>.npy arrays (their split lists, in it or its parent,
    /// are the split unless --split-dir is given).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Run folder to create (refused if it exists and is not empty, unless --force).
    #[arg(long, value_name = "RUN_DIR", required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Folder with train_list.txt, val_list.txt (and test_list.txt), e.g. data/brats2018-split.
    /// Without it the cases are split from `split_seed` (70 / 10 / 20 %, as the paper's
    /// 200 / 28 / 57).
    #[arg(long, value_name = "DIR")]
    split_dir: Option<PathBuf>,
    /// JSON object overriding the paper's settings key by key (see `config.json` of any run
    /// folder for every key), e.g. {"max_epoch": 50, "n_filters": 8}.
    #[arg(long, value_name = "cfg.json")]
    config: Option<PathBuf>,
    /// Continue the run in this folder, with the same data, split and configuration; the
    /// result is bit-identical to an uninterrupted run. Without --config, the recorded
    /// configuration is used.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Start a new run (in --out) that continues another trainer's: the model and Adam state
    /// of a resumable PyTorch checkpoint ({"state_dict", "optimizer", ...}, torch.save), at
    /// Adam's step count.
    #[arg(
        long,
        value_name = "CKPT.pth",
        conflicts_with = "resume",
        requires = "out"
    )]
    resume_from: Option<PathBuf>,
    /// Start afresh in a non-empty run folder (its run files are replaced).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Stop after this many steps (at least 1), saving the run as Ctrl-C does (resume with
    /// --resume).
    #[arg(long, value_name = "STEPS", value_parser = clap::value_parser!(u64).range(1..))]
    stop_after: Option<u64>,
    #[command(flatten)]
    engine: EngineArg,
}

/// `protokd train student --method`.
#[derive(Clone, Copy, ValueEnum)]
pub enum StudentMethod {
    /// L_seg + 10 L_kd + 0.1 L_proto (the paper's ProtoKD).
    Protokd,
    /// L_seg + 10 L_kd (pixel-wise KD only, the paper's ablation).
    Kd,
    /// L_seg alone (the unimodal baseline; no teacher).
    Baseline,
}

impl From<StudentMethod> for Method {
    fn from(method: StudentMethod) -> Method {
        match method {
            StudentMethod::Protokd => Method::Protokd,
            StudentMethod::Kd => Method::Kd,
            StudentMethod::Baseline => Method::Baseline,
        }
    }
}

impl TrainCommand {
    /// The options shared by both commands.
    fn options(&self) -> &RunOptions {
        match self {
            TrainCommand::Teacher { run } | TrainCommand::Student { run, .. } => run,
        }
    }

    /// What is trained: the method, the input modalities and the teacher checkpoint.
    fn role(&self) -> Result<(Method, Modalities, Option<&Path>)> {
        Ok(match self {
            TrainCommand::Teacher { .. } => (Method::Teacher, Modalities::all(), None),
            TrainCommand::Student {
                modality,
                teacher,
                method,
                ..
            } => (
                (*method).into(),
                Modalities::parse(modality)?,
                teacher.as_deref(),
            ),
        })
    }
}

/// `protokd train`: runs the training command, printing its progress lines and a closing
/// summary, and says how to resume when it stopped early. Exits 130 after Ctrl-C.
pub fn run(command: &TrainCommand) -> Result<ExitCode> {
    install_interrupt_handler()?;
    let o = command.options();
    let compute = o.engine.open()?;
    let (method, modalities, teacher) = command.role()?;
    let out = run_folder(o)?;
    let overrides = overrides(o)?;
    let config = effective(
        method,
        &modalities,
        overrides.as_ref().map(|(v, s)| (v, s.as_str())),
    )?;
    let args = TrainArgs {
        data: &o.data,
        out: &out,
        split_dir: o.split_dir.as_deref(),
        config,
        teacher,
        resume: o.resume.is_some(),
        resume_from: o.resume_from.as_deref(),
        force: o.force,
        stop_after: o.stop_after,
        progress_bar: true,
        compute: &compute,
    };
    let outcome = train(&args, &mut |line| println!("{line}"))?;
    print_summary(&outcome, &out);
    Ok(if outcome.stopped == Some(Stop::Interrupted) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The run folder: `--out` or `--resume` (the same folder when both are given).
fn run_folder(o: &RunOptions) -> Result<PathBuf> {
    Ok(match (&o.out, &o.resume) {
        (Some(a), Some(b)) if a != b => bail!(
            "--out {} and --resume {} name different run folders",
            a.display(),
            b.display()
        ),
        (_, Some(dir)) | (Some(dir), None) => dir.clone(),
        (None, None) => bail!("give --out RUN_DIR (or --resume RUN_DIR)"),
    })
}

/// The settings that override the paper's, with where they come from: `--config`, else the
/// configuration recorded in the `--resume` run folder, else none.
fn overrides(o: &RunOptions) -> Result<Option<(Value, String)>> {
    Ok(match (&o.config, &o.resume) {
        (Some(path), _) => Some((read_json(path)?, path.display().to_string())),
        (None, Some(dir)) => {
            let recorded = RunDir { path: dir.clone() }.read_record()?;
            let mut v = serde_json::to_value(&recorded.config)?;
            // The command line decides these; a contradiction is reported by the comparison.
            if let Value::Object(m) = &mut v {
                m.remove("method");
                m.remove("modalities");
            }
            Some((v, format!("{}/config.json", dir.display())))
        }
        (None, None) => None,
    })
}

/// Reads a `--config` file: a JSON object.
fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("{}: cannot read the configuration ({e})", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON ({e})", path.display()))
}

/// The closing lines: the steps taken and their time, the best validation, and either the
/// last checkpoint or how to resume.
fn print_summary(outcome: &Outcome, out: &Path) {
    let p = &outcome.progress;
    let per_step = outcome.step_seconds / outcome.steps_run.max(1) as f64;
    println!(
        "{} step(s) in {:.1} s ({:.3} s per step), validation {:.1} s; now at epoch {} step {} \
         (global step {})",
        outcome.steps_run,
        outcome.step_seconds,
        per_step,
        outcome.val_seconds,
        p.epochs_done,
        p.step_in_epoch,
        p.global_step
    );
    if let Some((mean, epoch)) = p.best {
        println!(
            "best validation mean Dice {mean:.4} at epoch {} -> {}",
            epoch + 1,
            out.join("best.safetensors").display()
        );
    }
    match outcome.stopped {
        None => println!("done: {}", out.join("last.safetensors").display()),
        Some(why) => println!(
            "{}: saved {}; continue with the same command and --resume {}",
            match why {
                Stop::Interrupted => "interrupted",
                Stop::StepLimit => "stopped after --stop-after steps",
            },
            out.join("last.safetensors").display(),
            out.display()
        ),
    }
}
