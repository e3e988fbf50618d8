//! `protokd score`: one segmentation scored against a label map, per region.

use anyhow::{Context, Result};
use clap::Args;
use protokd::eval::labels::LabelSet;
use protokd::eval::lesionwise::Challenge;
use protokd::eval::metrics::{score_files, ScoreOptions};
use protokd::io::console::say;
use protokd::io::files::{check_new, check_not_input, write_json};
use protokd::io::nifti::read_dims;
use std::path::{Path, PathBuf};

/// Arguments of `protokd score`.
#[derive(Args)]
pub struct ScoreArgs {
    /// The segmentation to score (NIfTI, raw BraTS labels).
    #[arg(long, value_name = "SEG.nii.gz")]
    pred: PathBuf,
    /// The reference label map (NIfTI, raw BraTS labels, same grid as --pred).
    #[arg(long, value_name = "GT.nii.gz")]
    label: PathBuf,
    /// Also write the metrics as JSON (atomically; refused if it exists, unless --force).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Replace an existing --json file.
    #[arg(long)]
    force: bool,
    /// HD95 in voxels (spacing 1 on every axis), as the authors' evaluation, instead of mm.
    #[arg(long)]
    voxel_units: bool,
    /// Label set of both files: 2018 (1 NCR/NET, 2 ED, 4 ET), 2023 (1 NCR, 2 ED, 3 ET),
    /// 2024-gli (GLI and MET 2024: 1 NETC, 2 SNFH, 3 ET, 4 RC) or 2024-ped (1 ET, 2 NET, 3 CC,
    /// 4 ED). Default: inferred from the labels present and the file names; refused when
    /// releases that read them differently both fit.
    #[arg(long, alias = "release", value_name = "2018|2023|2024-gli|2024-ped")]
    labels: Option<String>,
    /// BraTS challenge whose lesion-wise parameters (GT dilation, lesion volume threshold) to
    /// use: gli, ssa, men, ped, met. Default: the one a file name names (`BraTS-MET-...`), else
    /// gli.
    #[arg(long, value_name = "gli|ssa|men|ped|met")]
    challenge: Option<String>,
}

/// `protokd score`: scores, writes the JSON (if asked) and prints the table.
pub fn run(s: ScoreArgs) -> Result<()> {
    let labels = s
        .labels
        .as_deref()
        .map(LabelSet::parse)
        .transpose()
        .context("--labels (--release)")?;
    let challenge = s
        .challenge
        .as_deref()
        .map(Challenge::parse)
        .transpose()
        .context("--challenge")?;
    let opts = ScoreOptions {
        voxel_units: s.voxel_units,
        labels,
        challenge,
    };
    if let Some(path) = &s.json {
        check_not_input(
            path,
            "--json",
            &[("--pred", &s.pred), ("--label", &s.label)],
        )?;
        check_new(path, "JSON output", s.force)?;
    }
    same_dims(&s.pred, &s.label)?;
    let report = score_files(&s.pred, &s.label, opts)?;
    if let Some(path) = &s.json {
        write_json(path, &report.to_json())?;
    }
    say(&report.table())
}

/// Refuses two files whose headers give different dims, after reading both headers and before
/// reading (or decompressing) any voxel; the same message as [`score_files`] gives.
fn same_dims(pred: &Path, label: &Path) -> Result<()> {
    let (p, l) = (read_dims(pred)?, read_dims(label)?);
    if p != l {
        let xyz = |d: [usize; 3]| format!("{} x {} x {}", d[2], d[1], d[0]);
        anyhow::bail!(
            "the prediction {} is {} voxels (x, y, z) but the label map {} is {}; both must lie \
             on the same grid (seen in the headers, before reading the voxels)",
            pred.display(),
            xyz(p),
            label.display(),
            xyz(l)
        );
    }
    Ok(())
}
