//! The engine switches of the command line: the engines and their spellings give the same
//! bytes, the removed switches and bad combinations are refused with the new spelling, and
//! `--engines cuda` without a driver is a clear error.

use crate::common::{protokd, s, TempDir};
use std::path::PathBuf;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/audit")
}

/// `--engine spec`, `--engine cpu`, the older `--device cpu`, `--simd portable` and the default
/// write byte-identical step files; the removed `--kernels` switch and `PROTOKD_KERNELS` are
/// clear errors that give the new spelling, and so are an unknown engine, an unknown SIMD copy
/// and `--simd` with an engine other than cpu.
#[test]
fn engine_switch_of_the_cli() {
    let dir = examples();
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, flags: &[&str], env: Option<&str>| -> std::process::Output {
        let out = tmp.path().join(name);
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_protokd"));
        c.args(["audit", "step", "--student"])
            .arg(dir.join("student.safetensors"))
            .arg("--teacher")
            .arg(dir.join("teacher.safetensors"))
            .arg("--batch")
            .arg(dir.join("batch.safetensors"))
            .arg("--out")
            .arg(&out)
            .args(flags)
            .env_remove("PROTOKD_KERNELS");
        if let Some(v) = env {
            c.env("PROTOKD_KERNELS", v);
        }
        c.output().unwrap()
    };
    let read = |name: &str| std::fs::read(tmp.path().join(name)).unwrap();
    for (name, flags) in [
        ("default.safetensors", &[][..]),
        ("spec.safetensors", &["--engine", "spec"][..]),
        ("cpu.safetensors", &["--engine", "cpu"][..]),
        ("device.safetensors", &["--device", "cpu"][..]),
        ("portable.safetensors", &["--simd", "portable"][..]),
    ] {
        let o = run(name, flags, None);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(read(name), read("default.safetensors"), "{name}");
    }
    // (flags, PROTOKD_KERNELS, exit status, words the message must hold): clap refuses an
    // unknown value with 2, protokd its own refusals with 1.
    let failures: [Refusal; 7] = [
        (
            &["--kernels", "spec"],
            None,
            1,
            &["--kernels spec was replaced by --engine", "--engine spec"],
        ),
        (
            &["--kernels"],
            None,
            1,
            &["--kernels was replaced by --engine"],
        ),
        (
            &[],
            Some("spec"),
            1,
            &[
                "PROTOKD_KERNELS (= `spec`) is no longer read",
                "--engine cpu",
            ],
        ),
        (
            &["--engine", "turbo"],
            None,
            2,
            &["turbo", "spec, cpu, cuda, emulated"],
        ),
        (
            &["--simd", "turbo"],
            None,
            1,
            &["--simd turbo: unknown SIMD copy", "portable"],
        ),
        (
            &["--engine", "spec", "--simd", "portable"],
            None,
            1,
            &["--engine cpu", "not of --engine spec"],
        ),
        (
            &["--engine", "emulated", "--simd", "portable"],
            None,
            1,
            &["not of --engine emulated"],
        ),
    ];
    for (flags, env, code, words) in failures {
        let o = run("bad.safetensors", flags, env);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{flags:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{flags:?} {env:?}: `{w}` not in {err}");
        }
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
        assert!(!tmp.path().join("bad.safetensors").exists());
    }
}

/// A refused command line: flags, `PROTOKD_KERNELS`, exit status, words of the message.
type Refusal = (
    &'static [&'static str],
    Option<&'static str>,
    i32,
    &'static [&'static str],
);

/// `protokd verify --device emulated`, the older spelling of `--engines emulated`, is still
/// read (the suite itself on the emulated device runs in `audit::verify`): here it reaches the
/// search for the golden patches, which names where it looked.
#[test]
fn verify_reads_the_older_device_spelling() {
    let dir = TempDir::new("devices-verify");
    let missing = dir.join("no-golden");
    let o = protokd(&["verify", "--device", "emulated", "--golden", s(&missing)]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("cannot find the golden patches") && e.contains("no-golden"),
        "{e}"
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
    let o = protokd(&["verify", "--engines", "cuda"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("no CUDA driver found") && e.contains("libcuda.so.1"),
        "{e}"
    );
    assert!(
        !e.contains("panicked") && !e.contains("RUST_BACKTRACE"),
        "{e}"
    );
}
