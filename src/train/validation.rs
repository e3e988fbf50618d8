//! Validation: Dice of WT, TC and ET on the validation cases, each segmented whole by the
//! sliding window, and the hooks `on_validation_epoch_start` (is it due),
//! `validation_step` (one case) and `on_validation_epoch_end` (means, best, record).

use super::epoch::Epoch;
use super::trainer::TrainingLoop;
use crate::data::brats::Case;
use crate::data::dataset::load_case;
use crate::engine::Net;
use crate::eval::metrics::{region_dice, Region};
use crate::infer::sliding_window::{segment_case, Window};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::time::Instant;

/// `validation_step`: the Dice of WT, TC and ET of one case, segmented whole by the sliding
/// window.
fn validation_step(
    net: &Net,
    case: &Case,
    channels: &[usize],
    window: &Window,
) -> Result<[f64; 3]> {
    let loaded = load_case(case)?;
    let Some(labels) = &loaded.labels else {
        bail!(
            "validation case {} ({}) has no segmentation",
            case.id,
            case.dir.display()
        );
    };
    let pred = segment_case(net, &loaded, channels, window)
        .with_context(|| format!("validation case {}", case.id))?;
    Ok(Region::ALL.map(|r| region_dice(&pred.labels, labels, r)))
}

/// Dice of WT, TC and ET, each averaged over the validation cases (in the split's order,
/// summed in f64), segmented whole by the sliding window.
pub fn validate(
    net: &Net,
    cases: &[Case],
    channels: &[usize],
    window: &Window,
) -> Result<[f64; 3]> {
    let mut sums = [0f64; 3];
    for case in cases {
        let dice = validation_step(net, case, channels, window)?;
        for (s, d) in sums.iter_mut().zip(dice) {
            *s += d;
        }
    }
    Ok(sums.map(|s| s / cases.len() as f64))
}

impl TrainingLoop<'_> {
    /// `on_validation_epoch_start`: whether epoch `e` is validated: `e >= val_start_epoch`,
    /// `(e - val_start_epoch) % val_every == 0`, and there is a validation case.
    pub(super) fn on_validation_epoch_start(&self, epoch: &Epoch) -> bool {
        let cfg = &self.args.config;
        let e = epoch.index;
        let due =
            e >= cfg.val_start_epoch && (e - cfg.val_start_epoch).is_multiple_of(cfg.val_every);
        due && !self.val_cases.is_empty()
    }

    /// The validation steps over every validation case ([`validate`]), timed.
    pub(super) fn validation_epoch(&mut self) -> Result<[f64; 3]> {
        let t0 = Instant::now();
        let dice = validate(
            &self.engine.net(),
            &self.val_cases,
            &self.channels,
            &self.window,
        )?;
        self.outcome.val_seconds += t0.elapsed().as_secs_f64();
        Ok(dice)
    }

    /// `on_validation_epoch_end`: the mean of the three Dice; it is the best when there is no
    /// best yet or it is strictly higher; the record in `metrics.jsonl`; the Dice on the
    /// epoch's line; a best is kept in the progress and marks the epoch to save `best.*`.
    pub(super) fn on_validation_epoch_end(
        &mut self,
        epoch: &mut Epoch,
        [wt, tc, et]: [f64; 3],
    ) -> Result<()> {
        let mean = (wt + tc + et) / 3.0;
        let best = self.progress.best.is_none_or(|(b, _)| mean > b);
        self.log.push(json!({
            "kind": "val", "epoch": epoch.index, "step": self.progress.global_step,
            "wt": wt, "tc": tc, "et": et, "mean": mean, "best": best,
        }))?;
        epoch.line.push_str(&format!(
            ", validation Dice WT {wt:.4} TC {tc:.4} ET {et:.4} mean {mean:.4}{}",
            if best { " (best)" } else { "" }
        ));
        if best {
            self.progress.best = Some((mean, epoch.index));
            epoch.best = true;
        }
        Ok(())
    }
}
