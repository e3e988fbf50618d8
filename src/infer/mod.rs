//! Inference: the sliding window and `segment`.

pub mod segment;
pub mod sliding_window;
