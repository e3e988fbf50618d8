//! `protokd score`: one segmentation scored against a label map, per region.

use anyhow::{Context, Result};
use clap::Args;
use protokd::data::phantom::parse_release;
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
    /// Label set of both files: 2018 (ET = 4) or 2023 (ET = 3). Default: inferred from the
    /// labels present (4 means 2018, 3 means 2023; with neither, labels 0-2 mean the same in
    /// both and 2018 is used).
    #[arg(long, value_name = "2018|2023")]
    release: Option<String>,
}

/// `protokd score`: scores, writes the JSON (if asked) and prints the table.
pub fn run(s: ScoreArgs) -> Result<()> {
    let release = s
        .release
        .as_deref()
        .map(parse_release)
        .transpose()
        .context("--release")?;
    let opts = ScoreOptions {
        voxel_units: s.voxel_units,
        release,
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
