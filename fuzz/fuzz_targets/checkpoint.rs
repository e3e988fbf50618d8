//! libFuzzer target: [`targets::checkpoint`] (shared with the seeded fuzzer of `tests/fuzz`),
//! each input written to one file in a temporary folder of this process.
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
#[allow(dead_code)] // each target uses one reader
mod targets;

use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("protokd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| targets::checkpoint(dir(), "input.safetensors", bytes));
