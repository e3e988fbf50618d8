//! libFuzzer target: [`targets::npy`] (shared with the seeded fuzzer of `tests/fuzz`),
//! each input written to one file in [`targets::scratch_dir`].
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
#[allow(dead_code)] // each target uses one reader
mod targets;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| targets::npy(targets::scratch_dir(), "Brats18_input_1.npy", bytes));
