//! Layers, forward and backward: one function per direction.
pub mod softmax;
