//! libFuzzer target: [`targets::config`] (shared with the seeded fuzzer of `tests/fuzz`).
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
#[allow(dead_code)] // each target uses one reader
mod targets;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| targets::config("input.json", bytes));
