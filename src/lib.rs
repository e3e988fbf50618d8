//! protokd: ProtoKD for brain-tumour segmentation with missing MRI modalities.
//!
//! This package holds everything around the engine: safetensors files, checkpoints, modalities
//! and the command-line tool. The arithmetic is in the `protokd-reference` crate (the
//! specification).

pub mod audit;
pub mod data;
pub mod demo;
pub mod engine;
pub mod eval;
pub mod infer;
pub mod io;
pub mod modality;
pub mod report;
pub mod train;
pub mod volume;
