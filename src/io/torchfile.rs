//! PyTorch checkpoints (`.pth`, `.pt`) as `torch.save` writes them, read without Python and
//! without running a pickle: the crate `pytorch-reader` (burn's reader; it interprets the
//! pickle opcodes as data and never imports or calls anything) parses the zip container of
//! PyTorch >= 1.6 and the legacy stream of PyTorch 0.1.10 to 1.5, and hands back each tensor
//! by its dotted path through the saved dictionaries (`state_dict.block_one.conv.0.weight`,
//! `optimizer.state.0.exp_avg`).
//!
//! # Where the model is
//!
//! The VNet's state_dict is taken, in this order, from the top level (a bare
//! `torch.save(model.state_dict(), ...)`), from under `state_dict`, or from under `model` (a
//! resumable checkpoint `{"state_dict": ..., "optimizer": ..., "epoch": ...}`): the first
//! place that holds `block_one.conv.0.weight`. Only the tensors under that place are the
//! model's ([`TorchFile::names`]); the others (an optimiser's) are reached by their full path.
//!
//! # Bounds
//!
//! `torch.save` stores every storage uncompressed, so the tensors of a checkpoint it wrote
//! declare together at most as many bytes as the file holds. [`TorchFile::open`] refuses a
//! file whose tensors declare more (a deflated storage, such as a zip bomb, or a view that
//! repeats its storage) before a byte of any tensor is read: reading one then costs at most
//! the file's size, as for a safetensors file. The pickle itself is bounded by the reader
//! (`pytorch_reader::MAX_PICKLE_SIZE`, 100 MiB).
//!
//! # Adam
//!
//! `optimizer.state_dict()` of `torch.optim.Adam` holds `state` (per parameter index: `step`,
//! `exp_avg`, `exp_avg_sq`) and `param_groups` (`lr`, `betas`, `eps`, `weight_decay`,
//! `amsgrad`, `maximize` and the parameter indices `params`). PyTorch numbers the parameters
//! in the order of `model.parameters()`, which is the order of `named_parameters()` and of
//! [`VNetState::parameters`]; [`TorchFile::adam`] maps index `i` onto the `i`-th parameter.

use crate::io::hash::sha256_hex;
use anyhow::{anyhow, bail, Context, Result};
use protokd_reference::adam::AdamState;
use protokd_reference::state::VNetState;
use pytorch_reader::{DType, FileFormat, PickleValue, PytorchReader, Tensor};
use safetensors::Dtype;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a VNet state_dict may sit in a checkpoint, in the order they are tried.
const MODEL_PLACES: [&str; 3] = ["", "state_dict.", "model."];

/// The tensor whose presence marks a place as the model's.
const MARKER: &str = "block_one.conv.0.weight";

/// The largest Adam step count accepted (in an imported optimiser state and in a run's
/// optimiser file): 2^53, where f64 stops counting steps exactly (Adam's bias corrections
/// raise betas to the step).
pub(crate) const MAX_ADAM_STEP: u64 = 1 << 53;

/// How many bytes of a file [`is_torch`] looks at.
const SNIFF: usize = 16;

/// Whether the file starting with `head` is a PyTorch checkpoint rather than a safetensors
/// file: a zip archive (`PK\x03\x04`, PyTorch >= 1.6) or a pickle (opcode `PROTO`, 0x80, then
/// a protocol 2..=5: the legacy format and plain pickles). A safetensors file starts with the
/// 8-byte length of its JSON header and then `{`; a header of 128 + 256 k bytes starts with
/// 0x80 as well, so a `{` at byte 8 decides for safetensors.
pub(crate) fn is_torch(head: &[u8]) -> bool {
    if head.starts_with(b"PK\x03\x04") {
        return true;
    }
    let safetensors_like = head.get(8) == Some(&b'{');
    matches!(head, [0x80, 2..=5, ..]) && !safetensors_like
}

/// The first bytes of `path` (at most [`SNIFF`]), for [`is_torch`].
pub(crate) fn head(path: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF);
    std::fs::File::open(path)
        .and_then(|f| f.take(SNIFF as u64).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(head)
}

/// A PyTorch checkpoint, parsed, its declared sizes checked against the file; tensor bytes are
/// read when asked for.
pub struct TorchFile {
    path: PathBuf,
    reader: PytorchReader,
    /// Where the model's state_dict is (one of [`MODEL_PLACES`]).
    place: &'static str,
    sha256: String,
}

/// One tensor's dtype (as safetensors names it), shape and little-endian bytes.
pub(crate) struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// The Adam state of a resumable checkpoint, mapped onto the model's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchAdam {
    /// Moments and step, in the order of [`VNetState::parameters`].
    pub state: AdamState,
    /// The hyperparameters of `param_groups[0]`.
    pub hyper: AdamHyper,
}

