//! Checkpoints: safetensors files whose tensors are exactly the PyTorch VNet `state_dict`
//! (names, shapes, f32 values, `num_batches_tracked` as int64 scalars), with protokd's config in
//! the metadata:
//!
//! | key | value |
//! |---|---|
//! | `protokd.version` | the crate version that wrote it |
//! | `protokd.in_channels`, `protokd.n_classes`, `protokd.n_filters` | the [`VNetConfig`] |
//! | `protokd.modalities` | the input modalities in channel order, e.g. `t1ce` or `t1,t2,t1ce,flair` |
//!
//! A state_dict saved by PyTorch (`safetensors.torch.save_file(model.state_dict(), ...)`, no
//! metadata) loads too, and so does a `.pth`/`.pt` written by `torch.save` (a bare state_dict or
//! one under `state_dict` or `model`, read by [`crate::io::torchfile`] behind
//! [`TensorFile::open`], which tells the formats apart by their first bytes): the config is
//! inferred from the shapes of `block_one.conv.0.weight` (`[F, in_channels, 3, 3, 3]`) and
//! `out_conv.weight` (`[classes, F, 1, 1, 1]`).
//! Loading is strict, like PyTorch's `load_state_dict(strict=True)`: every entry present with its
//! exact dtype and shape, no extra tensors, and (our rule) every value within its [`Rule`]:
//! finite, a running variance not negative, no magnitude above [`MAX_MAGNITUDE`], and
//! `num_batches_tracked` not negative. The same rules hold before a run saves a state
//! ([`first_invalid`]) and for Adam's moments in a run's optimiser file.

use crate::io::tensorfile::{write_tensors, OutTensor, TensorFile};
use crate::modality::Modalities;
use anyhow::{bail, Context, Result};
use protokd_reference::adam::AdamState;
use protokd_reference::state::{state_dict_spec, Entry, Role, VNetConfig, VNetState, Value};
use protokd_reference::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// A loaded checkpoint: the network state and, when recorded, its input modalities.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Weights and buffers.
    pub state: VNetState,
    /// Input modalities recorded in the metadata (`None` for a plain PyTorch state_dict).
    pub modalities: Option<Modalities>,
}

fn meta_usize(
    file: &TensorFile,
    meta: &HashMap<String, String>,
    key: &str,
) -> Result<Option<usize>> {
    meta.get(key)
        .map(|v| {
            v.parse::<usize>().with_context(|| {
                format!(
                    "{}: metadata `{key}` = `{v}` is not a count",
                    file.path().display()
                )
            })
        })
        .transpose()
}

/// The config from the shapes of the first and last convolutions, checked against the metadata
/// where it has one.
fn infer_config(file: &TensorFile) -> Result<VNetConfig> {
    let first = file.shape("block_one.conv.0.weight")?;
    let last = file.shape("out_conv.weight")?;
    let bad = |name: &str, shape: &[usize], want: &str| {
        anyhow::anyhow!(
            "{}: tensor `{name}` has shape {shape:?}, expected {want}",
            file.path().display()
        )
    };
    if first.len() != 5 || first[2..] != [3, 3, 3] || first[0] == 0 || first[1] == 0 {
        return Err(bad(
            "block_one.conv.0.weight",
            &first,
            "[n_filters, in_channels, 3, 3, 3]",
        ));
    }
    if last.len() != 5 || last[2..] != [1, 1, 1] || last[0] == 0 {
        return Err(bad(
            "out_conv.weight",
            &last,
            "[n_classes, n_filters, 1, 1, 1]",
        ));
    }
    let cfg = VNetConfig {
        in_channels: first[1],
        n_filters: first[0],
        n_classes: last[0],
    };
    if let Some(meta) = file.metadata() {
        for (key, inferred) in [
            ("protokd.in_channels", cfg.in_channels),
            ("protokd.n_classes", cfg.n_classes),
            ("protokd.n_filters", cfg.n_filters),
        ] {
            if let Some(v) = meta_usize(file, &meta, key)? {
                if v != inferred {
                    bail!(
                        "{}: metadata `{key}` = {v} disagrees with the tensor shapes ({inferred})",
                        file.path().display()
                    );
                }
            }
        }
    }
    Ok(cfg)
}

/// The number of classes a BraTS model outputs: background, ET, NCR/NET, ED.
pub(crate) const BRATS_CLASSES: usize = 4;

