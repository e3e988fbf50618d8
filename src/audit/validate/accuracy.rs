//! OQ-6: the float32 error of every operation against the float64 spec on the golden patches
//! ([`crate::audit::accuracy::golden_accuracy`]: the golden teacher's forward and one ProtoKD
//! step, each output's norm-wise relative error, largest ulp distance and conditioning notes).

use super::Finding;
use crate::audit::accuracy::{golden_accuracy, AccuracyTable, Row, NOISE};
use anyhow::Result;
use serde_json::json;
use std::path::Path;

/// One finding per golden patch: it passes when every operation's error is a finite number
/// (a float32 NaN or infinity where float64 is finite fails); the detail names the largest error
/// among the rows that are not rounding noise ([`NOISE`]); the figures are the whole table.
pub fn golden(tree: &Path) -> Result<Vec<(String, Finding)>> {
    Ok(golden_accuracy(&tree.join("golden"))?
        .into_iter()
        .map(|(name, t)| {
            let bad: Vec<&str> = t
                .rows
                .iter()
                .filter(|r| !r.rel_err.is_finite())
                .map(|r| r.operation.as_str())
                .collect();
            let noise = |r: &&Row| r.notes.iter().any(|n| n == NOISE);
            let signal: Vec<&Row> = t.rows.iter().filter(|r| !noise(r)).collect();
            let worst = signal
                .iter()
                .filter(|r| r.rel_err.is_finite())
                .max_by(|a, b| a.rel_err.total_cmp(&b.rel_err));
            let detail = match (bad.first(), worst) {
                (Some(op), _) => format!(
                    "{} of {} operations have no finite error, the first {op}",
                    bad.len(),
                    t.rows.len()
                ),
                (None, Some(w)) => format!(
                    "{} operations measured; largest relative error {:.2e} ({}), largest ulp \
                     distance {}; {} rounding-noise rows (gradients zero in exact arithmetic) \
                     left out",
                    t.rows.len(),
                    w.rel_err,
                    w.operation,
                    signal.iter().map(|r| r.max_ulp).max().unwrap_or(0),
                    t.rows.len() - signal.len()
                ),
                (None, None) => "no operation measured".to_string(),
            };
            let figures = json!({ "accuracy": t });
            (name, Finding::new(bad.is_empty(), detail, figures))
        })
        .collect())
}

/// The accuracy tables among a report's figures, with the check's name, in order.
pub fn tables(r: &super::Report) -> Vec<(String, AccuracyTable)> {
    r.outcomes
        .iter()
        .filter(|o| o.kind.id == "OQ-6")
        .filter_map(|o| {
            let t = serde_json::from_value(o.figures.get("accuracy")?.clone()).ok()?;
            Some((super::render::name(o), t))
        })
        .collect()
}
