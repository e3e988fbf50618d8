//! Rules for the files and folders a command writes: an output that exists is refused unless the
//! user passed `--force` (then it is replaced atomically, see
//! [`crate::io::tensorfile::write_atomic`]).

use anyhow::{bail, Result};
use std::path::Path;

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