/// The largest magnitude a model value (weight, bias, running statistic) may have when loaded
/// or saved. Not a guarantee that the forward stays finite (products compound from layer to
/// layer), but a bound far above the values a VNet trained on z-scored inputs holds (Adam
/// moves a weight by about `lr` per step) and far below what overflows f32 at once: a 1e30
/// weight made `segment` write an all-background map with NaN probabilities.
pub(crate) const MAX_MAGNITUDE: f32 = 1e6;

pub(crate) use crate::io::torchfile::MAX_ADAM_STEP;

/// What the values of a stored f32 tensor must satisfy. Checked by [`check_values`] when a
/// model, teacher or optimiser state is loaded and before a run saves one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A weight, bias or running mean: finite, magnitude at most [`MAX_MAGNITUDE`].
    Weight,
    /// A BatchNorm running variance: finite, in `0 ..= MAX_MAGNITUDE`.
    Variance,
    /// Adam's first moment (`exp_avg`): finite.
    Moment,
    /// Adam's second moment (`exp_avg_sq`, a mean of squares): finite and not negative.
    SquaredMoment,
}

impl Rule {
    /// The rule of a model tensor of role `role`.
    pub(crate) fn of(role: Role) -> Rule {
        if role == Role::RunningVar {
            Rule::Variance
        } else {
            Rule::Weight
        }
    }

    /// What is wrong with `v` under this rule, if anything.
    fn problem(self, v: f32) -> Option<String> {
        if !v.is_finite() {
            return Some("non-finite; values must be finite".into());
        }
        if matches!(self, Rule::Variance | Rule::SquaredMoment) && v < 0.0 {
            return Some("a variance (mean of squares) cannot be negative".into());
        }
        if matches!(self, Rule::Weight | Rule::Variance) && v.abs() > MAX_MAGNITUDE {
            return Some(format!(
                "magnitudes above {MAX_MAGNITUDE:e} are refused: no trained VNet holds them, and \
                 such weights drive the forward pass towards f32 overflow"
            ));
        }
        None
    }
}

/// The one check of stored values: `Err("tensor `name` holds v at flat index i (problem)")` for
/// the first value of `t` that breaks `rule`.
pub(crate) fn check_values(name: &str, t: &Tensor, rule: Rule) -> std::result::Result<(), String> {
    for (i, &v) in t.data.iter().enumerate() {
        if let Some(p) = rule.problem(v) {
            return Err(format!("tensor `{name}` holds {v} at flat index {i} ({p})"));
        }
    }
    Ok(())
}

/// The check of a stored count (`num_batches_tracked`): not negative, worded as
/// [`check_values`].
fn check_count(name: &str, v: i64) -> std::result::Result<(), String> {
    if v < 0 {
        return Err(format!(
            "tensor `{name}` holds {v} (a count of batches cannot be negative)"
        ));
    }
    Ok(())
}

/// The first tensor of a model state (named as in its state_dict) and, if given, of its Adam
/// state (`adam.exp_avg.<name>`, `adam.exp_avg_sq.<name>`) that breaks its [`Rule`], as
/// [`check_values`] words it; `None` when all hold.
pub(crate) fn first_invalid(state: &VNetState, adam: Option<&AdamState>) -> Option<String> {
    for e in state.entries() {
        let bad = match &e.value {
            Value::F32(t) => check_values(&e.name, t, Rule::of(e.role)).err(),
            Value::I64(v) => check_count(&e.name, *v).err(),
        };
        if bad.is_some() {
            return bad;
        }
    }
    let adam = adam?;
    for (i, (name, _)) in state.parameters().enumerate() {
        for (prefix, t, rule) in [
            ("adam.exp_avg.", adam.exp_avg.get(i), Rule::Moment),
            (
                "adam.exp_avg_sq.",
                adam.exp_avg_sq.get(i),
                Rule::SquaredMoment,
            ),
        ] {
            if let Some(t) = t {
                if let Err(e) = check_values(&format!("{prefix}{name}"), t, rule) {
                    return Some(e);
                }
            }
        }
    }
    None
}

