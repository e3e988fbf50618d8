//! What a run saves: the student under `last` (and `best`), and the curves redrawn, at every
//! epoch's end (`on_epoch_end`) and when the run stops early.

use super::config::TrainConfig;
use super::epoch::Epoch;
use super::run::{self, MetricsLog, RunDir};
use super::trainer::TrainingLoop;
use anyhow::Result;

impl TrainingLoop<'_> {
    /// Saves the student (fetched from its engine once) under each of `tags`, in order, at the
    /// run's progress ([`RunDir::save`]), then redraws `curves.svg`.
    pub(super) fn checkpoint(&self, tags: &[&str]) -> Result<()> {
        let (state, adam) = (self.engine.state()?, self.engine.adam()?);
        for tag in tags {
            self.run
                .save(tag, &state, &self.modalities, &adam, self.progress)?;
        }
        write_curves(&self.run, &self.log, &self.args.config)
    }

    /// `on_epoch_end`: [`TrainingLoop::checkpoint`] under `best` then `last` when the epoch's
    /// validation is the best so far, else under `last`; then the epoch's line goes to `say`
    /// (above the progress bar).
    pub(super) fn on_epoch_end(&self, epoch: &Epoch, say: &mut dyn FnMut(&str)) -> Result<()> {
        let tags: &[&str] = if epoch.best {
            &["best", "last"]
        } else {
            &["last"]
        };
        self.checkpoint(tags)?;
        self.bar.suspend(|| say(&epoch.line));
        Ok(())
    }
}

/// Redraws `curves.svg` from the records so far.
fn write_curves(run: &RunDir, log: &MetricsLog, cfg: &TrainConfig) -> Result<()> {
    let title = format!(
        "{} ({}), {}",
        cfg.method.name(),
        cfg.modalities,
        run.path.display()
    );
    run.claim(&[run::CURVES])?;
    crate::report::plot::write_training_plot(&log.records, &run.file(run::CURVES), &title)
}
