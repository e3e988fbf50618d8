//! The one tensor type: a shape and a contiguous row-major buffer of [`Real`] values (`f32` in
//! the product, `f64` for the accuracy yardstick), last axis fastest.
//!
//! Activations are `[N, C, D, H, W]` with `W` (the image `x` axis) fastest, as PyTorch and the
//! method page lay them out.

use crate::real::Real;

/// What every engine's tensor type tells about itself: its shape (outermost axis first).
pub trait Shaped {
    /// Extent of each axis.
    fn shape(&self) -> &[usize];

    /// The shape of a 5-D activation as `[N, C, D, H, W]`. Panics on another rank.
    fn dims5(&self) -> [usize; 5] {
        match self.shape()[..] {
            [n, c, d, h, w] => [n, c, d, h, w],
            _ => panic!("expected a 5-D tensor, got shape {:?}", self.shape()),
        }
    }
}

impl<R: Real> Shaped for Tensor<R> {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// A dense row-major tensor (`f32` unless said otherwise).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<R: Real = f32> {
    /// Extent of each axis, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, last axis fastest.
    pub data: Vec<R>,
}

impl<R: Real> Tensor<R> {
    /// A tensor of `+0.0`.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![R::ZERO; shape.iter().product()],
        }
    }

    /// A tensor from its values. Panics if the length does not match the shape (a programming
    /// error; user data is checked where it enters).
    pub fn from_vec(shape: &[usize], data: Vec<R>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "Tensor::from_vec: shape {shape:?} does not hold {} values",
            data.len()
        );
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The first non-finite value, as `(flat index, value)`, if any.
    pub fn first_non_finite(&self) -> Option<(usize, R)> {
        self.data
            .iter()
            .copied()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
    }

    /// The same values in another float type: exact from `f32` to `f64`, rounded to nearest
    /// from `f64` to `f32` (how the yardstick takes the product's inputs, and how a `f64`
    /// result is compared in `f32` ulps).
    pub fn convert<S: Real>(&self) -> Tensor<S> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&v| S::from_f64(v.to_f64())).collect(),
        }
    }
}

/// A batch of internal label maps `[N, D, H, W]` (values `0 .. n_classes`), `W` fastest.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelMap {
    /// `[N, D, H, W]`.
    pub dims: [usize; 4],
    /// One class index per voxel.
    pub data: Vec<u8>,
}

impl LabelMap {
    /// A label map from its values. Panics if the length does not match `dims`.
    pub fn new(dims: [usize; 4], data: Vec<u8>) -> Self {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "LabelMap::new: length"
        );
        LabelMap { dims, data }
    }

    /// Voxels per sample (`D * H * W`).
    pub fn voxels(&self) -> usize {
        self.dims[1] * self.dims[2] * self.dims[3]
    }
}

impl<R: Real> Tensor<R> {
    /// Channels `channels` (in the given order) of a `[N, C, ...]` tensor, e.g. the student's
    /// modalities out of the four. Panics on an out-of-range channel.
    pub fn select_channels(&self, channels: &[usize]) -> Tensor<R> {
        let (n, c) = (self.shape[0], self.shape[1]);
        let v: usize = self.shape[2..].iter().product();
        let mut shape = self.shape.clone();
        shape[1] = channels.len();
        let mut data = Vec::with_capacity(n * channels.len() * v);
        for i in 0..n {
            for &ch in channels {
                assert!(ch < c, "select_channels: channel {ch} of {c}");
                data.extend_from_slice(&self.data[(i * c + ch) * v..(i * c + ch + 1) * v]);
            }
        }
        Tensor::from_vec(&shape, data)
    }
}
