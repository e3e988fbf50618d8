//! Refusals under a memory cap and a clock (issue 13, "bounded resources, decided before
//! allocating"), and the hostile NIfTI files they are tried on, made in the test (nothing big is
//! committed).
//!
//! A target includes this file next to `common` with
//! `#[path = "../common/bounded.rs"] mod bounded;`.
//!
//! [`refused_within`] runs `protokd` under `prlimit --as=`[`MEMORY_CAP`] (`/usr/bin/prlimit`,
//! util-linux): an allocation the size check should have prevented fails in the child (exit 134,
//! "memory allocation failed") instead of the check's `error:` line and exit 1. Where prlimit is
//! missing the run goes uncapped and says so on stdout. Each run must also end within
//! [`TIME_LIMIT`].
#![allow(dead_code)] // each test target uses its own subset

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Address-space cap of a bounded run: 1 GiB. protokd refusing a hostile file needs a few tens
/// of MiB (its own mappings, one thread per core); the probes would need 4 to 32 GB.
pub const MEMORY_CAP: u64 = 1 << 30;

/// Wall-clock time a refusal may take: 1 s (the bound). Measured on the 2-core build machine (release
/// build): each refusal here takes 0.01 to 0.1 s, most of it starting the process; before the
/// checks the 1 GiB bomb took 6.7 s.
pub const TIME_LIMIT: Duration = Duration::from_secs(1);

const PRLIMIT: &str = "/usr/bin/prlimit";

/// Runs `protokd args` under the memory cap and asserts a refusal: exit status 1, one
/// `error: ` line holding every word, no panic, within [`TIME_LIMIT`]. Returns the message.
pub fn refused_within(args: &[&str], words: &[&str]) -> String {
    let exe = env!("CARGO_BIN_EXE_protokd");
    let mut c = if Path::new(PRLIMIT).exists() {
        let mut c = Command::new(PRLIMIT);
        c.arg(format!("--as={MEMORY_CAP}")).arg("--").arg(exe);
        c
    } else {
        println!("{PRLIMIT} missing: run without a memory cap");
        Command::new(exe)
    };
    c.args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("PROTOKD_KERNELS");
    let start = Instant::now();
    let o = c.output().expect("cannot run protokd");
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    println!("{args:?}: {took:?}: {err}");
    assert_eq!(o.status.code(), Some(1), "protokd {args:?}: {err}");
    assert!(err.starts_with("error: "), "protokd {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "protokd {args:?}: {err}");
    assert!(!err.contains("panicked"), "protokd {args:?}: {err}");
    for w in words {
        assert!(err.contains(w), "protokd {args:?}: `{w}` not in: {err}");
    }
    assert!(took < TIME_LIMIT, "protokd {args:?} took {took:?}: {err}");
    err
}

/// The 352 bytes of a little-endian NIfTI-1 header: dims (x, y, z), `datatype` of `bitpix`
/// bits, data at offset 352, unit voxels and no sform or qform (affine `diag(1, 1, 1, 1)`).
pub fn header(xyz: [i16; 3], datatype: i16, bitpix: i16) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dim = [3, xyz[0], xyz[1], xyz[2], 1, 1, 1, 1];
    for (i, d) in dim.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for i in 0..8 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[112..116].copy_from_slice(&1f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// A uint8 header of dims (x, y, z).
pub fn u8_header(xyz: [i16; 3]) -> Vec<u8> {
    header(xyz, 2, 8)
}

/// `bytes` gzip-compressed (one member).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A valid `.nii.gz` (multi-member gzip, as `gunzip` and nibabel read) of `head` followed by
/// `mib` MiB of zeros: about 1 KiB per MiB, made without compressing the zeros more than once.
pub fn zeros_after(head: &[u8], mib: usize) -> Vec<u8> {
    let member = gzip(&vec![0u8; 1 << 20]);
    let mut out = gzip(head);
    for _ in 0..mib {
        out.extend_from_slice(&member);
    }
    out
}

/// A gzip bomb: a uint8 image of 1024^3 voxels (1 GiB decompressed, 4 GiB as f32) in about
/// 1 MB: a complete, valid file.
pub fn gzip_bomb() -> Vec<u8> {
    zeros_after(&u8_header([1024, 1024, 1024]), 1024)
}

/// An 8 MB `.nii.gz` whose float32 header claims 2000^3 voxels (32 GB of f32), followed by
/// incompressible junk.
pub fn junk_after_huge_header() -> Vec<u8> {
    let mut bytes = header([2000, 2000, 2000], 16, 32);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    bytes.extend((0..8 << 20).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    }));
    gzip(&bytes)
}

/// A small uint8 image (x, y, z) of zeros, gzip-compressed, with its header's sform rows set
/// to NaN (sform_code 1) when `nan_affine`.
pub fn small(xyz: [i16; 3], nan_affine: bool) -> Vec<u8> {
    let mut bytes = u8_header(xyz);
    if nan_affine {
        bytes[254..256].copy_from_slice(&1i16.to_le_bytes());
        for i in 0..12 {
            bytes[280 + 4 * i..284 + 4 * i].copy_from_slice(&f32::NAN.to_le_bytes());
        }
    }
    let n: usize = xyz.iter().map(|&d| d as usize).product();
    bytes.resize(352 + n, 0);
    gzip(&bytes)
}
