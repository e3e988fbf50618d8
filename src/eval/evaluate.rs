//! `protokd evaluate`: segment every case of a labelled dataset and score it (method page,
//! section 7), as the paper's Table 1.
//!
//! Per case: [`crate::infer::sliding_window::segment_case`] with the model's modalities, then
//! [`crate::eval::metrics::region_metrics`] against the case's labels, with the voxel spacing of the
//! case's geometry in mm as `(z, y, x)` (or 1 with `--voxel-units`, the authors' evaluation).
//! The cases come from a folder of BraTS case folders or of the authors' `.npy` arrays
//! ([`crate::data::dataset`]); the latter hold no affine, so 1 mm is assumed, said once and
//! recorded as `meta.hd95_spacing`.
//!
//! Each case is also scored with the BraTS challenge metrics
//! ([`crate::eval::lesionwise::challenge_metrics`]: legacy and lesion-wise Dice and HD95) with
//! the parameters of the challenge its id names (`BraTS-MET-...`), else BraTS-GLI; spacing as
//! above.
//!
//! # Summary ([`summarize`])
//! Per region and metric, over the cases in their order: `mean = (sum_i x_i) / n` (f64 sums in
//! case order) and the population standard deviation `sqrt((sum_i (x_i - mean)^2) / n)`. The
//! mean Dice is the mean of the three regions' mean Dice. protokd's HD95 is undefined for a
//! case where either mask is empty, so it is averaged with both conventions:
//! * `hd95`, *defined only*: over the cases where it is defined (`n` says how many);
//! * `hd95_penalised`, *challenge-penalised*: over every case, an undefined HD95 counting as
//!   374 when exactly one mask is empty (Dice 0) and 0 when both are (Dice 1), as BraTS scores.
//!
//! The challenge metrics (`brats_challenge`: legacy Dice and HD95, lesion-wise Dice and HD95)
//! are defined for every case and averaged over all of them.
//!
//! # Files (`REPORT_DIR`, refused if it exists unless `--force`; each written atomically)
//! * `cases.csv`: one row per case, `case`, then per region WT, TC, ET the columns
//!   `<R>_dice, <R>_hd95, <R>_sensitivity, <R>_specificity` (an empty cell for an undefined
//!   HD95), then per region the challenge columns `<R>_legacy_dice, <R>_legacy_hd95,
//!   <R>_lesionwise_dice, <R>_lesionwise_hd95, <R>_lesions_tp, <R>_lesions_fp, <R>_lesions_fn`;
//!   values with Rust's shortest round-trip formatting.
//! * `summary.json`: the summary and `meta` (protokd version, model path and SHA-256,
//!   modalities, window, data folder, case list and the case ids, HD95 units).
//! * with `--save-segmentations`: `segmentations/<id>_seg.nii.gz` (raw labels of the dataset's
//!   release, the case's geometry), to inspect or re-score with `protokd score`.

use crate::data::brats::{self, Case};
use crate::data::dataset::{any_npy, check_headers, discover, load_case};
use crate::data::npy::NO_AFFINE;
use crate::engine::{Compute, Net};
use crate::eval::lesionwise::{Challenge, ChallengeMetrics, HD95_UNDEFINED};
use crate::eval::metrics::{
    region_challenge_metrics, region_metrics, Region, RegionMetrics, CHALLENGE_DEFINITION,
};
use crate::infer::segment::{write_segmentation, Model};
use crate::infer::sliding_window::{segment_case, Window};
use crate::io::console::say;
use crate::io::files::{check_new, check_not_input, write_atomic, write_json};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `protokd evaluate` runs (the command line's options, checked and opened): a model, a
/// dataset and the report folder.
pub struct ReportOptions {
    /// Where the model runs.
    pub compute: Compute,
    /// The sliding window.
    pub window: Window,
    /// Model checkpoint (protokd- or PyTorch-written safetensors).
    pub model: PathBuf,
    /// The model's input modalities as given (`--modality`), checked against the checkpoint.
    pub modality: Option<String>,
    /// Dataset folder (a folder of BraTS case folders, each with its segmentation, or of the
    /// authors' `<case>.npy` arrays, [`crate::data::npy`]).
    pub data: PathBuf,
    /// Case list; `None`: every case of the dataset.
    pub cases: Option<PathBuf>,
    /// Report folder: receives cases.csv and summary.json.
    pub out: PathBuf,
    /// HD95 in voxels (spacing 1) instead of mm.
    pub voxel_units: bool,
    /// Write into the report folder even if it exists (replacing the report files).
    pub force: bool,
    /// Also write each segmentation to `<out>/segmentations/<id>_seg.nii.gz`.
    pub save_segmentations: bool,
}

/// The scores of one case.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CaseScore {
    /// The case id.
    pub id: String,
    /// Metrics per region, WT, TC, ET.
    pub regions: [(Region, RegionMetrics); 3],
    /// The BraTS challenge metrics per region, WT, TC, ET.
    pub challenge: [(Region, ChallengeMetrics); 3],
    /// The challenge whose parameters gave them.
    pub challenge_params: Challenge,
    /// Whether HD95 is in voxels (else mm).
    pub voxel_units: bool,
    /// Seconds to read, segment and score the case.
    pub seconds: f64,
}

