//! Data: BraTS datasets, preprocessing, augmentation, splits, phantoms.

pub mod augment;
pub mod brats;
pub mod phantom;
pub mod preprocess;
pub mod split;
