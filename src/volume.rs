//! 3-D images in memory: values in array order (z, y, x) with x fastest (the order SimpleITK
//! and NumPy give for a NIfTI file, and the network's (D, H, W)), and the geometry that places
//! them in the scanner's world.

use nalgebra::Matrix4;

/// Values of one 3-D image, `dims = [nz, ny, nx]`, x fastest.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    /// `[nz, ny, nx]` (the NIfTI header's `dim[3], dim[2], dim[1]`).
    pub dims: [usize; 3],
    /// `nz * ny * nx` values; voxel `(z, y, x)` is at `(z * ny + y) * nx + x`.
    pub data: Vec<f32>,
}

impl Volume {
    /// A volume from its values. Panics if the length does not match (a programming error).
    pub fn new(dims: [usize; 3], data: Vec<f32>) -> Self {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "Volume::new: length"
        );
        Volume { dims, data }
    }

    /// Flat index of voxel `(z, y, x)`.
    pub fn index(&self, z: usize, y: usize, x: usize) -> usize {
        (z * self.dims[1] + y) * self.dims[2] + x
    }
}

/// Where an image lies in the world, as its NIfTI header says, and the header itself (so that
/// files written from it overlay the source in any viewer).
#[derive(Clone, Debug)]
pub struct Geometry {
    /// Voxel size in mm along (x, y, z) (`pixdim[1..4]`).
    pub spacing: [f64; 3],
    /// Voxel index (i = x, j = y, k = z, 1) to world (mm): the sform when `sform_code > 0`,
    /// else the qform when `qform_code > 0`, else the scaling by `pixdim` (NIfTI's method 1).
    pub affine: Matrix4<f64>,
    /// The source header; written files copy its geometry fields (qform, sform, codes, pixdim,
    /// units) and set their own dimensions, datatype and scaling.
    pub header: nifti::NiftiHeader,
}

/// A volume with its geometry.
#[derive(Clone, Debug)]
pub struct Image {
    /// The values (after `scl_slope` / `scl_inter`).
    pub volume: Volume,
    /// Where it lies.
    pub geometry: Geometry,
}
