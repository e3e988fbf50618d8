//! Rules for the files and folders a command writes, one helper per rule:
//!
//! * an output that exists is refused unless the user passed `--force` ([`check_new`]);
//! * an output that is one of the command's inputs (the same path, or the same file through a
//!   hard or symbolic link) is refused even with `--force` ([`check_not_input`]);
//! * every file is written atomically ([`write_atomic`]: a temporary file `.NAME.tmpPID` in the
//!   same folder, then published under its name), so nothing the user had is half-written; an
//!   output claimed as new by [`check_new`] is published without replacing anything, so a file
//!   that appeared meanwhile (another protokd writing the same path) is refused, not replaced;
//! * the temporary files of a killed save are removed by [`remove_stale_temps`]: those of an
//!   output before that output is written again, and all of a run folder's on start or
//!   resume.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The outputs of this process claimed as new by [`check_new`] and not yet written:
/// [`write_atomic`] publishes these without replacing a file that appeared after the check (a
/// claim is used up by that write, and dropped by a later `check_new` with `force`).
static CLAIMED_NEW: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Refuses `path` when it exists and `force` is false, naming the path and `--force`.
/// `what` says what the path is for (e.g. "segmentation", "run folder"). Without `force` the
/// path is claimed as new: the next [`write_atomic`] to it refuses to replace a file that
/// another process wrote there in the meantime.
pub fn check_new(path: &Path, what: &str, force: bool) -> Result<()> {
    if !force && path.exists() {
        bail!(
            "{what} {} already exists; pass --force to replace it",
            path.display()
        );
    }
    let mut claimed = CLAIMED_NEW.lock().unwrap_or_else(|e| e.into_inner());
    if force {
        claimed.remove(path);
    } else {
        claimed.insert(path.to_path_buf());
    }
    Ok(())
}

