//! Figures: plots and overlays.

pub(crate) mod overlay;
pub(crate) mod plot;