/// `param_groups[0]` of an Adam optimiser.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    /// `lr`.
    pub lr: f64,
    /// `betas[0]`.
    pub beta1: f64,
    /// `betas[1]`.
    pub beta2: f64,
    /// `eps`.
    pub eps: f64,
    /// `weight_decay` (L2, added to the gradient, as `torch.optim.Adam`).
    pub weight_decay: f64,
}

impl TorchFile {
    /// Parses `path` and checks that it holds a VNet state_dict (at a place of
    /// [`MODEL_PLACES`]) and that its tensors declare no more bytes than the file holds.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let reader = PytorchReader::new(path).map_err(|e| {
            anyhow!(
                "{}: not a readable PyTorch checkpoint ({e})",
                path.display()
            )
        })?;
        let declared = reader
            .tensors()
            .values()
            .try_fold(0usize, |sum, t| sum.checked_add(t.byte_len()));
        if declared.is_none_or(|d| d > bytes.len()) {
            bail!(
                "{}: its tensors declare {} bytes but the file holds {}; torch.save stores \
                 tensors uncompressed, so this is not a checkpoint it wrote (a compressed or \
                 repeated storage, e.g. a zip bomb)",
                path.display(),
                declared.map_or("more than 2^64".into(), |d| d.to_string()),
                bytes.len()
            );
        }
        let Some(place) = MODEL_PLACES
            .into_iter()
            .find(|p| reader.get(&format!("{p}{MARKER}")).is_some())
        else {
            let mut names = reader.keys();
            names.sort();
            bail!(
                "{}: not a VNet checkpoint: no tensor `{MARKER}` at the top level or under \
                 `state_dict` or `model` (the file holds: {})",
                path.display(),
                summarise(&names)
            );
        };
        Ok(TorchFile {
            path: path.to_path_buf(),
            reader,
            place,
            sha256: sha256_hex(&bytes),
        })
    }

    /// SHA-256 of the file's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container: `zip` (PyTorch >= 1.6) or `legacy` (PyTorch 0.1.10 to 1.5).
    pub fn format(&self) -> &'static str {
        match self.reader.metadata().format_type {
            FileFormat::Zip => "zip",
            FileFormat::Legacy => "legacy",
            FileFormat::Tar => "tar",
            FileFormat::Pickle => "pickle",
        }
    }

    /// Where the model's state_dict is: `""` (the top level), `state_dict` or `model`.
    pub fn place(&self) -> &'static str {
        self.place.trim_end_matches('.')
    }

    /// The model's tensor names (relative to its place), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .reader
            .keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(self.place).map(String::from))
            .collect();
        n.sort();
        n
    }

    /// The model's tensor `name` (relative to its place), if present.
    fn model_tensor(&self, name: &str) -> Option<&Tensor> {
        self.reader.get(&format!("{}{name}", self.place))
    }

    /// The shape of the model's tensor `name`, if present.
    pub(crate) fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.model_tensor(name).map(|t| t.shape().to_vec())
    }

    /// The model's tensor `name`, read, if present.
    pub(crate) fn raw(&self, name: &str) -> Option<Result<RawTensor>> {
        self.model_tensor(name).map(|t| self.read(t))
    }

    /// Reads `t` (bounded by [`TorchFile::open`]) as little-endian bytes.
    fn read(&self, t: &Tensor) -> Result<RawTensor> {
        let bytes = t
            .read()
            .map_err(|e| anyhow!("{}: cannot read tensor ({e})", self.path.display()))?;
        Ok(RawTensor {
            dtype: dtype(t.dtype()),
            shape: t.shape().to_vec(),
            bytes,
        })
    }

    /// Whether the file holds an optimiser state (`optimizer.state...`).
    pub fn has_adam(&self) -> bool {
        self.reader
            .keys()
            .iter()
            .any(|k| k.starts_with("optimizer.state."))
    }

    /// The Adam state under `optimizer`, mapped onto the parameters of `state` (the model read
    /// from this file): per parameter index `i`, `exp_avg` and `exp_avg_sq` of the `i`-th
    /// parameter's shape, f32; one `step` shared by all. `None` when the file has no optimiser
    /// state. Refused: another optimiser's state (no `exp_avg`), `amsgrad` or `maximize`
    /// (Adam variants protokd does not run), more than one parameter group, a group whose
    /// `params` are not `0..n`, a missing or surplus index, and steps that differ between
    /// parameters.
    pub fn adam(&self, state: &VNetState) -> Result<Option<TorchAdam>> {
        if !self.has_adam() {
            return Ok(None);
        }
        let p = self.path.display();
        let optimizer = PytorchReader::read_pickle_data(&self.path, Some("optimizer"))
            .map_err(|e| anyhow!("{p}: cannot read `optimizer` ({e})"))?;
        let hyper = param_group(&optimizer, state.parameters().count())
            .map_err(|e| anyhow!("{p}: `optimizer.param_groups`: {e}"))?;
        let mut adam = AdamState::for_state(state);
        let mut step = None;
        for (i, (name, t)) in state.parameters().enumerate() {
            for (key, slot) in [
                ("exp_avg", &mut adam.exp_avg[i]),
                ("exp_avg_sq", &mut adam.exp_avg_sq[i]),
            ] {
                let full = format!("optimizer.state.{i}.{key}");
                let raw = match self.reader.get(&full) {
                    Some(x) => self.read(x)?,
                    None => bail!(
                        "{p}: no tensor `{full}` (Adam's state of parameter {i}, `{name}`); is \
                         this an Adam optimiser's state_dict?"
                    ),
                };
                if raw.dtype != Dtype::F32 || raw.shape != t.shape {
                    bail!(
                        "{p}: tensor `{full}` has dtype {:?} and shape {:?}, expected F32 {:?} \
                         (the shape of `{name}`)",
                        raw.dtype,
                        raw.shape,
                        t.shape
                    );
                }
                slot.data = f32s(&raw.bytes);
            }
            let s = self
                .step(&optimizer, i)
                .map_err(|e| anyhow!("{p}: `optimizer.state.{i}.step`: {e}"))?;
            match step {
                Some(first) if first != s => bail!(
                    "{p}: `optimizer.state.{i}.step` = {s} but parameter 0 took {first} steps; \
                     protokd keeps one step count for all parameters"
                ),
                _ => step = Some(s),
            }
        }
        let n = state.parameters().count();
        if let Some(extra) = self.reader.keys().iter().find(|k| {
            k.strip_prefix("optimizer.state.")
                .and_then(|r| r.split('.').next())
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i >= n)
        }) {
            bail!("{p}: unexpected tensor `{extra}`; the model has {n} parameters");
        }
        adam.step = step.unwrap_or(0);
        Ok(Some(TorchAdam { state: adam, hyper }))
    }

    /// Adam's step count of parameter `i`: a tensor (PyTorch >= 1.12 stores a float32 scalar
    /// tensor) or an int (before), a whole number in `0 ..= 2^53`.
    fn step(&self, optimizer: &PickleValue, i: usize) -> std::result::Result<u64, String> {
        let value = match self.reader.get(&format!("optimizer.state.{i}.step")) {
            Some(t) => {
                let raw = self.read(t).map_err(|e| format!("{e:#}"))?;
                if !raw.shape.iter().all(|&d| d == 1) {
                    return Err(format!("shape {:?}, expected a scalar", raw.shape));
                }
                match raw.dtype {
                    Dtype::F32 => f32s(&raw.bytes)[0] as f64,
                    Dtype::F64 => f64::from_le_bytes(raw.bytes[..8].try_into().expect("8")),
                    Dtype::I64 => i64::from_le_bytes(raw.bytes[..8].try_into().expect("8")) as f64,
                    d => return Err(format!("dtype {d:?}, expected a number")),
                }
            }
            None => match lookup(optimizer, &["state", &i.to_string(), "step"]) {
                Some(PickleValue::Int(s)) => *s as f64,
                Some(PickleValue::Float(s)) => *s,
                Some(other) => return Err(format!("{other:?}, expected a number")),
                None => return Err("missing".into()),
            },
        };
        let max = MAX_ADAM_STEP as f64;
        if !(value >= 0.0 && value <= max && value.fract() == 0.0) {
            return Err(format!("{value} is not a whole number in 0 ..= 2^53"));
        }
        Ok(value as u64)
    }
}

