//! `protokd evaluate`: segment every case of a dataset with a model, score each against its
//! labels (method page section 7, [`crate::metrics`]) and summarise per region.
//!
//! Outputs of a report folder:
//! * `cases.csv`: one row per case, `case, WT_dice, WT_hd95, WT_sensitivity, WT_specificity,
//!   TC_..., ET_...`; an undefined HD95 (an empty mask) is an empty cell;
//! * `summary.json`: per region the mean and population standard deviation of each metric
//!   over the cases (HD95 over the cases where it is defined, with their count), the mean
//!   Dice of the three regions, and the provenance (model and its SHA-256, data, case list,
//!   window, units, protokd version);
//! * the printed table: Dice in percent per region and their mean, as the paper's Table 1,
//!   then HD95.
//!
//! Means and standard deviations are f64 sums in case order: `mean = sum / n`,
//! `std = sqrt(sum((x - mean)^2) / n)`.

use crate::brats::{load_case, Case};
use crate::inference::{segment_case, Prediction, Window};
use crate::metrics::{region_metrics, Region, RegionMetrics};
use anyhow::{anyhow, bail, Context, Result};
use protokd_reference::state::VNetState;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// Options of an evaluation.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvaluateOptions {
    /// HD95 in voxels (spacing 1, the authors' evaluation) instead of millimetres.
    pub voxel_units: bool,
}

/// The scores of one case.
#[derive(Clone, Debug)]
pub struct CaseScore {
    /// The case id.
    pub id: String,
    /// WT, TC, ET.
    pub regions: [(Region, RegionMetrics); 3],
    /// Seconds to segment it.
    pub seconds: f64,
}

/// Segments one loaded case and scores it against its labels (an error when it has none).
/// The spacing of HD95 is the image's (z, y, x) voxel size in mm, or 1 with `voxel_units`.
pub fn score_case(
    state: &VNetState,
    case: &crate::brats::LoadedCase,
    channels: &[usize],
    window: &Window,
    opts: &EvaluateOptions,
) -> Result<(CaseScore, Prediction)> {
    let Some(labels) = &case.labels else {
        bail!(
            "case {} ({}) has no segmentation to score against",
            case.case.id,
            case.case.dir.display()
        );
    };
    let t0 = Instant::now();
    let pred = segment_case(state, case, channels, window)?;
    let seconds = t0.elapsed().as_secs_f64();
    let [sx, sy, sz] = case.geometry.spacing;
    let spacing = if opts.voxel_units {
        [1.0; 3]
    } else {
        [sz, sy, sx]
    };
    let regions = region_metrics(&pred.labels, labels, case.dims(), spacing);
    let score = CaseScore {
        id: case.case.id.clone(),
        regions,
        seconds,
    };
    Ok((score, pred))
}

/// [`score_case`] on every case in order (read one at a time); `progress(k, n, score)` after
/// case `k` (from 1) of `n`. Cases without a segmentation are refused before any work, all
/// named.
pub fn evaluate_dataset(
    state: &VNetState,
    cases: &[Case],
    channels: &[usize],
    window: &Window,
    opts: &EvaluateOptions,
    mut progress: impl FnMut(usize, usize, &CaseScore),
) -> Result<Vec<CaseScore>> {
    if cases.is_empty() {
        bail!("no case to evaluate");
    }
    let unlabelled: Vec<&str> = cases
        .iter()
        .filter(|c| c.seg.is_none())
        .map(|c| c.id.as_str())
        .collect();
    if !unlabelled.is_empty() {
        bail!(
            "{} case(s) have no segmentation file to score against: {}",
            unlabelled.len(),
            unlabelled.join(", ")
        );
    }
    let mut out = Vec::with_capacity(cases.len());
    for (k, case) in cases.iter().enumerate() {
        let loaded = load_case(case)?;
        let (score, _) = score_case(state, &loaded, channels, window, opts)?;
        progress(k + 1, cases.len(), &score);
        out.push(score);
    }
    Ok(out)
}

/// Mean and population standard deviation of `xs` (f64, in order); `None` when empty.
fn mean_std(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}

/// Summary statistics of one region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionSummary {
    /// Dice mean and std.
    pub dice: (f64, f64),
    /// HD95 mean and std over the cases where it is defined, and their count.
    pub hd95: Option<(f64, f64)>,
    /// Cases with a defined HD95.
    pub hd95_cases: usize,
    /// Sensitivity mean and std.
    pub sensitivity: (f64, f64),
    /// Specificity mean and std.
    pub specificity: (f64, f64),
}

/// The summary of an evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Cases scored.
    pub cases: usize,
    /// WT, TC, ET.
    pub regions: [(Region, RegionSummary); 3],
}

/// Summarises case scores (at least one).
pub fn summarize(scores: &[CaseScore]) -> Summary {
    assert!(!scores.is_empty(), "summarize: no scores");
    let regions = std::array::from_fn(|i| {
        let col = |f: &dyn Fn(&RegionMetrics) -> f64| -> Vec<f64> {
            scores.iter().map(|s| f(&s.regions[i].1)).collect()
        };
        let hd: Vec<f64> = scores.iter().filter_map(|s| s.regions[i].1.hd95).collect();
        let ms = |v: Vec<f64>| mean_std(&v).expect("at least one case");
        (
            Region::ALL[i],
            RegionSummary {
                dice: ms(col(&|m| m.dice)),
                hd95: mean_std(&hd),
                hd95_cases: hd.len(),
                sensitivity: ms(col(&|m| m.sensitivity)),
                specificity: ms(col(&|m| m.specificity)),
            },
        )
    });
    Summary {
        cases: scores.len(),
        regions,
    }
}

