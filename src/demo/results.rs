//! The demo's results: the table printed at its end (as the paper's Table 1) and
//! `results.json`.

use super::{DemoOptions, Plan};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// One row of the result table: a model's mean Dice per region on the test phantoms.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `teacher`, `unimodal` or `protokd`.
    pub model: &'static str,
    /// Its input modalities.
    pub modality: String,
    /// Mean Dice of WT, TC and ET (0..1) and their mean.
    pub dice: [f64; 4],
    /// The checkpoint evaluated.
    pub checkpoint: PathBuf,
}

/// The table of the rows, Dice in percent, as the paper's Table 1.
pub fn table(rows: &[Row], test_cases: usize) -> String {
    let mut s = format!(
        "Dice (%) on {test_cases} held-out phantoms\n{:<28} {:>6} {:>6} {:>6} {:>6}\n",
        "model", "WT", "TC", "ET", "mean"
    );
    for r in rows {
        let name = match r.model {
            "teacher" => "teacher (all four)".to_string(),
            m => format!(
                "{} {}",
                r.modality,
                if m == "protokd" { "ProtoKD" } else { m }
            ),
        };
        s.push_str(&format!(
            "{name:<28} {:>6.2} {:>6.2} {:>6.2} {:>6.2}\n",
            100.0 * r.dice[0],
            100.0 * r.dice[1],
            100.0 * r.dice[2],
            100.0 * r.dice[3]
        ));
    }
    s
}

/// `results.json`: `{"rows": [{"model", "modality", "wt", "tc", "et", "mean", "checkpoint"}],
/// "test_cases", "plan", "protokd_version", "seconds"}`.
fn results_json(rows: &[Row], test: &[String], plan: &Plan, seconds: f64) -> Value {
    json!({
        "rows": rows.iter().map(|r| json!({
            "model": r.model,
            "modality": r.modality,
            "wt": r.dice[0],
            "tc": r.dice[1],
            "et": r.dice[2],
            "mean": r.dice[3],
            "checkpoint": r.checkpoint.display().to_string(),
        })).collect::<Vec<_>>(),
        "test_cases": test,
        "plan": {
            "phantom_size_xyz": plan.size,
            "phantom_cases": plan.cases,
            "phantom_seed": plan.seed,
            "config_overrides": plan.overrides,
        },
        "protokd_version": env!("CARGO_PKG_VERSION"),
        "seconds": seconds,
    })
}

/// Writes `results.json` (with the seconds since `t0`), then says the table and where the
/// results are.
pub(super) fn write_results(
    o: &DemoOptions,
    rows: &[Row],
    test: &[String],
    t0: Instant,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let seconds = t0.elapsed().as_secs_f64();
    crate::io::files::write_json(
        &o.out.join("results.json"),
        &results_json(rows, test, &o.plan, seconds),
    )?;
    say(&table(rows, test.len()));
    say(&format!(
        "wrote {} (and runs/, eval/, overlays/) in {:.0} s",
        o.out.join("results.json").display(),
        seconds
    ));
    Ok(())
}
