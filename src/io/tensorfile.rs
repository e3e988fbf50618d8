//! Tensor files in and out: reading tensors by name with errors that name the file, the
//! tensor and what was expected; writing safetensors atomically (temporary file, then rename)
//! and hashing what was written.
//!
//! [`TensorFile::open`] decides the format by the file's first bytes, not its name
//! ([`torchfile::is_torch`]): a zip archive or a pickle is a PyTorch checkpoint, read by
//! [`TorchFile`] (its model's tensors, under their state_dict names, no metadata); anything
//! else must be a safetensors file.

use crate::io::files::write_atomic;
use crate::io::hash::sha256_hex;
use crate::io::torchfile::{self, summarise, RawTensor, TorchFile};
use anyhow::{bail, Context, Result};
use protokd_reference::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A safetensors file read into memory and checked to be well-formed, or a PyTorch
/// checkpoint.
pub struct TensorFile {
    path: PathBuf,
    backing: Backing,
}

/// Where a [`TensorFile`]'s tensors come from.
enum Backing {
    /// The bytes of a safetensors file.
    Safetensors(Vec<u8>),
    /// A PyTorch checkpoint (its model's state_dict).
    Torch(TorchFile),
}

/// One tensor to write.
#[derive(Clone, Debug, PartialEq)]
pub enum OutTensor {
    /// f32, any shape (a 0-d tensor for a scalar).
    F32(Tensor),
    /// An int64 scalar (`num_batches_tracked`).
    I64(i64),
}

impl OutTensor {
    /// The little-endian bytes that are stored (and hashed).
    pub(crate) fn le_bytes(&self) -> Vec<u8> {
        match self {
            OutTensor::F32(t) => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            OutTensor::I64(v) => v.to_le_bytes().to_vec(),
        }
    }
}

impl TensorFile {
    /// Reads and validates `path`: a PyTorch checkpoint ([`TorchFile::open`]) when its first
    /// bytes say so, else a safetensors file.
    pub fn open(path: &Path) -> Result<Self> {
        let backing = if torchfile::is_torch(&torchfile::head(path)?) {
            Backing::Torch(TorchFile::open(path)?)
        } else {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            SafeTensors::deserialize(&bytes).map_err(|e| {
                anyhow::anyhow!("{}: not a valid safetensors file ({e})", path.display())
            })?;
            Backing::Safetensors(bytes)
        };
        Ok(TensorFile {
            path: path.to_path_buf(),
            backing,
        })
    }

    /// SHA-256 of the file's bytes (as read by [`TensorFile::open`]).
    pub fn sha256(&self) -> String {
        match &self.backing {
            Backing::Safetensors(bytes) => sha256_hex(bytes),
            Backing::Torch(t) => t.sha256().to_string(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The PyTorch checkpoint behind this file, if it is one.
    pub fn torch(&self) -> Option<&TorchFile> {
        match &self.backing {
            Backing::Torch(t) => Some(t),
            Backing::Safetensors(_) => None,
        }
    }

    fn st(bytes: &[u8]) -> SafeTensors<'_> {
        SafeTensors::deserialize(bytes).expect("validated in open")
    }

    /// The `__metadata__` map, if any (a PyTorch checkpoint has none).
    pub fn metadata(&self) -> Option<HashMap<String, String>> {
        match &self.backing {
            Backing::Safetensors(bytes) => SafeTensors::read_metadata(bytes)
                .ok()
                .and_then(|(_, m)| m.metadata().clone()),
            Backing::Torch(_) => None,
        }
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        match &self.backing {
            Backing::Safetensors(bytes) => {
                let mut n: Vec<String> = Self::st(bytes)
                    .names()
                    .into_iter()
                    .map(String::from)
                    .collect();
                n.sort();
                n
            }
            Backing::Torch(t) => t.names(),
        }
    }

    /// Whether a tensor `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        match &self.backing {
            Backing::Safetensors(bytes) => Self::st(bytes).tensor(name).is_ok(),
            Backing::Torch(t) => t.shape(name).is_some(),
        }
    }