/// Options of [`evaluate_dataset`].
#[derive(Clone, Debug, Default)]
pub(crate) struct EvaluateOptions {
    /// HD95 in voxels (spacing 1) instead of mm.
    pub voxel_units: bool,
    /// Folder to write each segmentation to (`<id><seg suffix>.nii.gz`, raw labels); it must
    /// exist.
    pub save_segmentations: Option<PathBuf>,
    /// The challenge whose lesion-wise parameters score the cases.
    pub challenge: Challenge,
}

/// HD95 spacing `(z, y, x)` of a case: its voxel size in mm, or 1 with `voxel_units`.
fn spacing_zyx(case: &brats::LoadedCase, voxel_units: bool) -> Result<[f64; 3]> {
    if voxel_units {
        return Ok([1.0; 3]);
    }
    let s = case.geometry.spacing;
    for (axis, v) in ["x", "y", "z"].iter().zip(s) {
        ensure!(
            v.is_finite() && v > 0.0,
            "case {}: voxel size along {axis} is {v}, not a positive number of mm (use \
             --voxel-units for HD95 in voxels)",
            case.case.id
        );
    }
    Ok([s[2], s[1], s[0]])
}

/// Checks that there is at least one case and that every case has a segmentation file; the
/// error names every case without one and the file looked for.
pub(crate) fn check_labelled(cases: &[Case]) -> Result<()> {
    ensure!(!cases.is_empty(), "no case to evaluate");
    let unlabelled: Vec<&Case> = cases.iter().filter(|c| c.seg.is_none()).collect();
    if let Some(c) = unlabelled.first() {
        let ids: Vec<&str> = unlabelled.iter().map(|c| c.id.as_str()).collect();
        bail!(
            "{} case(s) have no segmentation file, which evaluation needs (looked for {}{}.nii.gz \
             in {}): {}",
            ids.len(),
            c.id,
            c.release.seg_suffix(),
            c.dir.display(),
            ids.join(", ")
        );
    }
    Ok(())
}

/// Segments and scores every case in order (each read with [`load_case`], segmented with
/// [`segment_case`] and scored with [`region_metrics`]); calls `progress(done, total, score)`
/// after each case. A case without a segmentation is an error naming it (checked for all cases
/// before the first is segmented).
pub(crate) fn evaluate_dataset(
    net: &Net,
    cases: &[Case],
    channels: &[usize],
    window: &Window,
    opts: &EvaluateOptions,
    mut progress: impl FnMut(usize, usize, &CaseScore),
) -> Result<Vec<CaseScore>> {
    check_labelled(cases)?;
    let mut scores = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let t0 = Instant::now();
        let loaded = load_case(case)?;
        let labels = loaded
            .labels
            .as_ref()
            .with_context(|| format!("case {}: no labels", case.id))?;
        let spacing = spacing_zyx(&loaded, opts.voxel_units)?;
        let pred = segment_case(net, &loaded, channels, window)?;
        if let Some(dir) = &opts.save_segmentations {
            let path = dir.join(format!("{}{}.nii.gz", case.id, case.release.seg_suffix()));
            write_segmentation(
                &path,
                &pred.labels,
                pred.dims,
                &loaded.geometry,
                case.release,
            )?;
        }
        let spacing_xyz = [spacing[2], spacing[1], spacing[0]];
        let score = CaseScore {
            id: case.id.clone(),
            regions: region_metrics(&pred.labels, labels, pred.dims, spacing),
            challenge: region_challenge_metrics(
                &pred.labels,
                labels,
                pred.dims,
                spacing_xyz,
                opts.challenge,
            ),
            challenge_params: opts.challenge,
            voxel_units: opts.voxel_units,
            seconds: t0.elapsed().as_secs_f64(),
        };
        progress(i + 1, cases.len(), &score);
        scores.push(score);
    }
    Ok(scores)
}

