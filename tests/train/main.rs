//! The `train` stage (`src/train/`): `protokd train teacher|student` on tiny configs.

#[path = "../common/mod.rs"]
mod common;

mod no_overwrite;
mod run;
