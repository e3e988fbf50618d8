// Verifies (every test in this file): R-CLI-5
//! Fuzzing the readers of files a user hands protokd: the NIfTI reader, the checkpoint loader
//! (safetensors and `.pth`), the training-config parser and the authors' `.npy` reader. A
//! seeded mutation fuzzer over the committed corpus in `tests/fuzz/corpus/<target>/`: each
//! iteration takes a corpus file, applies one to four mutations (bit flips, overwritten bytes, boundary integers written over 2, 4 or 8 bytes,
//! a cut, an inserted run, a copied block; for gzip seeds the mutations are made on the
//! decompressed bytes and the result compressed again, so the header is reached) and hands
//! the result to the reader. The reader must answer `Ok` or a clear `Err`: a panic fails the
//! test, naming the target, the iteration and the seed, and the input is kept in
//! `target/fuzz-failures/` to replay. (An allocation failure aborts the process, which fails
//! the test too.)
//!
//! The same targets ([`targets`]) are libFuzzer targets for `cargo fuzz` (nightly), in `fuzz/`,
//! seeded by the same corpus (see `docs/reliability.md` for the command).
//!
//! The runs are reproducible: the generator is ChaCha8 seeded by `PROTOKD_FUZZ_SEED` (default
//! 1), and `PROTOKD_FUZZ_ITERATIONS` sets the iterations per target (default 400, a few
//! seconds in all); CI runs the default.

#[allow(dead_code)] // `scratch_dir` is the libFuzzer binaries'
mod targets;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use protokd::io::checkpoint;
use protokd::modality::Modalities;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The corpus of `target`: (file name, bytes), in name order.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .collect()
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A value in `0 .. n` (`n >= 1`).
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Integers at the edges of the types a header stores (written little- or big-endian).
const BOUNDARIES: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// One mutation of `data` in place.
fn mutate_once(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        data.push(rng.next_u32() as u8);
        return;
    }
    let at = below(rng, data.len());
    match below(rng, 6) {
        0 => data[at] ^= 1 << below(rng, 8),
        1 => data[at] = rng.next_u32() as u8,
        2 => {
            let width = [2, 4, 8][below(rng, 3)];
            let v = BOUNDARIES[below(rng, BOUNDARIES.len())];
            let bytes = match rng.next_u32() % 2 {
                0 => v.to_le_bytes(),
                _ => v.to_be_bytes(),
            };
            for (i, b) in bytes.iter().take(width).enumerate() {
                if let Some(d) = data.get_mut(at + i) {
                    *d = *b;
                }
            }
        }
        3 => data.truncate(at),
        4 => {
            let run = vec![rng.next_u32() as u8; 1 + below(rng, 64)];
            data.splice(at..at, run);
        }
        _ => {
            let from = below(rng, data.len());
            let len = (1 + below(rng, 32)).min(data.len() - from);
            let block = data[from..from + len].to_vec();
            data.splice(at..at, block);
        }
    }
}

/// `seed` mutated one to four times; gzip seeds are mutated decompressed and compressed again.
fn mutate(rng: &mut ChaCha8Rng, seed: &[u8], gz: bool) -> Vec<u8> {
    let mut data = seed.to_vec();
    if gz {
        data.clear();
        GzDecoder::new(seed).read_to_end(&mut data).unwrap();
    }
    for _ in 0..1 + below(rng, 4) {
        mutate_once(rng, &mut data);
    }
    if !gz {
        return data;
    }
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&data).unwrap();
    enc.finish().unwrap()
}

/// Runs `read` on mutations of every corpus file of `target`, round robin; fails naming every
/// input that panicked (kept under `target/fuzz-failures/<target>/`).
fn fuzz(target: &str, read: &dyn Fn(&str, &[u8])) {
    let seed = env_u64("PROTOKD_FUZZ_SEED", 1);
    let iterations = env_u64("PROTOKD_FUZZ_ITERATIONS", 400);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ target.len() as u64);
    let corpus = corpus(target);
    let mut failures = Vec::new();
    for i in 0..iterations {
        let (name, bytes) = &corpus[i as usize % corpus.len()];
        let input = mutate(&mut rng, bytes, name.ends_with(".gz"));
        if catch_unwind(AssertUnwindSafe(|| read(name, &input))).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/fuzz-failures")
                .join(target);
            std::fs::create_dir_all(&dir).unwrap();
            let kept = dir.join(format!("seed{seed}-iteration{i}-{name}"));
            std::fs::write(&kept, &input).unwrap();
            failures.push(format!(
                "iteration {i} (from {name}): kept in {}",
                kept.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {iterations} inputs panicked (PROTOKD_FUZZ_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_nifti_reader_never_panics() {
    fuzz("nifti", &targets::nifti);
}

#[test]
fn the_checkpoint_loader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    fuzz("checkpoint", &|name, bytes| {
        targets::checkpoint(dir.path(), name, bytes)
    });
}

#[test]
fn the_npy_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    fuzz("npy", &|name, bytes| targets::npy(dir.path(), name, bytes));
}

#[test]
fn the_config_parser_never_panics() {
    fuzz("config", &targets::config);
}

#[test]
fn a_panicking_reader_is_caught_and_named() {
    let result = catch_unwind(|| {
        fuzz("config", &|_, bytes| {
            assert!(bytes.len() > usize::MAX / 2, "planted")
        });
    });
    let message = result.expect_err("the planted panic must fail the fuzz run");
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        text.contains("config:") && text.contains("iteration 0"),
        "{text}"
    );
}

/// Writes the checkpoint seed of the corpus: a T1ce student of width 1 (small, so an iteration
/// is cheap), saved as `protokd train` saves one. Run after a change of the checkpoint format:
/// `cargo test --release --test fuzz -- --ignored regenerate_checkpoint_seed`.
#[test]
#[ignore]
fn regenerate_checkpoint_seed() {
    use protokd_reference::state::{VNetConfig, VNetState};
    let cfg = VNetConfig {
        in_channels: 1,
        n_classes: 4,
        n_filters: 1,
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus/checkpoint/student_f1.safetensors");
    let _ = std::fs::remove_file(&path);
    checkpoint::save(
        &path,
        &VNetState::init(cfg, 7),
        &Modalities::parse("t1ce").unwrap(),
    )
    .unwrap();
}
