//! Helpers shared by the integration tests that run the `protokd` binary or need scratch
//! folders.
#![allow(dead_code)] // each test file uses its own subset

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

/// Runs the `protokd` binary with `args` (without `RUST_BACKTRACE`, as a user runs it).
pub fn protokd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_protokd"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("cannot run the protokd binary")
}
