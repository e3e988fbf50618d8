//! Rules for the files and folders a command writes: an output that exists is refused unless the
//! user passed `--force` ([`check_new`]), and every file is written atomically ([`write_atomic`]:
//! a temporary file in the same folder, then a rename), so nothing the user had is half-written.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Refuses `path` when it exists and `force` is false, naming the path and `--force`.
/// `what` says what the path is for (e.g. "segmentation", "run folder").
pub fn check_new(path: &Path, what: &str, force: bool) -> Result<()> {
    if !force && path.exists() {
        bail!(
            "{what} {} already exists; pass --force to replace it",
            path.display()
        );
    }
    Ok(())
}

/// Environment variable for fault-injection tests: when set to a string that the target's file
/// name contains, [`write_atomic`] writes half of the bytes to the temporary file and then fails
/// as a full disk would, so tests can check that nothing the user had is lost.
pub const SIMULATE_WRITE_FAILURE: &str = "PROTOKD_SIMULATE_WRITE_FAILURE";

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed, then
/// renamed over `path`. Nothing is left behind on failure (see [`SIMULATE_WRITE_FAILURE`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        if let Some(pattern) = std::env::var_os(SIMULATE_WRITE_FAILURE) {
            if name.to_string_lossy().contains(&*pattern.to_string_lossy()) {
                f.write_all(&bytes[..bytes.len() / 2])?;
                bail!(
                    "cannot write {}: simulated failure after {} of {} bytes ({SIMULATE_WRITE_FAILURE})",
                    tmp.display(),
                    bytes.len() / 2,
                    bytes.len()
                );
            }
        }
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot flush {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `value` as pretty-printed JSON with a final newline, atomically ([`write_atomic`]).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_paths_are_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seg.nii.gz");
        check_new(&file, "segmentation", false).unwrap();
        std::fs::write(&file, b"x").unwrap();
        let e = check_new(&file, "segmentation", false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert!(e.to_string().contains("seg.nii.gz"), "{e}");
        check_new(&file, "segmentation", true).unwrap();
    }
}
