//! `protokd evaluate`: a model segments and scores every case of a labelled dataset (see
//! [`protokd::eval::evaluate`] for the report).

use super::engine::EngineArg;
use super::window::WindowArgs;
use anyhow::Result;
use clap::Args;
use protokd::eval::evaluate::{self, ReportOptions};
use std::path::PathBuf;

/// Arguments of `protokd evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// Model checkpoint: safetensors (protokd- or PyTorch-written) or a PyTorch .pth/.pt.
    #[arg(long, value_name = "M.safetensors")]
    model: PathBuf,
    /// Dataset folder (a folder of BraTS case folders, each with its segmentation, or of the
    /// authors' preprocessed <case>.npy arrays).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Case list (one id a line, `#` comments); default: every case of the dataset.
    #[arg(long, value_name = "LIST.txt")]
    cases: Option<PathBuf>,
    /// The model's input modalities (t1, t2, t1ce, flair, comma-separated); must agree with
    /// the checkpoint. Needed for a PyTorch checkpoint with fewer than 4 channels.
    #[arg(long)]
    modality: Option<String>,
    /// Report folder: receives cases.csv and summary.json.
    #[arg(long, value_name = "REPORT_DIR")]
    out: PathBuf,
    /// HD95 in voxels (spacing 1 on every axis), as the authors' evaluation, instead of mm.
    #[arg(long)]
    voxel_units: bool,
    /// The sliding window.
    #[command(flatten)]
    window: WindowArgs,
    #[command(flatten)]
    engine: EngineArg,
    /// Write into REPORT_DIR even if it exists (replacing the report files).
    #[arg(long)]
    force: bool,
    /// Also write each segmentation to `REPORT_DIR/segmentations/<id>_seg.nii.gz`.
    #[arg(long)]
    save_segmentations: bool,
}

/// `protokd evaluate`: opens the engine, checks the window, then evaluates and reports.
pub fn run(a: EvaluateArgs) -> Result<()> {
    let opts = ReportOptions {
        compute: a.engine.open()?,
        window: a.window.window()?,
        model: a.model,
        modality: a.modality,
        data: a.data,
        cases: a.cases,
        out: a.out,
        voxel_units: a.voxel_units,
        force: a.force,
        save_segmentations: a.save_segmentations,
    };
    evaluate::run(&opts)
}
