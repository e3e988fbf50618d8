//! Evaluation: metrics and `evaluate`.

pub mod evaluate;
pub mod metrics;