/// Refuses a model of `path` whose number of classes is not [`BRATS_CLASSES`]; `user` says what
/// needs them (e.g. `segment and evaluate`).
pub(crate) fn check_brats_classes(ck: &Checkpoint, path: &Path, user: &str) -> Result<()> {
    let c = ck.state.config;
    if c.n_classes != BRATS_CLASSES {
        bail!(
            "{}: the model outputs {} classes (tensor `out_conv.weight` of shape [{}, {}, 1, 1, 1]); \
             {user} need {BRATS_CLASSES}: background, ET, NCR/NET, ED",
            path.display(),
            c.n_classes,
            c.n_classes,
            c.n_filters
        );
    }
    Ok(())
}

/// Reads the VNet state stored under `prefix` + state_dict name (prefix `""` for a checkpoint).
pub fn read_state(file: &TensorFile, prefix: &str, cfg: VNetConfig) -> Result<VNetState> {
    let spec = state_dict_spec(&cfg);
    let mut entries = Vec::with_capacity(spec.len());
    for s in &spec {
        let name = format!("{prefix}{}", s.name);
        let value = if s.role == Role::NumBatchesTracked {
            let v = file.i64_scalar(&name)?;
            if let Err(e) = check_count(&name, v) {
                bail!("{}: {e}", file.path().display());
            }
            Value::I64(v)
        } else {
            let t = file.f32(&name)?;
            if t.shape != s.shape {
                bail!(
                    "{}: tensor `{name}` has shape {:?}, expected {:?}",
                    file.path().display(),
                    t.shape,
                    s.shape
                );
            }
            if let Err(e) = check_values(&name, &t, Rule::of(s.role)) {
                bail!("{}: {e}", file.path().display());
            }
            Value::F32(t)
        };
        entries.push(Entry {
            name: s.name.clone(),
            role: s.role,
            value,
        });
    }
    Ok(VNetState::from_entries(cfg, entries))
}

/// Loads a checkpoint (protokd- or PyTorch-written), strictly.
pub fn load(path: &Path) -> Result<Checkpoint> {
    Ok(load_hashed(path)?.0)
}

/// [`load`], and the SHA-256 of the file (from the same read).
pub(crate) fn load_hashed(path: &Path) -> Result<(Checkpoint, String)> {
    let file = TensorFile::open(path)?;
    let cfg = infer_config(&file)?;
    let state = read_state(&file, "", cfg)?;
    let known: std::collections::HashSet<String> =
        state.entries().iter().map(|e| e.name.clone()).collect();
    if let Some(extra) = file.names().into_iter().find(|n| !known.contains(n)) {
        bail!(
            "{}: unexpected tensor `{extra}`; a VNet checkpoint holds exactly the PyTorch state_dict of a VNet with {} input channels, {} filters and {} classes",
            path.display(),
            cfg.in_channels,
            cfg.n_filters,
            cfg.n_classes
        );
    }
    let modalities = match file
        .metadata()
        .and_then(|m| m.get("protokd.modalities").cloned())
    {
        Some(m) => Some(
            Modalities::parse(&m)
                .with_context(|| format!("{}: metadata `protokd.modalities`", path.display()))?,
        ),
        None => None,
    };
    if let Some(m) = &modalities {
        if m.channels().len() != cfg.in_channels {
            bail!(
                "{}: metadata `protokd.modalities` = `{m}` names {} modalities but the network takes {} input channels",
                path.display(),
                m.channels().len(),
                cfg.in_channels
            );
        }
    }
    Ok((Checkpoint { state, modalities }, file.sha256()))
}

/// The input modalities of the model in `ck` (read from `path`): the recorded ones, which
/// `given` (a command's `--modality`) must then equal; for a file without a record (a plain
/// PyTorch state_dict), `given`, or all four for a four-channel model. `given` must name as
/// many modalities as the model has input channels.
pub(crate) fn model_modalities(
    ck: &Checkpoint,
    given: Option<&Modalities>,
    path: &Path,
) -> Result<Modalities> {
    let channels = ck.state.config.in_channels;
    let m = match (&ck.modalities, given) {
        (Some(rec), Some(g)) if rec != g => bail!(
            "model {} takes {channels} channel(s) ({rec}) but --modality gives {g}",
            path.display()
        ),
        (Some(rec), _) => rec.clone(),
        (None, Some(g)) => g.clone(),
        (None, None) if channels == 4 => Modalities::all(),
        (None, None) => bail!(
            "model {} records no modalities and takes {channels} channel(s): pass --modality",
            path.display()
        ),
    };
    if m.channels().len() != channels {
        bail!(
            "model {} takes {channels} channel(s) but --modality gives {} ({m})",
            path.display(),
            m.channels().len()
        );
    }
    Ok(m)
}

