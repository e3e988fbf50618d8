//! Audit: replays, golden patches, verify, bench.

pub mod accuracy;
pub mod bench;
pub mod golden;
pub mod replay;
pub mod verify;
