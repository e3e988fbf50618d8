//! Where the time of the benched runs went, per [`Category`] of engine operation: the rows of
//! the record's `breakdown` and the table `protokd bench` prints.
//!
//! Each category's seconds are those of its calls ([`crate::engine::timed`]) over all timed
//! runs; `other` also takes the time outside every call (the total, the sum of the runs' wall
//! times, minus the timed calls), so the shares add up to 1. A category's GFLOP/s is its
//! FLOPs over its own seconds, and its fraction of the peak that over the machine's measured
//! FMA peak; categories without counted FLOPs have neither.

use crate::engine::timed::{Category, Tally};
use serde_json::{json, Value};

/// The breakdown rows (see the module docs) of `tally` over `total` seconds, against `peak`
/// GFLOP/s: one object per category, in [`Category::ALL`] order, then `operations`, the
/// per-operation counts.
pub(super) fn rows(tally: &Tally, total: f64, peak: f64) -> Value {
    let by = tally.by_category();
    let called: f64 = by.iter().map(|(_, c)| c.seconds).sum();
    let categories: Vec<Value> = by
        .iter()
        .map(|(cat, c)| {
            let seconds = match cat {
                Category::Other => c.seconds + (total - called).max(0.0),
                _ => c.seconds,
            };
            let gflops = (c.flops > 0).then(|| c.flops as f64 / seconds / 1e9);
            json!({
                "category": cat.name(),
                "calls": c.calls,
                "seconds": seconds,
                "share": seconds / total,
                "flops": c.flops,
                "gflops_per_s": gflops,
                "fraction_of_peak": gflops.map(|g| g / peak),
            })
        })
        .collect();
    let operations: Vec<Value> = tally
        .0
        .iter()
        .map(|(op, c)| {
            json!({"operation": format!("{op:?}"), "calls": c.calls, "seconds": c.seconds, "flops": c.flops})
        })
        .collect();
    json!({"categories": categories, "operations": operations})
}

/// The breakdown of a record as a text table: category, seconds, share, GFLOP/s, % of peak.
pub fn table(breakdown: &Value) -> String {
    let mut out = format!(
        "{:<16} {:>10} {:>7} {:>9} {:>9}\n",
        "where", "seconds", "share", "GFLOP/s", "of peak"
    );
    for r in breakdown["categories"].as_array().into_iter().flatten() {
        let opt = |v: &Value, scale: f64, unit: &str| {
            v.as_f64()
                .map_or("-".to_string(), |x| format!("{:.1}{unit}", x * scale))
        };
        out += &format!(
            "{:<16} {:>10.4} {:>6.1}% {:>9} {:>9}\n",
            r["category"].as_str().unwrap_or(""),
            r["seconds"].as_f64().unwrap_or(f64::NAN),
            r["share"].as_f64().unwrap_or(f64::NAN) * 100.0,
            opt(&r["gflops_per_s"], 1.0, ""),
            opt(&r["fraction_of_peak"], 100.0, "%"),
        );
    }
    out
}
