//! The `audit` stage (`src/audit/`): `protokd audit forward|step` (the replay of one
//! computation from files), the golden patches, `protokd verify` and `protokd bench`.

#[path = "../common/bad_models.rs"]
mod bad_models;
#[path = "../common/bounded.rs"]
mod bounded;
#[path = "../common/mod.rs"]
mod common;

mod accuracy;
mod bench;
mod bench_breakdown;
mod golden;
mod limits;
mod loaded_states;
mod no_overwrite;
mod replay;
mod validate;
mod verify;
