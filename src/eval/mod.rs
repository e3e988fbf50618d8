//! Evaluation: metrics and `evaluate`.

pub(crate) mod distance;
pub mod evaluate;
pub mod labels;
pub mod lesionwise;
pub mod metrics;
pub(crate) mod surface_distance;
mod surfel_normals;
