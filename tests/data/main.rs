//! The `data` stage (`src/data/`): BraTS datasets on disk (discovery, case lists, loading and
//! its checks), preprocessing, augmentation, and the BraTS-like phantoms.

#[path = "../common/mod.rs"]
mod common;

mod augment;
mod brats;
mod no_overwrite;
mod phantom;
mod preprocess;
