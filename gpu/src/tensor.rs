//! [`GpuTensor`]: the device counterpart of the reference's `Tensor` (same shape conventions,
//! row-major, last axis fastest). The buffer is shared (`Arc`): operations make new tensors,
//! so cloning a tensor (to keep it for a backward) costs nothing.

use crate::device::{Buffer, Device};
use crate::error::GpuError;
use protokd_reference::Tensor;
use std::sync::Arc;

/// A dense row-major f32 tensor on a device.
#[derive(Clone)]
pub struct GpuTensor {
    /// Extent of each axis, outermost first.
    pub shape: Vec<usize>,
    /// The values.
    pub buf: Arc<Buffer<f32>>,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor{:?}", self.shape)
    }
}

impl GpuTensor {
    /// A tensor of `+0.0`.
    pub fn zeros(dev: &Device, shape: &[usize]) -> Result<Self, GpuError> {
        Ok(GpuTensor {
            shape: shape.to_vec(),
            buf: Arc::new(dev.zeros(shape.iter().product())?),
        })
    }

    /// Uploads a host tensor.
    pub fn upload(dev: &Device, t: &Tensor) -> Result<Self, GpuError> {
        Ok(GpuTensor {
            shape: t.shape.clone(),
            buf: Arc::new(dev.upload(&t.data)?),
        })
    }

    /// Downloads to a host tensor.
    pub fn download(&self, dev: &Device) -> Result<Tensor, GpuError> {
        Ok(Tensor::from_vec(&self.shape, dev.download(&self.buf)?))
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A batch of label maps `[N, D, H, W]` on a device (one byte per voxel, values `0 .. C`).
#[derive(Clone)]
pub struct GpuLabels {
    /// `[N, D, H, W]`.
    pub dims: [usize; 4],
    /// One class index per voxel.
    pub buf: Arc<Buffer<u8>>,
}

impl GpuLabels {
    /// Uploads a host label map.
    pub fn upload(dev: &Device, l: &protokd_reference::LabelMap) -> Result<Self, GpuError> {
        Ok(GpuLabels {
            dims: l.dims,
            buf: Arc::new(dev.upload(&l.data)?),
        })
    }

    /// Voxels per sample (`D * H * W`).
    pub fn voxels(&self) -> usize {
        self.dims[1] * self.dims[2] * self.dims[3]
    }
}

impl GpuTensor {
    /// A tensor holding a new buffer.
    pub fn from_buffer(shape: &[usize], buf: Buffer<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            buf.len(),
            "GpuTensor: shape"
        );
        GpuTensor {
            shape: shape.to_vec(),
            buf: Arc::new(buf),
        }
    }
}