/// Refuses the output `output` (`what` says what it is for) when it is one of `inputs`
/// (`(flag, path)` pairs, e.g. `("--input", x)`): the same file, whether reached by the same
/// path, another spelling of it, or a hard or symbolic link ([`same_file`]). `--force` does not
/// lift this: a command never overwrites what it reads. The message names both paths.
pub fn check_not_input(output: &Path, what: &str, inputs: &[(&str, &Path)]) -> Result<()> {
    for (flag, input) in inputs {
        if same_file(output, input) {
            bail!(
                "{what} {} is one of the inputs ({flag} {}, the same file); it would be \
                 overwritten, so it is refused even with --force",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Whether `a` and `b` both exist and are the same file or folder: the same device and inode
/// on Unix (so a hard link or a symbolic link counts), the same canonical path elsewhere.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// Environment variable for fault-injection tests: when set to a string that the target's file
/// name contains, [`write_atomic`] writes half of the bytes to the temporary file and then fails
/// as a full disk would, so tests can check that nothing the user had is lost.
pub const SIMULATE_WRITE_FAILURE: &str = "PROTOKD_SIMULATE_WRITE_FAILURE";

/// Writes `bytes` to `path` atomically: a temporary file `.NAME.tmpPID` in the same folder,
/// flushed, then published under `path` ([`publish`]). Nothing is left behind on failure (see
/// [`SIMULATE_WRITE_FAILURE`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    remove_stale_temps(&dir, Some(&name.to_string_lossy()))?;
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
        publish(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Gives the finished temporary file `tmp` the name `path`. An output claimed as new by
/// [`check_new`] is published without replacing anything: a hard link `path` -> `tmp` (which
/// the file system refuses, atomically, when `path` exists), then `tmp` is removed; of two
/// processes writing the same new path, one succeeds and the other is refused. (On a file
/// system without hard links, an existence check then a rename.) Any other output (`--force`,
/// or a file the command owns, such as a run folder's checkpoints) is replaced atomically by a
/// rename.
fn publish(tmp: &Path, path: &Path) -> Result<()> {
    let claimed = CLAIMED_NEW
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(path);
    let rename = || {
        std::fs::rename(tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    };
    if !claimed {
        return rename();
    }
    let appeared = || {
        anyhow::anyhow!(
            "{} already exists (it appeared while protokd was writing it); pass --force to \
             replace it",
            path.display()
        )
    };
    match std::fs::hard_link(tmp, path) {
        Ok(()) => {
            std::fs::remove_file(tmp)
                .with_context(|| format!("cannot remove {}", tmp.display()))?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(appeared()),
        Err(_) if path.symlink_metadata().is_ok() => Err(appeared()),
        Err(_) => rename(),
    }
}

/// Writes `value` as pretty-printed JSON with a final newline, atomically ([`write_atomic`]).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The output name and the process id in the name of a temporary file of [`write_atomic`]
/// (`.NAME.tmpPID`).
fn temp_owner(file_name: &str) -> Option<(&str, u32)> {
    let rest = file_name.strip_prefix('.')?;
    let (stem, pid) = rest.rsplit_once(".tmp")?;
    if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem, pid.parse().ok()?))
}

/// Whether process `pid` is running: `/proc/PID` exists on Linux. Elsewhere no process is
/// taken as running but this one.
fn process_running(pid: u32) -> bool {
    pid == std::process::id()
        || (cfg!(target_os = "linux") && Path::new("/proc").join(pid.to_string()).exists())
}

/// Removes from `dir` (not below it) the temporary files `.NAME.tmpPID` of [`write_atomic`]
/// whose process is no longer running: what a save killed mid-way (kill -9, power loss) left.
/// With `of`, only those of the output named `of` (what [`write_atomic`] does before each
/// write, so a folder that is not protokd's loses no file of another program's). Returns the
/// files removed. A missing folder has none.
pub fn remove_stale_temps(dir: &Path, of: Option<&str>) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read the folder {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some((stem, pid)) = temp_owner(&name) else {
            continue;
        };
        if of.is_some_and(|of| of != stem)
            || process_running(pid)
            || !entry.file_type().is_ok_and(|t| t.is_file())
        {
            continue;
        }
        let path = entry.path();
        std::fs::remove_file(&path).with_context(|| {
            format!("cannot remove the stale temporary file {}", path.display())
        })?;
        removed.push(path);
    }
    Ok(removed)
}

// Verifies (every test in this file): R-CLI-2, R-CLI-3
#[cfg(test)]
mod tests {
    use super::*;

    /// A new scratch folder and the path `name` in it, checked as a new output (claimed).
    fn claimed(name: &str, what: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        check_new(&file, what, false).unwrap();
        (dir, file)
    }

    #[test]
    fn existing_paths_are_refused_without_force() {
        let (_dir, file) = claimed("seg.nii.gz", "segmentation");
        std::fs::write(&file, b"x").unwrap();
        let e = check_new(&file, "segmentation", false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert!(e.to_string().contains("seg.nii.gz"), "{e}");
        check_new(&file, "segmentation", true).unwrap();
    }

    #[test]
    fn a_claimed_output_that_appears_meanwhile_is_not_replaced() {
        let (dir, file) = claimed("claimed.json", "JSON output");
        std::fs::write(&file, b"theirs").unwrap();
        let e = write_atomic(&file, b"mine").unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"theirs");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        let other = dir.path().join("unclaimed.json");
        std::fs::write(&other, b"old").unwrap();
        write_atomic(&other, b"new").unwrap();
        assert_eq!(std::fs::read(&other).unwrap(), b"new");
    }

    #[test]
    fn inputs_are_recognised_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("x.safetensors");
        std::fs::write(&input, b"x").unwrap();
        let hard = dir.path().join("hard");
        std::fs::hard_link(&input, &hard).unwrap();
        let spelled = dir.path().join(".").join("x.safetensors");
        for out in [&input, &hard, &spelled] {
            let e = check_not_input(out, "output", &[("--input", &input)]).unwrap_err();
            assert!(e.to_string().contains("x.safetensors"), "{e}");
        }
        check_not_input(&dir.path().join("y"), "output", &[("--input", &input)]).unwrap();
    }

    #[test]
    fn temporary_names_give_their_output_and_process() {
        assert_eq!(
            temp_owner(".last.safetensors.tmp123"),
            Some(("last.safetensors", 123))
        );
        assert_eq!(temp_owner(".last.safetensors.tmp"), None);
        assert_eq!(temp_owner("last.safetensors.tmp12"), None);
        assert_eq!(temp_owner(".x.tmp12a"), None);
    }

    #[test]
    fn a_write_removes_the_stale_temporaries_of_its_own_output_only() {
        let (dir, file) = claimed("seg.nii.gz", "segmentation");
        // No process has pid u32::MAX - 1 (Linux pids are at most 2^22).
        let dead = u32::MAX - 1;
        let ours = dir.path().join(format!(".seg.nii.gz.tmp{dead}"));
        let other = dir.path().join(format!(".other.nii.gz.tmp{dead}"));
        let live = dir
            .path()
            .join(format!(".seg.nii.gz.tmp{}", std::process::id()));
        for p in [&ours, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        write_atomic(&file, b"whole").unwrap();
        assert!(
            !ours.exists(),
            "the stale temporary of seg.nii.gz is removed"
        );
        assert!(other.exists(), "another output's temporary is left alone");
        assert!(!live.exists(), "this process's own temporary was published");
        assert_eq!(std::fs::read(&file).unwrap(), b"whole");
    }
}
