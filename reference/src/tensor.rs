//! The one tensor type: a shape and a contiguous row-major `f32` buffer (last axis fastest).
//!
//! Activations are `[N, C, D, H, W]` with `W` (the image `x` axis) fastest, as PyTorch and the
//! method page lay them out.

/// A dense row-major `f32` tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Extent of each axis, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, last axis fastest.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of `+0.0`.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// A tensor from its values. Panics if the length does not match the shape (a programming
    /// error; user data is checked where it enters).
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Self {
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

    /// The shape of a 5-D activation as `[N, C, D, H, W]`. Panics on another rank.
    pub fn dims5(&self) -> [usize; 5] {
        match self.shape[..] {
            [n, c, d, h, w] => [n, c, d, h, w],
            _ => panic!("expected a 5-D tensor, got shape {:?}", self.shape),
        }
    }

    /// The first non-finite value, as `(flat index, value)`, if any.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        self.data
            .iter()
            .copied()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
    }
}