impl Summary {
    /// Mean Dice of WT, TC, ET.
    pub fn mean_dice(&self) -> [f64; 3] {
        self.regions.each_ref().map(|(_, r)| r.dice.0)
    }

    /// `{"cases": n, "WT": {"dice": {"mean", "std"}, "hd95": {"mean", "std", "cases"}, ...},
    /// ..., "mean_dice": .., "meta": meta}`.
    pub fn to_json(&self, meta: Value) -> Value {
        let pair = |(m, s): (f64, f64)| json!({"mean": m, "std": s});
        let mut obj = serde_json::Map::new();
        obj.insert("cases".into(), json!(self.cases));
        for (r, s) in &self.regions {
            obj.insert(
                r.name().into(),
                json!({
                    "dice": pair(s.dice),
                    "hd95": {
                        "mean": s.hd95.map(|p| p.0),
                        "std": s.hd95.map(|p| p.1),
                        "cases": s.hd95_cases,
                    },
                    "sensitivity": pair(s.sensitivity),
                    "specificity": pair(s.specificity),
                }),
            );
        }
        let d = self.mean_dice();
        obj.insert("mean_dice".into(), json!((d[0] + d[1] + d[2]) / 3.0));
        obj.insert("meta".into(), meta);
        Value::Object(obj)
    }

    /// The table: Dice (%) mean ± std per region and their mean, then HD95.
    pub fn table(&self, hd95_unit: &str) -> String {
        let d = self.mean_dice();
        let mut s = format!(
            "{} case(s)        WT              TC              ET              mean\n",
            self.cases
        );
        s.push_str("Dice (%)  ");
        for (_, r) in &self.regions {
            s.push_str(&format!(
                "{:>6.2} ± {:<6.2} ",
                100.0 * r.dice.0,
                100.0 * r.dice.1
            ));
        }
        s.push_str(&format!("{:>6.2}\n", 100.0 * (d[0] + d[1] + d[2]) / 3.0));
        s.push_str(&format!("HD95 ({hd95_unit})"));
        s.push_str(&" ".repeat(10usize.saturating_sub(7 + hd95_unit.len())));
        for (_, r) in &self.regions {
            match r.hd95 {
                Some((m, sd)) => s.push_str(&format!("{m:>6.2} ± {sd:<6.2} ")),
                None => s.push_str(&format!("{:>6} {:<8} ", "n/a", "")),
            }
        }
        s.push('\n');
        s
    }
}

/// `cases.csv` (see the module docs).
pub fn cases_csv(scores: &[CaseScore]) -> String {
    let mut s = String::from("case");
    for r in Region::ALL {
        for m in ["dice", "hd95", "sensitivity", "specificity"] {
            s.push_str(&format!(",{}_{m}", r.name()));
        }
    }
    s.push('\n');
    for c in scores {
        s.push_str(&c.id);
        for (_, m) in &c.regions {
            let hd = m.hd95.map_or(String::new(), |v| v.to_string());
            s.push_str(&format!(
                ",{},{hd},{},{}",
                m.dice, m.sensitivity, m.specificity
            ));
        }
        s.push('\n');
    }
    s
}

/// Writes `cases.csv` and `summary.json` into `dir` (created; each file refused if it exists
/// unless `force`, then written atomically).
pub fn write_report(
    dir: &Path,
    summary: &Summary,
    scores: &[CaseScore],
    meta: Value,
    force: bool,
) -> Result<()> {
    let csv = dir.join("cases.csv");
    let json_path = dir.join("summary.json");
    for p in [&csv, &json_path] {
        crate::output::check_new(p, "report file", force)?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow!("report folder {}: cannot create ({e})", dir.display()))?;
    crate::tensorfile::write_atomic(&csv, cases_csv(scores).as_bytes())?;
    let mut text = serde_json::to_string_pretty(&summary.to_json(meta))?;
    text.push('\n');
    crate::tensorfile::write_atomic(&json_path, text.as_bytes())
        .with_context(|| format!("report {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(dice: f64, hd95: Option<f64>) -> RegionMetrics {
        RegionMetrics {
            dice,
            hd95,
            sensitivity: dice,
            specificity: 1.0,
        }
    }

    fn score(id: &str, d: [f64; 3], hd: [Option<f64>; 3]) -> CaseScore {
        CaseScore {
            id: id.into(),
            regions: [
                (Region::Wt, m(d[0], hd[0])),
                (Region::Tc, m(d[1], hd[1])),
                (Region::Et, m(d[2], hd[2])),
            ],
            seconds: 0.0,
        }
    }

    #[test]
    fn summary_means_stds_and_undefined_hd95() {
        let s = summarize(&[
            score("a", [0.5, 1.0, 0.0], [Some(2.0), None, None]),
            score("b", [1.0, 0.5, 0.0], [Some(4.0), Some(3.0), None]),
        ]);
        let [wt, tc, et] = &s.regions;
        assert_eq!(wt.1.dice, (0.75, 0.25));
        assert_eq!(wt.1.hd95, Some((3.0, 1.0)));
        assert_eq!((tc.1.hd95, tc.1.hd95_cases), (Some((3.0, 0.0)), 1));
        assert_eq!((et.1.hd95, et.1.hd95_cases), (None, 0));
        let j = s.to_json(json!({}));
        assert_eq!(j["mean_dice"], json!((0.75 + 0.75 + 0.0) / 3.0));
        assert_eq!(j["ET"]["hd95"]["mean"], Value::Null);
        let t = s.table("mm");
        assert!(t.contains("75.00 ± 25.00") && t.contains("n/a"), "{t}");
        let csv = cases_csv(&[score("a", [0.5, 1.0, 0.0], [Some(2.0), None, None])]);
        assert_eq!(csv.lines().nth(1), Some("a,0.5,2,0.5,1,1,,1,1,0,,0,1"));
    }
}
