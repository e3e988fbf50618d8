//! The `audit` stage (`src/audit/`): `protokd audit forward|step` (the replay of one
//! computation from files), the golden patches, `protokd verify` and `protokd bench`.

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod golden;
mod no_overwrite;
mod replay;
mod verify;
