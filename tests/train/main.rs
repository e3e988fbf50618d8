//! The `train` stage (`src/train/`): `protokd train teacher|student` on tiny configs.

#[path = "../common/bounded.rs"]
mod bounded;
#[path = "../common/mod.rs"]
mod common;

mod limits;
mod run;
