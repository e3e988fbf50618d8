// Verifies (every test in this file): R-CLI-7
//! The engine switches of the command line: the engines and their spellings give the same
//! bytes, the removed switches and bad combinations are refused with the new spelling, and
//! `--engines cuda` without a driver is a clear error.

use crate::common::refusal::{refusal, refused};
use crate::common::{protokd_command, s, TempDir};
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/audit")
}

/// The arguments of `audit step` on the example files of `dir` into `out`, then `flags`.
fn audit_step(dir: &Path, out: &Path, flags: &[&str]) -> Vec<String> {
    let (student, teacher, batch) = (
        dir.join("student.safetensors"),
        dir.join("teacher.safetensors"),
        dir.join("batch.safetensors"),
    );
    let args = [
        "audit",
        "step",
        "--student",
        s(&student),
        "--teacher",
        s(&teacher),
    ];
    args.iter()
        .chain(&["--batch", s(&batch), "--out", s(out)])
        .chain(flags)
        .map(|a| a.to_string())
        .collect()
}

/// `--engine spec`, `--engine cpu`, the older `--device cpu`, `--simd portable` and the default
/// write byte-identical step files; the removed `--kernels` switch and `PROTOKD_KERNELS` are
/// clear errors that give the new spelling, and so are an unknown engine, an unknown SIMD copy
/// and `--simd` with an engine other than cpu.
#[test]
fn engine_switch_of_the_cli() {
    let dir = examples();
    let tmp = TempDir::new("engine-switch");
    let run = |name: &str, flags: &[&str]| {
        protokd_command()
            .args(audit_step(&dir, &tmp.join(name), flags))
            .output()
            .unwrap()
    };
    let read = |name: &str| std::fs::read(tmp.join(name)).unwrap();
    for (name, flags) in [
        ("default.safetensors", &[][..]),
        ("spec.safetensors", &["--engine", "spec"][..]),
        ("cpu.safetensors", &["--engine", "cpu"][..]),
        ("device.safetensors", &["--device", "cpu"][..]),
        ("portable.safetensors", &["--simd", "portable"][..]),
    ] {
        let o = run(name, flags);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(read(name), read("default.safetensors"), "{name}");
    }
    // Clap refuses an unknown value with status 2, protokd its own refusals with 1.
    let step = |flags: &[&str]| audit_step(&dir, &tmp.join("bad.safetensors"), flags);
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("--kernels with a value", vec![], step(&["--kernels", "spec"]), 1,
            ["--kernels spec was replaced by --engine", "--engine spec"]),
        refusal("--kernels alone", vec![], step(&["--kernels"]), 1,
            ["--kernels was replaced by --engine"]),
        refusal("PROTOKD_KERNELS set", vec![], step(&[]), 1,
            ["PROTOKD_KERNELS (= `spec`) is no longer read", "--engine cpu"])
            .env("PROTOKD_KERNELS", "spec"),
        refusal("an unknown engine", vec![], step(&["--engine", "turbo"]), 2,
            ["turbo", "spec, cpu, cuda, emulated"]),
        refusal("an unknown SIMD copy", vec![], step(&["--simd", "turbo"]), 1,
            ["--simd turbo: unknown SIMD copy", "portable"]),
        refusal("--simd with --engine spec", vec![],
            step(&["--engine", "spec", "--simd", "portable"]), 1,
            ["--engine cpu", "not of --engine spec"]),
        refusal("--simd with --engine emulated", vec![],
            step(&["--engine", "emulated", "--simd", "portable"]), 1,
            ["not of --engine emulated"]),
    ];
    refused(tmp.path(), table);
}

/// `protokd verify --device emulated`, the older spelling of `--engines emulated`, is still
/// read (the suite itself on the emulated device runs in `audit::verify`): here it reaches the
/// search for the golden patches, which names where it looked.
#[test]
fn verify_reads_the_older_device_spelling() {
    let dir = TempDir::new("devices-verify");
    let missing = dir.join("no-golden");
    refused(
        dir.path(),
        vec![refusal(
            "verify --device emulated without the golden patches",
            vec![],
            ["verify", "--device", "emulated", "--golden", s(&missing)],
            1,
            ["cannot find the golden patches", "no-golden"],
        )],
    );
}

/// `--engines cuda` where no CUDA driver can be loaded: a clear error naming what was looked
/// for, a non-zero exit, no panic, no fall-back. (Skipped where a driver is present.)
#[test]
fn cuda_without_a_driver_is_a_clear_error() {
    if protokd_gpu::cuda::driver_present() {
        eprintln!("skipped: a CUDA driver is present");
        return;
    }
    let dir = TempDir::new("cuda");
    refused(
        dir.path(),
        vec![refusal(
            "verify --engines cuda without a driver",
            vec![],
            ["verify", "--engines", "cuda"],
            1,
            ["no CUDA driver found", "libcuda.so.1"],
        )],
    );
}
