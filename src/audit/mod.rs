//! Audit: replays, golden patches, verify, bench, validate.

pub mod accuracy;
pub mod bench;
pub mod golden;
pub mod replay;
pub mod validate;
pub mod verify;