/// The value at `path` through nested dictionaries.
fn lookup<'a>(v: &'a PickleValue, path: &[&str]) -> Option<&'a PickleValue> {
    path.iter().try_fold(v, |v, k| match v {
        PickleValue::Dict(d) => d.get(*k),
        _ => None,
    })
}

/// A number of a pickled dictionary (an int or a float).
fn number(v: Option<&PickleValue>, key: &str) -> std::result::Result<f64, String> {
    match v {
        Some(PickleValue::Float(x)) => Ok(*x),
        Some(PickleValue::Int(x)) => Ok(*x as f64),
        Some(PickleValue::Unsupported(t)) => Err(format!(
            "`{key}` is a {t}; protokd reads plain numbers only"
        )),
        other => Err(format!("`{key}` is {other:?}, expected a number")),
    }
}

/// `param_groups[0]` of an Adam optimiser with `n` parameters; see [`TorchFile::adam`].
fn param_group(optimizer: &PickleValue, n: usize) -> std::result::Result<AdamHyper, String> {
    let groups = match lookup(optimizer, &["param_groups"]) {
        Some(PickleValue::List(g)) => g,
        _ => return Err("missing, or not a list".into()),
    };
    let [group] = groups.as_slice() else {
        return Err(format!(
            "{} parameter groups; protokd trains one (every parameter with the same settings)",
            groups.len()
        ));
    };
    let get = |k: &str| lookup(group, &[k]);
    for flag in ["amsgrad", "maximize"] {
        if let Some(PickleValue::Bool(true)) = get(flag) {
            return Err(format!(
                "`{flag}` is True; protokd runs plain Adam (amsgrad and maximize off)"
            ));
        }
    }
    let params: Vec<i64> = match get("params") {
        Some(PickleValue::List(p)) => p
            .iter()
            .map(|x| match x {
                PickleValue::Int(i) => Ok(*i),
                other => Err(format!("`params` holds {other:?}, expected indices")),
            })
            .collect::<std::result::Result<_, _>>()?,
        _ => return Err("`params` missing, or not a list".into()),
    };
    if !params.iter().copied().eq(0..n as i64) {
        return Err(format!(
            "`params` lists {} indices, expected 0..{n} in order (the model's {n} parameters)",
            params.len()
        ));
    }
    let betas = match get("betas") {
        Some(PickleValue::List(b)) if b.len() == 2 => b,
        other => return Err(format!("`betas` is {other:?}, expected a pair")),
    };
    Ok(AdamHyper {
        lr: number(get("lr"), "lr")?,
        beta1: number(betas.first(), "betas[0]")?,
        beta2: number(betas.get(1), "betas[1]")?,
        eps: number(get("eps"), "eps")?,
        weight_decay: number(get("weight_decay"), "weight_decay")?,
    })
}