/// The state's entries as tensors to write, each name prefixed with `prefix`.
pub fn state_tensors(state: &VNetState, prefix: &str) -> Vec<(String, OutTensor)> {
    state
        .entries()
        .iter()
        .map(|e| {
            let t = match &e.value {
                Value::F32(t) => OutTensor::F32(t.clone()),
                Value::I64(v) => OutTensor::I64(*v),
            };
            (format!("{prefix}{}", e.name), t)
        })
        .collect()
}

/// The tensors of an optimiser file: the model under `model.`, then per parameter (in the order
/// of [`VNetState::parameters`]) Adam's `adam.exp_avg.<name>` and `adam.exp_avg_sq.<name>`.
pub(crate) fn optimiser_tensors(state: &VNetState, adam: &AdamState) -> Vec<(String, OutTensor)> {
    let mut tensors = state_tensors(state, "model.");
    for (i, (name, _)) in state.parameters().enumerate() {
        tensors.push((
            format!("adam.exp_avg.{name}"),
            OutTensor::F32(adam.exp_avg[i].clone()),
        ));
        tensors.push((
            format!("adam.exp_avg_sq.{name}"),
            OutTensor::F32(adam.exp_avg_sq[i].clone()),
        ));
    }
    tensors
}

/// The metadata of a checkpoint of `state` with input `modalities` (the table above).
pub(crate) fn metadata(state: &VNetState, modalities: &Modalities) -> HashMap<String, String> {
    let cfg = state.config;
    [
        ("protokd.version", env!("CARGO_PKG_VERSION").to_string()),
        ("protokd.in_channels", cfg.in_channels.to_string()),
        ("protokd.n_classes", cfg.n_classes.to_string()),
        ("protokd.n_filters", cfg.n_filters.to_string()),
        ("protokd.modalities", modalities.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Writes a checkpoint atomically; returns each tensor's SHA-256.
pub fn save(
    path: &Path,
    state: &VNetState,
    modalities: &Modalities,
) -> Result<Vec<(String, String)>> {
    save_with(path, state, modalities, [])
}

/// [`save`] with `extra` metadata entries beside the table's (e.g. a conversion's provenance).
pub(crate) fn save_with(
    path: &Path,
    state: &VNetState,
    modalities: &Modalities,
    extra: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>> {
    let mut meta = metadata(state, modalities);
    meta.extend(extra);
    write_tensors(path, &state_tensors(state, ""), Some(meta))
}

// Verifies (every test in this file): R-DAT-7
#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt(in_channels: usize, recorded: Option<&str>) -> Checkpoint {
        let cfg = VNetConfig {
            in_channels,
            n_classes: 4,
            n_filters: 2,
        };
        Checkpoint {
            state: VNetState::init(cfg, 1),
            modalities: recorded.map(|m| Modalities::parse(m).unwrap()),
        }
    }

    #[test]
    fn input_modalities_from_the_checkpoint_and_the_user() {
        let p = Path::new("m.safetensors");
        let m = |s: &str| Modalities::parse(s).unwrap();
        let got = |c: &Checkpoint, g: Option<&str>| {
            model_modalities(c, g.map(m).as_ref(), p)
                .map(|x| x.to_string())
                .map_err(|e| e.to_string())
        };
        let student = ckpt(1, Some("t1ce"));
        assert_eq!(got(&student, None).unwrap(), "t1ce");
        assert_eq!(got(&student, Some("T1CE")).unwrap(), "t1ce");
        let e = got(&student, Some("t2,t1")).unwrap_err();
        assert_eq!(
            e,
            "model m.safetensors takes 1 channel(s) (t1ce) but --modality gives t1,t2"
        );
        let plain4 = ckpt(4, None);
        assert_eq!(got(&plain4, None).unwrap(), "t1,t2,t1ce,flair");
        assert!(got(&plain4, Some("t1"))
            .unwrap_err()
            .contains("4 channel(s)"));
        let plain1 = ckpt(1, None);
        assert!(got(&plain1, None).unwrap_err().contains("--modality"));
        assert_eq!(got(&plain1, Some("flair")).unwrap(), "flair");
    }
}
