//! The four fuzz targets, each one input handed to one reader: shared by the seeded fuzzer of
//! `cargo test` (`tests/fuzz/main.rs`, stable Rust) and the libFuzzer targets of `cargo fuzz`
//! (`fuzz/fuzz_targets/`, nightly), which include this file by path. A reader must answer
//! `Ok` or `Err`; a panic or an abort is the failure both harnesses look for.

use protokd::data::npy;
use protokd::io::checkpoint;
use protokd::io::nifti::decode_image;
use protokd::modality::Modalities;
use protokd::train::config::{effective, Method};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A folder of this process for the targets that read files (created once): the libFuzzer
/// binaries write each input there.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("protokd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// The NIfTI reader on `bytes` (named `name`: a `.gz` ending says gzip was expected).
pub fn nifti(name: &str, bytes: &[u8]) {
    let _ = decode_image(bytes, Path::new(name));
}

/// The checkpoint loader on `bytes`, written to `dir/name` first (it reads files).
pub fn checkpoint(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let _ = checkpoint::load(&path);
}

/// The training-config parser (a ProtoKD T1ce student's) on `bytes`, when they are JSON.
pub fn config(name: &str, bytes: &[u8]) {
    let t1ce = Modalities::parse("t1ce").unwrap();
    if let Ok(value) = serde_json::from_slice(bytes) {
        let _ = effective(Method::Protokd, &t1ce, Some((&value, name)));
    }
}

/// The authors' `.npy` reader on `bytes`, written to `dir/name` first: the case the file names,
/// then the whole case read and checked.
pub fn npy(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    if let Ok(case) = npy::case_of_file(&path) {
        let _ = npy::load_case(&case);
    }
}
