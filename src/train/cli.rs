//! `protokd train teacher` and `protokd train student`: arguments and what they run.

use super::config::{effective, Method};
use super::run::RunDir;
use super::{train, Outcome, Stop, TrainArgs};
use crate::engine::EngineArg;
use crate::modality::Modalities;
use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Options shared by both training commands.
#[derive(Args)]
pub struct RunOptions {
    /// Dataset folder (BraTS 2018-2021 or 2023+ naming; HGG/LGG groups allowed).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Run folder to create (refused if it exists and is not empty, unless --force).
    #[arg(long, value_name = "RUN_DIR", required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Folder with train_list.txt, val_list.txt (and test_list.txt), e.g. data/brats2018-split.
    /// Without it the cases are split from `split_seed` (70 / 10 / 20 %, as the paper's
    /// 200 / 28 / 57).
    #[arg(long, value_name = "DIR")]
    pub split_dir: Option<PathBuf>,
    /// JSON object overriding the paper's settings key by key (see `config.json` of any run
    /// folder for every key), e.g. {"max_epoch": 50, "n_filters": 8}.
    #[arg(long, value_name = "cfg.json")]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder, with the same data, split and configuration; the
    /// result is bit-identical to an uninterrupted run. Without --config, the recorded
    /// configuration is used.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Start afresh in a non-empty run folder (its run files are replaced).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Stop after this many steps, saving the run as Ctrl-C does (resume with --resume).
    #[arg(long, value_name = "STEPS")]
    pub stop_after: Option<u64>,
    #[command(flatten)]
    pub engine: EngineArg,
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

/// What to train.
pub enum Role<'a> {
    /// The four-modality teacher.
    Teacher,
    /// A student.
    Student {
        /// Its loss.
        method: StudentMethod,
        /// Its input modalities.
        modality: &'a str,
        /// The teacher checkpoint.
        teacher: Option<&'a Path>,
    },
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("{}: cannot read the configuration ({e})", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON ({e})", path.display()))
}

/// Runs a training command; prints its progress lines and a closing summary, and says how to
/// resume when it stopped early.
pub fn run(role: Role, o: &RunOptions) -> Result<Outcome> {
    let compute = o.engine.open()?;
    let (method, modalities, teacher) = match role {
        Role::Teacher => (Method::Teacher, Modalities::all(), None),
        Role::Student {
            method,
            modality,
            teacher,
        } => {
            let m = match method {
                StudentMethod::Protokd => Method::Protokd,
                StudentMethod::Kd => Method::Kd,
                StudentMethod::Baseline => Method::Baseline,
            };
            (m, Modalities::parse(modality)?, teacher)
        }
    };
    let out = match (&o.out, &o.resume) {
        (Some(a), Some(b)) if a != b => bail!(
            "--out {} and --resume {} name different run folders",
            a.display(),
            b.display()
        ),
        (_, Some(dir)) | (Some(dir), None) => dir.clone(),
        (None, None) => bail!("give --out RUN_DIR (or --resume RUN_DIR)"),
    };
    let overrides = match (&o.config, &o.resume) {
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
    };
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
        force: o.force,
        stop_after: o.stop_after,
        progress_bar: true,
        compute: &compute,
    };
    let outcome = train(&args, &mut |line| println!("{line}"))?;
    let p = outcome.progress;
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
    Ok(outcome)
}