/// Mean and population standard deviation of `n` values (`NaN` for `n = 0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stat {
    /// `sum / n`, the sum in the given order.
    pub mean: f64,
    /// `sqrt(sum (x - mean)^2 / n)`.
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl Stat {
    /// The statistics of `values`, summed in their order.
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        let mean = values.iter().fold(0.0, |s, &v| s + v) / n as f64;
        let var = values.iter().fold(0.0, |s, &v| s + (v - mean) * (v - mean)) / n as f64;
        Stat {
            mean,
            std: var.sqrt(),
            n,
        }
    }

    fn to_json(self) -> Value {
        json!({"mean": self.mean, "std": self.std, "n": self.n})
    }
}

/// The summary of one region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RegionSummary {
    /// The region.
    pub region: Region,
    /// Dice over every case.
    pub dice: Stat,
    /// HD95 over the cases where it is defined (`n` says how many).
    pub hd95: Stat,
    /// HD95 over every case, 374 where one mask is empty and 0 where both are.
    pub hd95_penalised: Stat,
    /// The challenge's legacy Dice, legacy HD95, lesion-wise Dice and lesion-wise HD95.
    pub challenge: [Stat; 4],
    /// Sensitivity over every case.
    pub sensitivity: Stat,
    /// Specificity over every case.
    pub specificity: Stat,
}

/// The summary of an evaluation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Summary {
    /// Number of cases.
    pub cases: usize,
    /// WT, TC, ET.
    pub regions: [RegionSummary; 3],
    /// HD95 in voxels (else mm).
    pub voxel_units: bool,
    /// The challenge whose parameters scored the cases.
    pub challenge: Challenge,
}

/// protokd's HD95 with the challenge's convention where it is undefined: 374 when exactly one
/// mask is empty (then Dice is 0), 0 when both are (then Dice is 1).
fn penalised_hd95(m: &RegionMetrics) -> f64 {
    match m.hd95 {
        Some(v) => v,
        None if m.dice == 1.0 => 0.0,
        None => HD95_UNDEFINED,
    }
}

/// The names of [`RegionSummary::challenge`]'s statistics, in order (JSON keys and CSV columns).
const CHALLENGE_KEYS: [&str; 4] = [
    "legacy_dice",
    "legacy_hd95",
    "lesionwise_dice",
    "lesionwise_hd95",
];

/// What each HD95 average means (the `conventions` of `summary.json`).
const HD95_CONVENTIONS: [(&str, &str); 2] = [
    (
        "hd95",
        "defined only: protokd's HD95 (medpy's hd95) averaged over the cases where both masks \
         are non-empty; n says how many",
    ),
    (
        "hd95_penalised",
        "challenge-penalised: protokd's HD95 averaged over every case, 374 where exactly one \
         mask is empty and 0 where both are, as BraTS scores",
    ),
];

/// Per region mean and population std of each metric (module docs).
pub(crate) fn summarize(scores: &[CaseScore]) -> Summary {
    let regions = [0, 1, 2].map(|r| {
        let pick = |f: fn(&RegionMetrics) -> f64| -> Vec<f64> {
            scores.iter().map(|s| f(&s.regions[r].1)).collect()
        };
        let hd: Vec<f64> = scores.iter().filter_map(|s| s.regions[r].1.hd95).collect();
        let challenge = |f: fn(&ChallengeMetrics) -> f64| -> Stat {
            Stat::of(
                &scores
                    .iter()
                    .map(|s| f(&s.challenge[r].1))
                    .collect::<Vec<_>>(),
            )
        };
        RegionSummary {
            region: Region::ALL[r],
            dice: Stat::of(&pick(|m| m.dice)),
            hd95: Stat::of(&hd),
            hd95_penalised: Stat::of(&pick(penalised_hd95)),
            challenge: [
                challenge(|m| m.legacy_dice),
                challenge(|m| m.legacy_hd95),
                challenge(|m| m.lesion_dice),
                challenge(|m| m.lesion_hd95),
            ],
            sensitivity: Stat::of(&pick(|m| m.sensitivity)),
            specificity: Stat::of(&pick(|m| m.specificity)),
        }
    });
    Summary {
        cases: scores.len(),
        regions,
        voxel_units: scores.first().is_some_and(|s| s.voxel_units),
        challenge: scores
            .first()
            .map_or_else(Challenge::default, |s| s.challenge_params),
    }
}

