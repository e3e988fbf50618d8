//! Performance qualification: an end-to-end run on phantoms held to its record ([`end_to_end`])
//! and the timings of a forward and a step on every engine ([`timings`]).
//!
//! The end-to-end run is `protokd demo` ([`crate::demo::run`]) on its default plan
//! ([`Plan::small`]: 24 phantoms of 64 x 64 x 40 voxels, n_filters 4, 20 epochs): phantoms,
//! a four-modality teacher, a unimodal T1ce baseline and a ProtoKD T1ce student, each evaluated
//! on the held-out phantoms, on the fast CPU engine. It passes when every model's checkpoint
//! has the SHA-256 and every Dice (WT, TC, ET, mean) the bits that [`RECORD`] holds. The record
//! is written by the ignored test `validate::regenerate_record` of `tests/audit` (the command
//! is in the record); an intended change of arithmetic, training or evaluation rewrites it.

use super::Finding;
use crate::audit::bench::{self, Peak, What, Work};
use crate::demo::{DemoOptions, Plan, Row};
use crate::engine::{Compute, EngineKind};
use crate::io::hash::sha256_file;
use crate::modality::Modalities;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Where the end-to-end record lives in the source tree.
pub const RECORD: &str = "docs/validation/record.json";

/// The command that writes [`RECORD`].
pub const RECORD_COMMAND: &str =
    "cargo test --release -p protokd --test audit validate::regenerate_record -- --ignored";

/// Runs the demo's default plan into `out` (refused if it exists unless `force`) and returns, per model,
/// `{"model", "modality", "dice": [wt, tc, et, mean], "dice_bits": [hex], "checkpoint_sha256"}`.
pub fn run_plan(tree: &Path, out: &Path, force: bool) -> Result<Vec<Value>> {
    let opts = DemoOptions {
        out: out.to_path_buf(),
        modality: Modalities::parse("t1ce")?,
        all_modalities: false,
        plan: Plan::small(),
        force,
        templates: Some(tree.join("data/mni152")),
        compute: EngineKind::Cpu.open()?,
    };
    let rows = crate::demo::run(&opts, &mut |_| {})?;
    rows.iter().map(row_record).collect()
}

fn row_record(r: &Row) -> Result<Value> {
    let hash = sha256_file(&r.checkpoint)
        .with_context(|| format!("cannot read {}", r.checkpoint.display()))?;
    Ok(json!({
        "model": r.model,
        "modality": r.modality,
        "dice": r.dice,
        "dice_bits": r.dice.map(|d| format!("{:016x}", d.to_bits())),
        "checkpoint_sha256": hash,
    }))
}

/// The record's `rows`, read from the source tree.
fn recorded_rows(tree: &Path) -> Result<Vec<Value>> {
    let path = tree.join(RECORD);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let record: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    record["rows"]
        .as_array()
        .cloned()
        .with_context(|| format!("{}: no `rows` list", path.display()))
}

/// PQ-1: the plan run into `work`, each model's checkpoint hash and Dice bits against the
/// record; a difference names the model, the field and both values.
pub fn end_to_end(tree: &Path, work: &Path, force: bool) -> Result<Vec<(String, Finding)>> {
    let want = recorded_rows(tree)?;
    let got = run_plan(tree, work, force)?;
    let mut found = Vec::new();
    for g in &got {
        let name = format!(
            "{} {}",
            g["model"].as_str().unwrap_or("?"),
            g["modality"].as_str().unwrap_or("?")
        );
        let w = want
            .iter()
            .find(|w| w["model"] == g["model"] && w["modality"] == g["modality"]);
        let differ: Vec<String> = match w {
            None => vec![format!("{RECORD} has no row for {name}")],
            Some(w) => ["checkpoint_sha256", "dice_bits"]
                .iter()
                .filter(|k| w[**k] != g[**k])
                .map(|k| format!("{k} is {}, {RECORD} records {}", g[*k], w[*k]))
                .collect(),
        };
        let d = &g["dice"];
        let detail = if differ.is_empty() {
            format!(
                "Dice WT {:.4} TC {:.4} ET {:.4} mean {:.4}, checkpoint {}: as recorded",
                d[0].as_f64().unwrap_or(f64::NAN),
                d[1].as_f64().unwrap_or(f64::NAN),
                d[2].as_f64().unwrap_or(f64::NAN),
                d[3].as_f64().unwrap_or(f64::NAN),
                g["checkpoint_sha256"].as_str().unwrap_or("?"),
            )
        } else {
            differ.join("; ")
        };
        found.push((name, Finding::new(differ.is_empty(), detail, g.clone())));
    }
    if got.len() != want.len() {
        found.push((
            String::new(),
            Finding::new(
                false,
                format!(
                    "the run gives {} models, {RECORD} records {}",
                    got.len(),
                    want.len()
                ),
                json!(null),
            ),
        ));
    }
    Ok(found)
}

/// The timed shape `[N, C, D, H, W]` and n_filters: 1 x 4 x 32^3 with n_filters 4, or with
/// `full` 2 x 4 x 64^3 with n_filters 8.
fn timed_shape(full: bool) -> ([usize; 5], usize) {
    if full {
        ([2, 4, 64, 64, 64], 8)
    } else {
        ([1, 4, 32, 32, 32], 4)
    }
}

/// Median seconds of `what` on `compute` (one warm-up, three timed runs; `peak` is the
/// machine's, measured once).
fn median(what: What, compute: &Compute, full: bool, peak: &Peak) -> Result<f64> {
    let (shape, filters) = timed_shape(full);
    let work = Work {
        what,
        shape,
        filters,
        warmup: 1,
        repeat: 3,
    };
    let record = bench::run(&work, compute, peak)?;
    record["median_s"]
        .as_f64()
        .context("the benchmark gave no median")
}

/// PQ-2: a forward and a step timed on the spec and on each of `engines`; CUDA, when it is not
/// among them, is listed as absent. Figures: `{"shape", "filters", "engines": [{"engine",
/// "description", "forward_s", "step_s"} or {"engine", "absent"}]}` (the report's chart).
pub fn timings(
    engines: &[Compute],
    skipped: &[String],
    full: bool,
) -> Result<Vec<(String, Finding)>> {
    let (shape, filters) = timed_shape(full);
    let mut all = vec![EngineKind::Spec.open()?];
    all.extend(engines.iter().cloned());
    let mut rows = Vec::new();
    let mut line = Vec::new();
    let peak = Peak::measure(None);
    for e in &all {
        let (f, s) = (
            median(What::Forward, e, full, &peak)?,
            median(What::Step, e, full, &peak)?,
        );
        line.push(format!("{} forward {f:.3} s, step {s:.3} s", e.kind()));
        rows.push(
            json!({"engine": e.kind(), "description": e.describe(), "forward_s": f, "step_s": s}),
        );
    }
    for s in skipped {
        let engine = s.split(':').next().unwrap_or_default();
        line.push(format!("{engine} absent"));
        rows.push(json!({"engine": engine, "absent": s}));
    }
    let figures = json!({"shape": shape, "filters": filters, "engines": rows});
    Ok(vec![(
        String::new(),
        Finding::new(true, line.join("; "), figures),
    )])
}
