//! `protokd segment`: a trained model applied to new cases (see [`protokd::infer::segment`]
//! for the inputs and outputs).

use super::engine::EngineArg;
use super::window::WindowArgs;
use anyhow::{Context, Result};
use clap::Args;
use protokd::data::phantom::parse_release;
use protokd::infer::segment::{self, SegmentOptions};
use protokd::io::files::check_not_input;
use std::path::PathBuf;

/// Arguments of `protokd segment`.
#[derive(Args, Debug)]
pub struct SegmentArgs {
    /// Model checkpoint: safetensors (protokd- or PyTorch-written) or a PyTorch .pth/.pt.
    #[arg(long, value_name = "M.safetensors")]
    model: PathBuf,
    /// A BraTS case folder, a dataset folder of case folders, an authors' preprocessed
    /// <case>.npy file or a folder of them, or NIfTI files in the model's modality order
    /// (repeat --input or separate with commas).
    #[arg(long, required = true, value_delimiter = ',', value_name = "PATH")]
    input: Vec<PathBuf>,
    /// The segmentation file (.nii.gz or .nii); a folder when --input is a dataset.
    #[arg(long, value_name = "SEG.nii.gz")]
    out: PathBuf,
    /// The model's input modalities (t1, t2, t1ce, flair, comma-separated); must agree with
    /// the checkpoint. Needed for a PyTorch checkpoint with fewer than 4 channels.
    #[arg(long)]
    modality: Option<String>,
    /// Also write the class probabilities (4-D float32 NIfTI, x, y, z, class); a folder when
    /// --input is a dataset.
    #[arg(long, value_name = "P.nii.gz")]
    probabilities: Option<PathBuf>,
    /// Also draw the axial slice with the most tumour as a PNG; a folder when --input is a
    /// dataset.
    #[arg(long, value_name = "OVERLAY.png")]
    png: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArg,
    /// The sliding window.
    #[command(flatten)]
    window: WindowArgs,
    /// Label set of the output when --input is NIfTI files: 2018 (ET = 4) or 2023 (ET = 3).
    /// Default: the release the file names use, else 2018. For case and dataset folders it
    /// must agree with their naming.
    #[arg(long, value_name = "2018|2023")]
    release: Option<String>,
    /// Replace outputs that exist.
    #[arg(long)]
    force: bool,
}

/// `protokd segment`: opens the engine, checks the window and `--release`, then segments.
pub fn run(a: SegmentArgs) -> Result<()> {
    let mut inputs = vec![("--model", a.model.as_path())];
    inputs.extend(a.input.iter().map(|p| ("--input", p.as_path())));
    for (flag, out) in [
        ("--out", Some(&a.out)),
        ("--probabilities", a.probabilities.as_ref()),
        ("--png", a.png.as_ref()),
    ] {
        if let Some(out) = out {
            check_not_input(out, flag, &inputs)?;
        }
    }
    let compute = a.engine.open()?;
    let window = a.window.window()?;
    let release = a
        .release
        .as_deref()
        .map(parse_release)
        .transpose()
        .context("--release")?;
    segment::run(&SegmentOptions {
        compute,
        window,
        release,
        model: a.model,
        modality: a.modality,
        input: a.input,
        out: a.out,
        probabilities: a.probabilities,
        png: a.png,
        force: a.force,
    })
}
