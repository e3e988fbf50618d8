//! The hooks of an epoch's training part: `on_epoch_start` (the epoch's order of cases and
//! learning rate), `train_step` (one batch, one engine step, one record) and
//! `on_train_epoch_end` (the mean loss; the epoch counts as done).

use super::trainer::TrainingLoop;
use crate::data::augment::epoch_permutation;
use anyhow::{bail, Context, Result};
use protokd_reference::step::StepConfig;
use serde_json::json;
use std::ops::Range;
use std::time::Instant;

/// An epoch in progress.
pub(super) struct Epoch {
    /// Its index (0-based).
    pub(super) index: u64,
    /// The training cases' positions in the order of this epoch.
    order: Vec<usize>,
    /// The engine's step configuration (the learning rate of this epoch).
    step_cfg: StepConfig,
    /// The steps left to take.
    steps: Range<u64>,
    /// Sum of the steps' total losses (f64, in step order).
    loss: f64,
    /// The line said at the epoch's end (mean loss, learning rate, validation).
    pub(super) line: String,
    /// Whether its validation is the best so far.
    pub(super) best: bool,
}

impl Epoch {
    /// The steps left to take in this epoch.
    pub(super) fn steps(&self) -> Range<u64> {
        self.steps.clone()
    }
}

impl TrainingLoop<'_> {
    /// `on_epoch_start`: the order of the training cases ([`epoch_permutation`]`(seed, e, n)`)
    /// and the step configuration of epoch `e`; the steps start where the run stands (not at 0
    /// only in the first epoch of a resumed run).
    pub(super) fn on_epoch_start(&self, e: u64) -> Epoch {
        let cfg = &self.args.config;
        Epoch {
            index: e,
            order: epoch_permutation(cfg.seed, e, self.n_train),
            step_cfg: cfg.step_config(e),
            steps: self.progress.step_in_epoch..self.steps_per_epoch,
            loss: 0.0,
            line: String::new(),
            best: false,
        }
    }

    /// `train_step`: step `s` of `epoch`, in this order: the batch of the cases at positions
    /// `s * batch .. (s + 1) * batch` of the epoch's order ([`super::cases::TrainCases::batch`]),
    /// one engine step, the counters (the time from the batch on), a refusal of a non-finite
    /// loss, the loss added to the epoch's, the step's record in `metrics.jsonl`, the progress
    /// bar.
    pub(super) fn train_step(&mut self, epoch: &mut Epoch, s: u64) -> Result<()> {
        let t0 = Instant::now();
        let cfg = &self.args.config;
        let e = epoch.index;
        let b = cfg.batch_size;
        let picks = &epoch.order[s as usize * b..(s as usize + 1) * b];
        let (image, labels) = self.cases.batch(picks, cfg.patch, cfg.seed, e)?;
        let l = self
            .engine
            .step(&image, &labels, &self.channels, &epoch.step_cfg)
            .with_context(|| format!("epoch {e}, step {s}"))?;
        self.outcome.step_seconds += t0.elapsed().as_secs_f64();
        self.outcome.steps_run += 1;
        self.progress.global_step += 1;
        self.progress.step_in_epoch = s + 1;
        if !l.total.is_finite() {
            bail!(
                "epoch {e}, step {s}: the loss is {} (diverged); lower `lr` in the config",
                l.total
            );
        }
        epoch.loss += l.total as f64;
        self.log.push(json!({
            "kind": "step", "epoch": e, "step": self.progress.global_step,
            "total": l.total, "seg": l.seg, "dice": l.dice, "ce": l.ce,
            "kd": l.kd, "proto": l.proto, "lr": epoch.step_cfg.adam.lr,
        }))?;
        self.bar.set_position(self.progress.global_step);
        self.bar.set_message(format!(
            "epoch {}/{} loss {:.4}",
            e + 1,
            cfg.max_epoch,
            l.total
        ));
        Ok(())
    }

    /// `on_train_epoch_end`: the epoch's line (its number, the mean loss over the steps taken
    /// in this invocation, the learning rate), and the epoch counts as done.
    pub(super) fn on_train_epoch_end(&mut self, epoch: &mut Epoch) {
        let steps_taken = epoch.steps.end - epoch.steps.start;
        epoch.line = format!(
            "epoch {}/{}: mean loss {:.4}, lr {:.3e}",
            epoch.index + 1,
            self.args.config.max_epoch,
            epoch.loss / steps_taken.max(1) as f64,
            epoch.step_cfg.adam.lr
        );
        self.progress.epochs_done = epoch.index + 1;
        self.progress.step_in_epoch = 0;
    }
}