impl Summary {
    /// Mean Dice of each region, WT, TC, ET.
    pub fn mean_dice(&self) -> [f64; 3] {
        self.regions.map(|r| r.dice.mean)
    }

    /// The mean of the three regions' mean Dice (`((WT + TC) + ET) / 3`), the paper's "mean"
    /// column.
    pub(crate) fn overall_dice(&self) -> f64 {
        let [wt, tc, et] = self.mean_dice();
        ((wt + tc) + et) / 3.0
    }

    fn units(&self) -> &'static str {
        if self.voxel_units {
            "voxels"
        } else {
            "mm"
        }
    }

    /// `{"cases", "mean_dice", "hd95_units", "WT": {"dice": {mean, std, n}, "hd95": ..,
    /// "sensitivity": .., "specificity": ..}, "TC": .., "ET": .., "meta": meta}` (NaN, for no
    /// value, as `null`; `mean_dice` is [`Summary::overall_dice`]).
    pub fn to_json(&self, meta: Value) -> Value {
        let mut obj = serde_json::Map::new();
        obj.insert("cases".into(), json!(self.cases));
        obj.insert("mean_dice".into(), json!(self.overall_dice()));
        obj.insert("hd95_units".into(), json!(self.units()));
        for r in &self.regions {
            let brats: serde_json::Map<String, Value> = CHALLENGE_KEYS
                .iter()
                .zip(r.challenge)
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect();
            obj.insert(
                r.region.name().into(),
                json!({
                    "dice": r.dice.to_json(),
                    "hd95": r.hd95.to_json(),
                    "hd95_penalised": r.hd95_penalised.to_json(),
                    "sensitivity": r.sensitivity.to_json(),
                    "specificity": r.specificity.to_json(),
                    "brats_challenge": brats,
                }),
            );
        }
        let mut conventions: serde_json::Map<String, Value> = HD95_CONVENTIONS
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        conventions.insert(
            "brats_challenge".into(),
            json!(format!(
                "{CHALLENGE_DEFINITION}; parameters of {}",
                self.challenge
            )),
        );
        obj.insert("conventions".into(), Value::Object(conventions));
        obj.insert("meta".into(), meta);
        Value::Object(obj)
    }

    /// The paper's Table 1 layout: Dice (%) WT, TC, ET and their mean, then HD95 (mean over the
    /// cases where defined, with the count), sensitivity and specificity (%).
    pub fn table(&self) -> String {
        let pct = |v: f64| format!("{:.2}", 100.0 * v);
        let row = |name: &str, f: &dyn Fn(&RegionSummary) -> String, last: String| {
            let cells: Vec<String> = self.regions.iter().map(f).collect();
            format!(
                "{name:<20} {:>14} {:>14} {:>14} {last:>8}\n",
                cells[0], cells[1], cells[2]
            )
        };
        let mut s = format!("{} case(s)\n", self.cases);
        s += &format!(
            "{:<20} {:>14} {:>14} {:>14} {:>8}\n",
            "", "WT", "TC", "ET", "mean"
        );
        s += &row("Dice (%)", &|r| pct(r.dice.mean), pct(self.overall_dice()));
        s += &row("Dice std (%)", &|r| pct(r.dice.std), String::new());
        let hd_name = format!("HD95 ({})", self.units());
        s += &row(
            &hd_name,
            &|r| {
                if r.hd95.n == 0 {
                    "n/a (n=0)".to_string()
                } else {
                    format!("{:.2} (n={})", r.hd95.mean, r.hd95.n)
                }
            },
            String::new(),
        );
        s += &row(
            &format!("HD95 penal. ({})", self.units()),
            &|r| format!("{:.2}", r.hd95_penalised.mean),
            String::new(),
        );
        s += &row(
            "Sensitivity (%)",
            &|r| pct(r.sensitivity.mean),
            String::new(),
        );
        s += &row(
            "Specificity (%)",
            &|r| pct(r.specificity.mean),
            String::new(),
        );
        s += &format!("BraTS challenge metrics, {}:\n", self.challenge);
        let names = [
            "Legacy Dice (%)".to_string(),
            format!("Legacy HD95 ({})", self.units()),
            "Lesion Dice (%)".to_string(),
            format!("Lesion HD95 ({})", self.units()),
        ];
        for (k, name) in names.iter().enumerate() {
            // Even rows are Dice (in %), odd rows HD95.
            let cell = |r: &RegionSummary| {
                let v = r.challenge[k].mean;
                if k % 2 == 0 {
                    pct(v)
                } else {
                    format!("{v:.2}")
                }
            };
            s += &row(name, &cell, String::new());
        }
        s += &format!(
            "HD95: {}\nHD95 penal.: {}",
            HD95_CONVENTIONS[0].1, HD95_CONVENTIONS[1].1
        );
        s.truncate(s.trim_end().len());
        s
    }
}

