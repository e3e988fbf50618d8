//! The demo's evaluation: every trained model on the held-out test phantoms of the teacher's
//! split (a report in `eval/<name>/`, a row of the table) and an overlay PNG of the first test
//! phantom per model (and of its reference labels) in `overlays/`.

use super::models::Trained;
use super::results::Row;
use super::DemoOptions;
use crate::data::brats::{discover, load_case, Case, LoadedCase};
use crate::engine::Net;
use crate::eval::evaluate::{evaluate_dataset, summarize, write_report, EvaluateOptions};
use crate::infer::sliding_window::{segment_case, Window};
use crate::io::checkpoint;
use crate::modality::Modalities;
use crate::report::overlay::write_overlay_png;
use crate::train::config::TrainConfig;
use crate::train::run::RunDir;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The test phantoms and where their overlays go.
pub(super) struct TestSet {
    /// Their ids (the teacher's split; every run uses the same seeded split).
    pub(super) ids: Vec<String>,
    /// The cases.
    cases: Vec<Case>,
    /// The sliding window (the teacher's validation window).
    window: Window,
    /// The first test phantom, drawn in the overlays.
    first: LoadedCase,
    /// `overlays/`.
    overlays: PathBuf,
}

/// The channel drawn in grey under a model's overlay: T1ce when the model sees it (it shows
/// the enhancing rim best), else the model's first modality.
fn grey_of(m: &Modalities) -> usize {
    if m.channels().contains(&2) {
        2
    } else {
        m.channels()[0]
    }
}

impl TestSet {
    /// In this order: the test ids recorded in `teacher_run` (refused when there is none),
    /// their cases in `data`, the window of `teacher_cfg`, the line announcing the evaluation
    /// of `models` models, the folder `overlays/`, the first test phantom.
    pub(super) fn open(
        o: &DemoOptions,
        data: &Path,
        teacher_run: &Path,
        teacher_cfg: &TrainConfig,
        models: usize,
        say: &mut dyn FnMut(&str),
    ) -> Result<TestSet> {
        let run = RunDir {
            path: teacher_run.to_path_buf(),
        };
        let ids = run.read_record()?.split.test;
        if ids.is_empty() {
            bail!("the demo plan holds out no test phantom");
        }
        let dataset = discover(data)?.select(&ids, "demo test split")?;
        let window = Window {
            patch: teacher_cfg.val_patch,
            stride: teacher_cfg.val_stride,
        };
        say(&format!(
            "[5] evaluate {models} models on {} test phantoms",
            ids.len()
        ));
        let overlays = o.out.join("overlays");
        std::fs::create_dir_all(&overlays)
            .with_context(|| format!("cannot create {}", overlays.display()))?;
        let first = load_case(&dataset.cases[0])?;
        Ok(TestSet {
            ids,
            cases: dataset.cases,
            window,
            first,
            overlays,
        })
    }

    /// `overlays/reference.png`: the reference labels of the first test phantom (when it has
    /// them) over its T1ce.
    pub(super) fn write_reference_overlay(&self) -> Result<()> {
        match &self.first.labels {
            Some(labels) => {
                self.write_overlay(&Modalities::all(), labels, "reference", "reference labels")
            }
            None => Ok(()),
        }
    }

    /// `overlays/<file>.png`: `labels` over the first test phantom's grey channel for
    /// modalities `m`, titled with its id and `what`.
    fn write_overlay(&self, m: &Modalities, labels: &[u8], file: &str, what: &str) -> Result<()> {
        write_overlay_png(
            &self.first.images[grey_of(m)],
            labels,
            &self.overlays.join(format!("{file}.png")),
            &format!("{}: {what}", self.first.case.id),
        )
    }

    /// Evaluates one trained model, in this order: its checkpoint, every test phantom scored
    /// ([`evaluate_dataset`]), the report in `eval/<name>/`, its row (mean Dice of WT, TC, ET
    /// and their mean), then the first phantom segmented and its overlay
    /// `overlays/<name>.png`.
    pub(super) fn evaluate(&self, o: &DemoOptions, t: &Trained) -> Result<Row> {
        let m = &t.modalities;
        let ck = checkpoint::load(&t.checkpoint)?;
        let net = Net::new(&o.compute, &ck.state)?;
        let opts = EvaluateOptions::default();
        let scores = evaluate_dataset(
            &net,
            &self.cases,
            m.channels(),
            &self.window,
            &opts,
            |_, _, _| {},
        )?;
        let summary = summarize(&scores);
        let meta = json!({
            "tool": format!("protokd {} demo", env!("CARGO_PKG_VERSION")),
            "model": t.checkpoint.display().to_string(),
            "modalities": m.to_string(),
            "test_cases": self.ids,
            "hd95_units": "mm",
        });
        let report_dir = o.out.join("eval").join(&t.name);
        write_report(&report_dir, &summary, &scores, meta, o.force)?;
        let d = summary.mean_dice();
        let row = Row {
            model: t.model,
            modality: m.to_string(),
            dice: [d[0], d[1], d[2], (d[0] + d[1] + d[2]) / 3.0],
            checkpoint: t.checkpoint.clone(),
        };
        let pred = segment_case(&net, &self.first, m.channels(), &self.window)?;
        let what = format!("{} ({m})", t.model);
        self.write_overlay(m, &pred.labels, &t.name, &what)?;
        Ok(row)
    }
}
