//! `protokd convert`: a PyTorch checkpoint (`.pth`/`.pt`, [`crate::io::torchfile`]) written
//! as protokd's checkpoint, and, when it holds Adam's state, the optimiser file beside it.
//!
//! Order of operations: the input is read and validated as every checkpoint is
//! ([`checkpoint::load`]: strict state_dict, value rules) and its Adam state imported
//! ([`TorchFile::adam`], moments held to the same rules as a run's); the outputs are checked
//! (neither may be the input, even with `--force`; neither may exist without `--force`); then
//! the checkpoint is written, then the optimiser file, each atomically.
//!
//! Provenance, in the metadata of both outputs: `protokd.source.file` (the input's file name),
//! `protokd.source.sha256`, `protokd.source.format` (`pytorch-zip` or `pytorch-legacy`) and
//! `protokd.source.state_dict` (where the model was: `top level`, `state_dict` or `model`).
//! The optimiser file (`<OUT stem>.optim.safetensors`) holds the tensors of a run's optimiser
//! file (`model.*`, `adam.exp_avg.*`, `adam.exp_avg_sq.*`), `protokd.adam.step`, the
//! checkpoint's `protokd.model.sha256`, and the PyTorch optimiser's settings
//! (`protokd.adam.lr`, `.beta1`, `.beta2`, `.eps`, `.weight_decay`); it holds no run progress.

use crate::io::checkpoint::{self, first_invalid, model_modalities};
use crate::io::files::{check_new, check_not_input};
use crate::io::hash::sha256_hex;
use crate::io::tensorfile::{write_tensors, TensorFile};
use crate::io::torchfile::{TorchAdam, TorchFile};
use crate::modality::Modalities;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// What [`convert`] wrote.
#[derive(Debug)]
pub struct Converted {
    /// The checkpoint.
    pub model: PathBuf,
    /// The optimiser file, when the input held Adam's state, and Adam's step.
    pub optimiser: Option<(PathBuf, u64)>,
    /// The input's container (`zip` or `legacy`).
    pub format: &'static str,
}

/// The optimiser file written beside checkpoint `out`: `x.safetensors` -> `x.optim.safetensors`.
pub fn optimiser_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.optim.safetensors"))
}

/// Reads the PyTorch checkpoint `input` and writes `out` (and its optimiser file); `modality`
/// as for any checkpoint without a record ([`model_modalities`]).
pub fn convert(
    input: &Path,
    out: &Path,
    modality: Option<&Modalities>,
    force: bool,
) -> Result<Converted> {
    let file = TensorFile::open(input)?;
    let Some(torch) = file.torch() else {
        bail!(
            "{}: not a PyTorch checkpoint (no zip or pickle header); convert reads .pth/.pt files \
             written by torch.save",
            input.display()
        );
    };
    let ck = checkpoint::load(input)?;
    let modalities = model_modalities(&ck, modality, input)?;
    let adam = torch.adam(&ck.state)?;
    if let Some(a) = &adam {
        if let Some(bad) = first_invalid(&ck.state, Some(&a.state)) {
            bail!("{}: {bad}", input.display());
        }
    }
    let optimiser = adam.as_ref().map(|_| optimiser_path(out));
    for path in std::iter::once(out).chain(optimiser.as_deref()) {
        check_not_input(path, "output", &[("input", input)])?;
        check_new(path, "output", force)?;
    }
    let source = provenance(input, torch)?;
    checkpoint::save_with(out, &ck.state, &modalities, source.clone())?;
    let optimiser = match (adam, optimiser) {
        (Some(a), Some(path)) => {
            write_optimiser(&path, out, &ck.state, &modalities, &a, source)?;
            Some((path, a.state.step))
        }
        _ => None,
    };
    Ok(Converted {
        model: out.to_path_buf(),
        optimiser,
        format: torch.format(),
    })
}

/// The `protokd.source.*` entries of a conversion of `input`.
fn provenance(input: &Path, torch: &TorchFile) -> Result<Vec<(String, String)>> {
    let name = input
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", input.display()))?;
    let place = match torch.place() {
        "" => "top level",
        p => p,
    };
    Ok([
        ("protokd.source.file", name.to_string_lossy().into_owned()),
        ("protokd.source.sha256", torch.sha256().to_string()),
        (
            "protokd.source.format",
            format!("pytorch-{}", torch.format()),
        ),
        ("protokd.source.state_dict", place.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// Writes the optimiser file `path` of checkpoint `model` (already written).
fn write_optimiser(
    path: &Path,
    model: &Path,
    state: &protokd_reference::state::VNetState,
    modalities: &Modalities,
    adam: &TorchAdam,
    source: Vec<(String, String)>,
) -> Result<()> {
    let model_bytes =
        std::fs::read(model).with_context(|| format!("cannot read back {}", model.display()))?;
    let h = adam.hyper;
    let mut meta = checkpoint::metadata(state, modalities);
    meta.extend(source);
    meta.extend(
        [
            ("protokd.adam.step", adam.state.step.to_string()),
            ("protokd.adam.lr", h.lr.to_string()),
            ("protokd.adam.beta1", h.beta1.to_string()),
            ("protokd.adam.beta2", h.beta2.to_string()),
            ("protokd.adam.eps", h.eps.to_string()),
            ("protokd.adam.weight_decay", h.weight_decay.to_string()),
            ("protokd.model.sha256", sha256_hex(&model_bytes)),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    write_tensors(
        path,
        &checkpoint::optimiser_tensors(state, &adam.state),
        Some(meta),
    )?;
    Ok(())
}
