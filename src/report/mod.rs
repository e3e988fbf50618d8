//! Figures: plots and overlays.

pub mod overlay;
pub mod plot;
