//! The `data` stage (`src/data/`): BraTS datasets on disk (discovery, case lists, loading and
//! its checks), the authors' `.npy` datasets, preprocessing, augmentation, and the BraTS-like
//! phantoms.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/npy.rs"]
mod npy_files;

mod augment;
mod brats;
mod no_overwrite;
mod npy;
mod phantom;
mod preprocess;