/// A CSV cell: quoted (with doubled quotes) when it holds a comma, quote or line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `cases.csv` (module docs).
pub(crate) fn cases_csv(scores: &[CaseScore]) -> String {
    let mut out = String::from("case");
    for r in Region::ALL {
        for m in ["dice", "hd95", "sensitivity", "specificity"] {
            out += &format!(",{}_{m}", r.name());
        }
    }
    for r in Region::ALL {
        for m in CHALLENGE_KEYS
            .iter()
            .chain(&["lesions_tp", "lesions_fp", "lesions_fn"])
        {
            out += &format!(",{}_{m}", r.name());
        }
    }
    out.push('\n');
    for s in scores {
        out += &csv_cell(&s.id);
        for (_, m) in &s.regions {
            let hd = m.hd95.map_or(String::new(), |v| v.to_string());
            out += &format!(",{},{hd},{},{}", m.dice, m.sensitivity, m.specificity);
        }
        for (_, c) in &s.challenge {
            out += &format!(
                ",{},{},{},{},{},{},{}",
                c.legacy_dice,
                c.legacy_hd95,
                c.lesion_dice,
                c.lesion_hd95,
                c.lesions_tp,
                c.lesions_fp,
                c.lesions_fn
            );
        }
        out.push('\n');
    }
    out
}

