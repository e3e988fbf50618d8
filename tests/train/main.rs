//! The `train` stage (`src/train/`): `protokd train teacher|student` on tiny configs.

#[path = "../common/bad_models.rs"]
mod bad_models;
#[path = "../common/mod.rs"]
mod common;

#[path = "../common/bounded.rs"]
mod bounded;
mod limits;
mod no_overwrite;
mod npy;
#[path = "../common/npy.rs"]
mod npy_files;
mod resume_states;
mod run;
mod torch_resume;
