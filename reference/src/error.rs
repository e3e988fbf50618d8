//! Errors for data that reaches the engine from a user: each names the tensor and what was
//! expected.

use thiserror::Error;

/// What is wrong with an input, a label map or a state handed to the engine.
#[derive(Debug, Error, PartialEq)]
pub enum EngineError {
    /// A tensor has the wrong rank or shape.
    #[error("tensor `{name}` has shape {got:?}, expected {expected}")]
    Shape {
        /// The tensor.
        name: String,
        /// Its shape.
        got: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// The input's spatial size cannot go through four stride-2 levels.
    #[error("tensor `{name}` has spatial size {dims:?} (D, H, W); each must be a positive multiple of 16")]
    NotDivisibleBy16 {
        /// The tensor.
        name: String,
        /// Its spatial size.
        dims: [usize; 3],
    },
    /// NaN or infinity in an input or a weight.
    #[error("tensor `{name}` holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// The tensor.
        name: String,
        /// Flat index of the first such value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A label outside `0 .. n_classes`.
    #[error("tensor `{name}` holds label {value} at flat index {index}; labels must be integers in 0..={max}")]
    Label {
        /// The tensor.
        name: String,
        /// Flat index.
        index: usize,
        /// The value, as read.
        value: f64,
        /// Largest allowed label.
        max: usize,
    },
    /// Training-mode BatchNorm needs at least two values per channel at the deepest level.
    #[error("{0}")]
    BatchTooSmall(String),
    /// A device (GPU) failed: its driver, compiler or memory.
    #[error("{0}")]
    Device(String),
}

impl From<crate::layers::batchnorm3d::BatchTooSmall> for EngineError {
    fn from(e: crate::layers::batchnorm3d::BatchTooSmall) -> Self {
        EngineError::BatchTooSmall(e.to_string())
    }
}

/// Checks that a tensor holds only finite values.
pub fn check_finite<R: crate::Real>(name: &str, t: &crate::Tensor<R>) -> Result<(), EngineError> {
    match t.first_non_finite() {
        Some((index, value)) => Err(EngineError::NonFinite {
            name: name.to_string(),
            index,
            value: value.to_f64() as f32,
        }),
        None => Ok(()),
    }
}
