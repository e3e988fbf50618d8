//! Layers, forward and backward: one function per direction.
pub mod batchnorm3d;
pub mod conv3d;
pub mod conv_transpose3d;
pub mod relu;
pub mod softmax;
