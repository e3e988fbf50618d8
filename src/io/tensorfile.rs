//! safetensors files in and out: reading tensors by name with errors that name the file, the
//! tensor and what was expected; writing atomically (temporary file, then rename) and hashing
//! what was written.

use crate::io::files::write_atomic;
use crate::io::hash::sha256_hex;
use anyhow::{bail, Context, Result};
use protokd_reference::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A safetensors file read into memory and checked to be well-formed.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
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
    /// Reads and validates `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        SafeTensors::deserialize(&bytes).map_err(|e| {
            anyhow::anyhow!("{}: not a valid safetensors file ({e})", path.display())
        })?;
        Ok(TensorFile {
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// SHA-256 of the file's bytes (as read by [`TensorFile::open`]).
    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated in open")
    }

    /// The `__metadata__` map, if any.
    pub fn metadata(&self) -> Option<HashMap<String, String>> {
        SafeTensors::read_metadata(&self.bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.st().names().into_iter().map(String::from).collect();
        n.sort();
        n
    }

    /// Whether a tensor `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }

    fn view(&self, name: &str) -> Result<TensorView<'_>> {
        match self.st().tensor(name) {
            Ok(v) => Ok(v),
            Err(_) => bail!(
                "{}: no tensor named `{name}` (the file holds: {})",
                self.path.display(),
                summarise(&self.names())
            ),
        }
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    /// Tensor `name`, which must be f32.
    pub fn f32(&self, name: &str) -> Result<Tensor> {
        let v = self.view(name)?;
        if v.dtype() != Dtype::F32 {
            bail!(
                "{}: tensor `{name}` has dtype {:?}, expected F32",
                self.path.display(),
                v.dtype()
            );
        }
        let data = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Tensor::from_vec(v.shape(), data))
    }

    /// Tensor `name`, which must be an int64 scalar (shape `[]`).
    pub fn i64_scalar(&self, name: &str) -> Result<i64> {
        let v = self.view(name)?;
        if v.dtype() != Dtype::I64 || !v.shape().is_empty() {
            bail!(
                "{}: tensor `{name}` has dtype {:?} and shape {:?}, expected an I64 scalar (shape [])",
                self.path.display(),
                v.dtype(),
                v.shape()
            );
        }
        let b = v.data();
        Ok(i64::from_le_bytes(b[..8].try_into().expect("8 bytes")))
    }

    /// Tensor `name` of any integer or float dtype, as f64 values with its shape.
    pub fn numeric(&self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let v = self.view(name)?;
        let d = v.data();
        macro_rules! read {
            ($t:ty, $n:expr) => {
                d.chunks_exact($n)
                    .map(|b| <$t>::from_le_bytes(b.try_into().expect("size")) as f64)
                    .collect()
            };
        }
        let values: Vec<f64> = match v.dtype() {
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
        Ok((v.shape().to_vec(), values))
    }
}

/// At most eight names, then a count.
fn summarise(names: &[String]) -> String {
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