    fn missing(&self, name: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: no tensor named `{name}` (the file holds: {})",
            self.path.display(),
            summarise(&self.names())
        )
    }

    /// Tensor `name`: its dtype, shape and little-endian bytes.
    fn raw(&self, name: &str) -> Result<RawTensor> {
        match &self.backing {
            Backing::Safetensors(bytes) => match Self::st(bytes).tensor(name) {
                Ok(v) => Ok(RawTensor {
                    dtype: v.dtype(),
                    shape: v.shape().to_vec(),
                    bytes: v.data().to_vec(),
                }),
                Err(_) => Err(self.missing(name)),
            },
            Backing::Torch(t) => t.raw(name).unwrap_or_else(|| Err(self.missing(name))),
        }
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let shape = match &self.backing {
            Backing::Safetensors(bytes) => Self::st(bytes)
                .tensor(name)
                .ok()
                .map(|v| v.shape().to_vec()),
            Backing::Torch(t) => t.shape(name),
        };
        shape.ok_or_else(|| self.missing(name))
    }

    /// Tensor `name`, which must be f32.
    pub fn f32(&self, name: &str) -> Result<Tensor> {
        let v = self.raw(name)?;
        if v.dtype != Dtype::F32 {
            bail!(
                "{}: tensor `{name}` has dtype {:?}, expected F32",
                self.path.display(),
                v.dtype
            );
        }
        let data = v
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Tensor::from_vec(&v.shape, data))
    }

    /// Tensor `name`, which must be an int64 scalar (shape `[]`).
    pub fn i64_scalar(&self, name: &str) -> Result<i64> {
        let v = self.raw(name)?;
        if v.dtype != Dtype::I64 || !v.shape.is_empty() {
            bail!(
                "{}: tensor `{name}` has dtype {:?} and shape {:?}, expected an I64 scalar (shape [])",
                self.path.display(),
                v.dtype,
                v.shape
            );
        }
        Ok(i64::from_le_bytes(
            v.bytes[..8].try_into().expect("8 bytes"),
        ))
    }

    /// Tensor `name` of any integer or float dtype, as f64 values with its shape.
    pub fn numeric(&self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let v = self.raw(name)?;
        let d = &v.bytes;
        macro_rules! read {
            ($t:ty, $n:expr) => {
                d.chunks_exact($n)
                    .map(|b| <$t>::from_le_bytes(b.try_into().expect("size")) as f64)
                    .collect()
            };
        }
        let values: Vec<f64> = match v.dtype {
            Dtype::U8 => d.iter().map(|&b| b as f64).collect(),
            Dtype::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
            Dtype::BOOL => d.iter().map(|&b| (b != 0) as u8 as f64).collect(),
            Dtype::I16 => read!(i16, 2),
            Dtype::U16 => read!(u16, 2),
            Dtype::I32 => read!(i32, 4),
            Dtype::U32 => read!(u32, 4),
            Dtype::I64 => read!(i64, 8),
            Dtype::U64 => read!(u64, 8),
            Dtype::F32 => read!(f32, 4),
            Dtype::F64 => read!(f64, 8),
            other => bail!(
                "{}: tensor `{name}` has dtype {other:?}, expected an integer or float dtype",
                self.path.display()
            ),
        };
        Ok((v.shape, values))
    }
}

/// Serialises tensors (with optional metadata) to safetensors bytes.
pub fn serialize(
    tensors: &[(String, OutTensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| match t {
            OutTensor::F32(x) => (n.clone(), Dtype::F32, x.shape.clone(), t.le_bytes()),
            OutTensor::I64(_) => (n.clone(), Dtype::I64, vec![], t.le_bytes()),
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let mut out = safetensors::serialize(views, metadata.clone())?;
    if let Some(meta) = &metadata {
        sort_metadata(&mut out, meta)?;
    }
    Ok(out)
}

/// safetensors writes the `__metadata__` map first in the header, in `HashMap` order, which
/// changes from run to run. Rewrites it in sorted key order (same entries, hence the same
/// length) so that the same tensors and metadata always give the same bytes.
fn sort_metadata(bytes: &mut [u8], meta: &HashMap<String, String>) -> Result<()> {
    const KEY: &[u8] = br#"{"__metadata__":"#;
    let sorted: std::collections::BTreeMap<&String, &String> = meta.iter().collect();
    let sorted = serde_json::to_vec(&sorted)?;
    let (start, end) = (8 + KEY.len(), 8 + KEY.len() + sorted.len());
    if bytes.get(8..start) != Some(KEY) || !matches!(bytes.get(end), Some(b',' | b'}')) {
        bail!("unexpected safetensors header layout: cannot put the metadata in sorted order");
    }
    bytes[start..end].copy_from_slice(&sorted);
    Ok(())
}

/// Writes tensors atomically to `path` and returns `(name, sha256 of its little-endian bytes)`
/// for each, in the given order.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, OutTensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<(String, String)>> {
    write_atomic(path, &serialize(tensors, metadata)?)?;
    Ok(tensors
        .iter()
        .map(|(n, t)| (n.clone(), sha256_hex(&t.le_bytes())))
        .collect())
}