/// Writes `cases.csv` and `summary.json` (with `meta` as its `meta`) into `dir`, created if
/// missing; each file is refused if it exists unless `force`, and written atomically.
pub(crate) fn write_report(
    dir: &Path,
    summary: &Summary,
    scores: &[CaseScore],
    meta: Value,
    force: bool,
) -> Result<()> {
    let (csv, json_path) = (dir.join("cases.csv"), dir.join("summary.json"));
    for p in [&csv, &json_path] {
        check_new(p, "report file", force)?;
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report folder {}", dir.display()))?;
    write_atomic(&csv, cases_csv(scores).as_bytes())?;
    write_json(&json_path, &summary.to_json(meta))
}

/// `protokd evaluate`: everything is checked before the first case is segmented (the report
/// folder, the dataset, the case list, the model, every case's labels); then each case is
/// segmented and scored with a line of progress, and the report is written and printed.
pub fn run(opts: &ReportOptions) -> Result<()> {
    let ReportOptions {
        compute,
        window,
        out,
        ..
    } = opts;
    let mut inputs = vec![("--model", opts.model.as_path()), ("--data", &opts.data)];
    inputs.extend(opts.cases.as_deref().map(|c| ("--cases", c)));
    check_not_input(out, "report folder", &inputs)?;
    for name in ["cases.csv", "summary.json"] {
        check_not_input(&out.join(name), "report file", &inputs)?;
    }
    check_new(out, "report folder", opts.force)?;
    ensure!(
        !out.exists() || out.is_dir(),
        "report folder {} exists and is not a folder",
        out.display()
    );
    let dataset = discover(&opts.data)?;
    let dataset = match &opts.cases {
        Some(list) => dataset.select_list(list)?,
        None => dataset,
    };
    let model = Model::load(&opts.model, opts.modality.as_deref())?;
    let seg_dir = out.join("segmentations");
    let challenge = dataset
        .cases
        .first()
        .and_then(|c| Challenge::from_name(&c.id))
        .unwrap_or_default();
    let eval_opts = EvaluateOptions {
        voxel_units: opts.voxel_units,
        save_segmentations: opts.save_segmentations.then(|| seg_dir.clone()),
        challenge,
    };
    // Cases without labels are refused before anything is written.
    check_labelled(&dataset.cases).with_context(|| opts.data.display().to_string())?;
    // Every file's header, before anything is announced or created.
    check_headers(&dataset.cases)?;
    let net = Net::new(compute, &model.state)?;
    let cases = format!("{} case(s) of {}", dataset.cases.len(), opts.data.display());
    model.announce(compute, window, &cases)?;
    if any_npy(&dataset.cases) {
        say(NO_AFFINE)?;
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the report folder {}", out.display()))?;
    if opts.save_segmentations {
        std::fs::create_dir_all(&seg_dir)
            .with_context(|| format!("cannot create the folder {}", seg_dir.display()))?;
    }
    let channels = model.modalities.channels();
    let scores = evaluate_printing(&net, &dataset.cases, channels, window, &eval_opts)?;
    let summary = summarize(&scores);
    let meta = report_meta(opts, &model, &dataset, &eval_opts);
    write_report(out, &summary, &scores, meta, opts.force)?;
    say(&summary.table())?;
    say(&format!(
        "wrote {} and {}",
        out.join("cases.csv").display(),
        out.join("summary.json").display()
    ))
}

/// [`evaluate_dataset`] with one line per case: its Dice per region and its time. A closed
/// pipe stops nothing ([`say`]); another failure to print is reported after the last case.
fn evaluate_printing(
    net: &Net,
    cases: &[Case],
    channels: &[usize],
    window: &Window,
    opts: &EvaluateOptions,
) -> Result<Vec<CaseScore>> {
    let mut said = Ok(());
    let scores = evaluate_dataset(net, cases, channels, window, opts, |done, total, s| {
        let dice: Vec<String> = s
            .regions
            .iter()
            .map(|(r, m)| format!("{} {:.4}", r.name(), m.dice))
            .collect();
        if said.is_ok() {
            said = say(&format!(
                "[{done}/{total}] {}: Dice {} ({:.1} s)",
                s.id,
                dice.join(", "),
                s.seconds
            ));
        }
    })?;
    said?;
    Ok(scores)
}

/// The `meta` of `summary.json` (module docs).
fn report_meta(
    opts: &ReportOptions,
    model: &Model,
    dataset: &brats::Dataset,
    eval_opts: &EvaluateOptions,
) -> Value {
    json!({
        "tool": format!("protokd {}", env!("CARGO_PKG_VERSION")),
        "model": {
            "path": model.path.display().to_string(),
            "sha256": model.sha256,
            "n_filters": model.state.config.n_filters,
        },
        "modalities": model.modalities.to_string(),
        "data": opts.data.display().to_string(),
        "release": dataset.release.short_name(),
        "case_list": opts.cases.as_ref().map(|p| p.display().to_string()),
        "case_ids": dataset.cases.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        "window": {"patch": opts.window.patch, "stride": opts.window.stride},
        "device": opts.compute.describe(),
        "hd95_spacing": if opts.voxel_units { "1 voxel" } else if any_npy(&dataset.cases) { NO_AFFINE } else { "voxel size in mm from each case's NIfTI header" },
        "segmentations": eval_opts.save_segmentations.as_ref().map(|p| p.display().to_string()),
        "brats_challenge": eval_opts.challenge.to_string(),
    })
}

// Verifies (every test in this file): R-WFL-2
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

    /// Challenge metrics whose four averaged values are `d`, `10 d`, `d / 2`, `20 d`.
    fn c(d: f64) -> ChallengeMetrics {
        ChallengeMetrics {
            legacy_dice: d,
            legacy_hd95: 10.0 * d,
            lesion_dice: d / 2.0,
            lesion_hd95: 20.0 * d,
            lesions_tp: 1,
            lesions_fp: 2,
            lesions_fn: 3,
            sensitivity: d,
            specificity: 1.0,
        }
    }

    fn score(id: &str, d: [f64; 3], hd: [Option<f64>; 3]) -> CaseScore {
        CaseScore {
            id: id.into(),
            regions: [0, 1, 2].map(|r| (Region::ALL[r], m(d[r], hd[r]))),
            challenge: [0, 1, 2].map(|r| (Region::ALL[r], c(d[r]))),
            challenge_params: Challenge::Met,
            voxel_units: false,
            seconds: 0.0,
        }
    }

    #[test]
    fn summary_statistics_by_hand() {
        let scores = [
            score("a", [0.5, 1.0, 0.0], [Some(2.0), None, None]),
            score("b", [1.0, 0.5, 0.25], [Some(4.0), Some(1.0), None]),
        ];
        let s = summarize(&scores);
        assert_eq!(s.cases, 2);
        let wt = &s.regions[0];
        assert_eq!((wt.dice.mean, wt.dice.std, wt.dice.n), (0.75, 0.25, 2));
        assert_eq!((wt.hd95.mean, wt.hd95.std, wt.hd95.n), (3.0, 1.0, 2));
        let tc = &s.regions[1];
        assert_eq!((tc.hd95.mean, tc.hd95.std, tc.hd95.n), (1.0, 0.0, 1));
        // Penalised: TC of case a has Dice 1 and no HD95 (both empty): 0; ET of a has Dice 0
        // (one empty): 374; ET of b Dice 0.25 and no HD95 cannot happen, it is one empty: 374.
        assert_eq!((tc.hd95_penalised.mean, tc.hd95_penalised.n), (0.5, 2));
        let et = &s.regions[2];
        assert_eq!((et.hd95_penalised.mean, et.hd95_penalised.n), (374.0, 2));
        assert_eq!(wt.hd95_penalised, wt.hd95);
        // Challenge statistics over every case.
        assert_eq!(wt.challenge[0].mean, 0.75);
        assert_eq!(wt.challenge[1].mean, 7.5);
        assert_eq!(wt.challenge[2].mean, 0.375);
        assert_eq!(wt.challenge[3].mean, 15.0);
        assert_eq!(s.challenge, Challenge::Met);
        assert_eq!(et.hd95.n, 0);
        assert!(et.hd95.mean.is_nan());
        assert_eq!(et.dice.mean, 0.125);
        assert_eq!(s.mean_dice(), [0.75, 0.75, 0.125]);
        assert_eq!(s.overall_dice(), (0.75 + 0.75 + 0.125) / 3.0);
        let j = s.to_json(json!({"x": 1}));
        assert_eq!(j["meta"]["x"], 1);
        assert_eq!(j["mean_dice"], json!((0.75 + 0.75 + 0.125) / 3.0));
        assert_eq!(j["ET"]["hd95"]["mean"], Value::Null);
        assert_eq!(j["WT"]["hd95"]["n"], 2);
        assert_eq!(j["ET"]["hd95_penalised"]["mean"], 374.0);
        assert_eq!(j["WT"]["brats_challenge"]["lesionwise_hd95"]["mean"], 15.0);
        assert!(j["conventions"]["hd95_penalised"]
            .as_str()
            .unwrap()
            .contains("374"));
        assert!(j["conventions"]["brats_challenge"]
            .as_str()
            .unwrap()
            .contains("BraTS-MET"));
        let t = s.table();
        assert!(
            t.contains("Dice (%)") && t.contains("75.00") && t.contains("54.17"),
            "{t}"
        );
        assert!(t.contains("n/a (n=0)") && t.contains("3.00 (n=2)"), "{t}");
        assert!(t.contains("HD95 penal.") && t.contains("374.00"), "{t}");
        assert!(t.contains("Lesion HD95") && t.contains("15.00"), "{t}");
    }

    #[test]
    fn csv_rows_and_quoting() {
        let csv = cases_csv(&[score("x,1", [0.5, 1.0, 0.0], [Some(2.5), None, None])]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("case,WT_dice,WT_hd95,WT_sensitivity,WT_specificity,TC_dice"));
        assert!(lines[0].contains(",ET_specificity,WT_legacy_dice,WT_legacy_hd95,"));
        assert!(lines[0].ends_with(",ET_lesions_tp,ET_lesions_fp,ET_lesions_fn"));
        assert_eq!(
            lines[1],
            "\"x,1\",0.5,2.5,0.5,1,1,,1,1,0,,0,1,\
             0.5,5,0.25,10,1,2,3,1,10,0.5,20,1,2,3,0,0,0,0,1,2,3"
        );
        assert_eq!(lines[0].split(',').count(), 13 + 21);
    }
}
