//! protokd: ProtoKD for brain-tumour segmentation with missing MRI modalities.
//!
//! This package holds everything around the engine: safetensors files, checkpoints, modalities
//! and the command-line tool. The arithmetic is in the `protokd-reference` crate (the
//! specification).

pub mod audit;
pub mod augment;
pub mod bench;
pub mod brats;
pub mod checkpoint;
pub mod compute;
pub mod demo;
pub mod device;
pub mod evaluate;
pub mod golden;
pub mod inference;
pub mod metrics;
pub mod modality;
pub mod nifti_io;
pub mod output;
pub mod overlay;
pub mod phantom;
pub mod plot;
pub mod preprocess;
pub mod segment;
pub mod tensorfile;
pub mod train;
pub mod verify;
pub mod volume;
