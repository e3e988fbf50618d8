//! Helpers shared by the integration tests that run the `protokd` binary or need scratch
//! folders. Each test target (`tests/<stage>/main.rs`) includes this folder with
//! `#[path = "../common/mod.rs"] mod common;`.
//!
//! The tests of one target run as threads of one process, so none changes process-wide state:
//! an environment variable a run needs is set on its child process (`Command::env`, as
//! [`fails_midway`] and `refusal::Refusal::env` do), thread counts come from local rayon pools
//! (`ThreadPoolBuilder::build`, never `build_global`) or the binary's `--threads`, and the
//! current directory is only ever set on a child (`Command::current_dir`).
#![allow(dead_code)] // each test target uses its own subset

pub mod refusal;
pub mod workflow;

use protokd::io::files::SIMULATE_WRITE_FAILURE;
use protokd_reference::Tensor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh folder for one test (under the system's temporary folder), removed when dropped.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new empty folder whose name starts with `protokd-<name>-`.
    pub fn new(name: &str) -> Self {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("protokd-{name}-"))
                .tempdir()
                .expect("cannot create a temporary folder"),
        )
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// A path inside the folder.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.path().join(p)
    }
}

/// A path as `&str` (temporary paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// The `protokd` binary as a user runs it: without `RUST_BACKTRACE`, and without
/// `PROTOKD_KERNELS` (which earlier versions read and this one refuses).
pub fn protokd_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_protokd"));
    c.env_remove("RUST_BACKTRACE").env_remove("PROTOKD_KERNELS");
    c
}

/// Runs the `protokd` binary with `args` (see [`protokd_command`]).
pub fn protokd(args: &[&str]) -> Output {
    protokd_command()
        .args(args)
        .output()
        .expect("cannot run the protokd binary")
}

/// The names of the temporary files (names holding `.tmp`) in `dir`.
pub fn temporary_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

/// Runs `command` with a write failure simulated on the files whose name holds `pattern`: it
/// must fail with a message naming the simulated failure, without a panic, and leave no
/// temporary file in `dir`.
pub fn fails_midway(mut command: Command, pattern: &str, dir: &Path) {
    let o = command
        .env(SIMULATE_WRITE_FAILURE, pattern)
        .output()
        .expect("cannot run the protokd binary");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a failure writing {pattern} went unnoticed"
    );
    assert!(e.contains("simulated failure"), "{e}");
    assert!(
        !e.contains("panicked") && !e.contains("RUST_BACKTRACE"),
        "{e}"
    );
    assert_eq!(temporary_files(dir), Vec::<String>::new());
}

/// `|a - b| / |b|` in f64, the norm-wise relative error of `a` against `b` (absolute when `b` is
/// all zero).
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape, b.shape, "shapes differ");
    protokd::audit::validate::parity::rel_err(a, b)
}

/// Asserts that `message` holds every one of `words`.
pub fn assert_holds(message: &str, words: &[&str]) {
    for w in words {
        assert!(message.contains(w), "`{w}` not in: {message}");
    }
}
