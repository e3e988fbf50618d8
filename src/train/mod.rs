//! Training loops: a four-modality teacher, and students (ProtoKD, pixel KD, unimodal baseline)
//! as the method page sections 3 and 6 describe, with run folders ([`run`]) that can be
//! resumed bit for bit.
//!
//! ## The loop
//! [`train`] calls the hooks of a trainer in the order of nnU-Net's `nnUNetTrainer`:
//!
//! | hook | what it does |
//! |---|---|
//! | `on_train_start` | the dataset and its split, the teacher, the run folder (fresh or resumed), the student on its engine, the cases; the start line |
//! | `on_epoch_start` | the epoch's order of the training cases and its learning rate |
//! | `train_step` | for each step left in the epoch: a batch, one engine step, one record; then the stop check (a stop saves `last.*` and the curves and ends the run) |
//! | `on_train_epoch_end` | the mean loss; the epoch counts as done |
//! | `on_validation_epoch_start` | whether the epoch is validated |
//! | `validation_step` | for each validation case ([`validate`]): the case segmented whole and scored |
//! | `on_validation_epoch_end` | the mean Dice, a new best or not, the record |
//! | `on_epoch_end` | `best.*` (a new best), `last.*`, the curves, the epoch's line |
//! | `on_train_end` | the progress bar cleared, the [`Outcome`] |
//!
//! ## One epoch `e` (0-based)
//! 1. The training cases (in the split's order; a case's position is its index `i`) are
//!    shuffled by [`epoch_permutation`]`(seed, e, n)`; step `s` takes the cases at positions
//!    `s * batch .. (s + 1) * batch` of that order, for `s` in `0 .. floor(n / batch)` (a
//!    remainder is dropped, as a `drop_last` data loader).
//! 2. Each case's patch is [`augment`]`(case, patch, seed, e, i)` (crop, flips, intensity);
//!    the patches are stacked into a batch.
//! 3. One training step ([`Trainer::step`], on the engine of `--engine`) with the learning rate
//!    of epoch `e` ([`TrainConfig::lr_at`]); the teacher runs in evaluation mode.
//! 4. After the last step, when `e >= val_start_epoch` and `(e - val_start_epoch) %
//!    val_every == 0`: every validation case is segmented whole by the sliding window
//!    ([`crate::infer::sliding_window::segment_case`], `val_patch`, `val_stride`) and scored by Dice per region;
//!    the means over cases of WT, TC and ET and their mean are recorded; a strictly higher
//!    mean than the best so far writes `best.*`.
//! 5. `last.*` is written, then the curves.
//!
//! Everything a step uses is a function of the config, the epoch and the case index, so a run
//! stopped after any step (Ctrl-C, `stop_after`) and resumed from `last.optim.safetensors`
//! performs exactly the same arithmetic as an uninterrupted run and ends with the same bits.
//!
//! [`epoch_permutation`]: crate::data::augment::epoch_permutation
//! [`augment`]: crate::data::augment::augment
//! [`Trainer::step`]: crate::engine::Trainer::step
//! [`TrainConfig::lr_at`]: config::TrainConfig::lr_at

pub mod config;
pub mod run;

mod cases;
mod checkpoints;
mod epoch;
mod import;
mod interrupt;
mod manifest;
mod start;
mod teacher;
mod trainer;
mod validation;

pub use interrupt::install_interrupt_handler;
pub use validation::validate;

use crate::engine::Compute;
use anyhow::Result;
use config::TrainConfig;
use run::{Progress, RunDir};
use std::path::{Path, PathBuf};
use trainer::TrainingLoop;

/// What to train and where.
pub struct TrainArgs<'a> {
    /// Dataset folder.
    pub data: &'a Path,
    /// Run folder.
    pub out: &'a Path,
    /// Split folder (`train_list.txt`, `val_list.txt`, `test_list.txt`), else a seeded split.
    pub split_dir: Option<&'a Path>,
    /// The effective configuration.
    pub config: TrainConfig,
    /// Teacher checkpoint (ProtoKD and KD).
    pub teacher: Option<&'a Path>,
    /// Continue the run in `out` instead of starting one.
    pub resume: bool,
    /// Start the run in `out` from this PyTorch checkpoint's model and Adam state (another
    /// trainer's run, continued; see [`import`]).
    pub resume_from: Option<&'a Path>,
    /// Start afresh in an existing run folder (its run files are replaced).
    pub force: bool,
    /// Stop (and save) after this many steps in this invocation.
    pub stop_after: Option<u64>,
    /// Draw a progress bar on standard error (when it is a terminal).
    pub progress_bar: bool,
    /// Where the steps and validations run (same bits everywhere).
    pub compute: &'a Compute,
}

/// Why a run ended before its last epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C.
    Interrupted,
    /// `stop_after` steps were taken.
    StepLimit,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Where it stands.
    pub progress: Progress,
    /// `None` when every epoch is done.
    pub stopped: Option<Stop>,
    /// Steps taken by this invocation.
    pub steps_run: u64,
    /// Seconds spent in training steps by this invocation.
    pub step_seconds: f64,
    /// Seconds spent validating by this invocation.
    pub val_seconds: f64,
}

impl Outcome {
    /// Nothing done yet in `run`, which stands at `progress`.
    fn start(run: &RunDir, progress: Progress) -> Outcome {
        Outcome {
            run_dir: run.path.clone(),
            progress,
            stopped: None,
            steps_run: 0,
            step_seconds: 0.0,
            val_seconds: 0.0,
        }
    }
}

/// Runs (or resumes) a training run; `say` receives one line per event (start, epoch, stop).
///
/// The hooks of the table above, in its order: `on_train_start`; for each epoch left,
/// `on_epoch_start`, then `train_step` for each step left, each followed by the stop check
/// (a stop saves `last.*` and the curves, then `on_train_end`); `on_train_epoch_end`; when
/// `on_validation_epoch_start` says so, the validation steps and `on_validation_epoch_end`;
/// `on_epoch_end`. After the last epoch, `on_train_end`.
pub fn train(args: &TrainArgs, say: &mut dyn FnMut(&str)) -> Result<Outcome> {
    let mut trainer = TrainingLoop::on_train_start(args, say)?;
    for e in trainer.first_epoch()..args.config.max_epoch {
        let mut epoch = trainer.on_epoch_start(e);
        for s in epoch.steps() {
            trainer.train_step(&mut epoch, s)?;
            if let Some(why) = trainer.stop_requested() {
                trainer.checkpoint(&["last"])?;
                return Ok(trainer.on_train_end(Some(why)));
            }
        }
        trainer.on_train_epoch_end(&mut epoch);
        if trainer.on_validation_epoch_start(&epoch) {
            let dice = trainer.validation_epoch()?;
            trainer.on_validation_epoch_end(&mut epoch, dice)?;
        }
        trainer.on_epoch_end(&epoch, say)?;
    }
    Ok(trainer.on_train_end(None))
}
