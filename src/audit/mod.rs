//! Audit: replays, golden patches, verify, bench, validate.

pub mod bench;
pub mod golden;
pub mod replay;
pub mod verify;
pub mod validate;