/// At most eight names, then a count.
pub(crate) fn summarise(names: &[String]) -> String {
    if names.is_empty() {
        return "no tensors".into();
    }
    let head: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
    if names.len() > 8 {
        format!("{}, ... ({} in all)", head.join(", "), names.len())
    } else {
        head.join(", ")
    }
}

/// Little-endian f32 values.
fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The safetensors name of a PyTorch dtype.
fn dtype(d: DType) -> Dtype {
    match d {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U64 => Dtype::U64,
        DType::U32 => Dtype::U32,
        DType::U16 => Dtype::U16,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}

// Verifies (every test in this file): R-DAT-7
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn torch_files_are_told_from_safetensors_by_their_first_bytes() {
        assert!(is_torch(b"PK\x03\x04rest"));
        assert!(is_torch(&[0x80, 2, 0x8a, 0x0a]));
        // A safetensors header of 128 bytes: length 0x80 then `{` at byte 8.
        let mut st = vec![0x80, 2, 0, 0, 0, 0, 0, 0];
        st.push(b'{');
        assert!(!is_torch(&st));
        assert!(!is_torch(b"\x10\0\0\0\0\0\0\0{\"a\":1}"));
        assert!(!is_torch(b""));
    }

    // Verifies: R-CLI-1
    #[test]
    fn a_param_group_is_read_and_variants_are_refused() {
        let group = |extra: Vec<(&str, PickleValue)>| {
            let mut g: HashMap<String, PickleValue> = [
                ("lr", PickleValue::Float(1e-3)),
                (
                    "betas",
                    PickleValue::List(vec![PickleValue::Float(0.9), PickleValue::Float(0.999)]),
                ),
                ("eps", PickleValue::Float(1e-8)),
                ("weight_decay", PickleValue::Int(0)),
                ("amsgrad", PickleValue::Bool(false)),
                (
                    "params",
                    PickleValue::List(vec![PickleValue::Int(0), PickleValue::Int(1)]),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            for (k, v) in extra {
                g.insert(k.into(), v);
            }
            PickleValue::Dict(
                [(
                    "param_groups".to_string(),
                    PickleValue::List(vec![PickleValue::Dict(g)]),
                )]
                .into_iter()
                .collect(),
            )
        };
        let h = param_group(&group(vec![]), 2).unwrap();
        assert_eq!(
            h,
            AdamHyper {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0
            }
        );
        let e = param_group(&group(vec![("amsgrad", PickleValue::Bool(true))]), 2).unwrap_err();
        assert!(e.contains("`amsgrad` is True"), "{e}");
        let e = param_group(&group(vec![]), 3).unwrap_err();
        assert!(e.contains("expected 0..3"), "{e}");
    }
}
