//! Data: BraTS datasets, the authors' preprocessed `.npy` datasets, preprocessing, augmentation,
//! splits, phantoms.

pub mod augment;
pub mod brats;
pub mod dataset;
pub mod npy;
pub mod phantom;
pub mod preprocess;
pub mod split;
