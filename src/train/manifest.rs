//! `protokd-files.json`: the files a run wrote in its folder, so that `train --force` removes
//! those and nothing else.
//!
//! A run adds a file's name to the manifest ([`RunDir::claim`]) before it first writes the file
//! (so a crash between the two leaves a listed name without a file, never a file of the run's
//! that is not listed). The manifest names files relative to the run folder, only from
//! [`RUN_FILES`] and the split lists; a manifest naming anything else is refused, so an edited
//! manifest cannot make `--force` remove another file.

use super::run::{self, RunDir};
use crate::data::split;
use crate::io::files::write_json;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The manifest's file name in the run folder.
pub(crate) const MANIFEST: &str = "protokd-files.json";

/// File names a run may write into its folder; with the split lists ([`split::SPLIT_FILES`] in
/// `split/`) they are everything protokd writes there.
pub(crate) const RUN_FILES: [&str; 8] = [
    MANIFEST,
    run::CONFIG,
    run::METRICS,
    run::CURVES,
    "last.safetensors",
    "last.optim.safetensors",
    "best.safetensors",
    "best.optim.safetensors",
];

/// What the manifest holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// The files the run wrote, relative to the run folder, in the order first written.
    files: Vec<String>,
}

/// The names, relative to the run folder, of every file a run may write: [`RUN_FILES`] and
/// `split/<list>`.
pub(crate) fn run_file_names() -> Vec<String> {
    RUN_FILES
        .iter()
        .map(|n| n.to_string())
        .chain(split::SPLIT_FILES.iter().map(|n| format!("split/{n}")))
        .collect()
}

/// The files the manifest of the run folder `out` lists (none when it has no manifest).
/// Refuses a manifest that is not JSON of its form or that lists a name outside
/// [`run_file_names`].
pub(crate) fn listed(out: &Path) -> Result<Vec<String>> {
    let path = out.join(MANIFEST);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a protokd run manifest", path.display()))?;
    let known = run_file_names();
    if let Some(bad) = manifest.files.iter().find(|f| !known.contains(f)) {
        bail!(
            "{}: lists `{bad}`, which is not a file a run writes (those are {})",
            path.display(),
            known.join(", ")
        );
    }
    Ok(manifest.files)
}

impl RunDir {
    /// Adds `names` (relative to the run folder, each one of [`run_file_names`]) to the
    /// manifest, rewriting it atomically when one is new; called before those files are first
    /// written.
    pub(crate) fn claim(&self, names: &[&str]) -> Result<()> {
        let mut files = listed(&self.path)?;
        let before = files.len();
        for name in names {
            debug_assert!(run_file_names().iter().any(|n| n == name), "{name}");
            if !files.iter().any(|f| f == name) {
                files.push(name.to_string());
            }
        }
        if files.len() == before && self.path.join(MANIFEST).exists() {
            return Ok(());
        }
        if !files.iter().any(|f| f == MANIFEST) {
            files.insert(0, MANIFEST.to_string());
        }
        write_json(&self.path.join(MANIFEST), &Manifest { files })
    }
}

/// Before a `--force`d fresh start in `out`: refuses, removing nothing, when a file with a run
/// file's name is there but not listed in the manifest (the user's, or a run's from a protokd
/// without manifests); else removes the listed files and the manifest. Nothing else is
/// touched, no folder removed.
pub(crate) fn remove_run_files(out: &Path) -> Result<()> {
    let files = listed(out)?;
    for name in run_file_names() {
        let path = out.join(&name);
        if path.symlink_metadata().is_ok() && !files.contains(&name) {
            bail!(
                "{}: not written by a protokd run here ({} does not list it), and --force \
                 replaces only such files; move it away or choose another --out",
                path.display(),
                out.join(MANIFEST).display()
            );
        }
    }
    for name in files
        .iter()
        .filter(|n| *n != MANIFEST)
        .chain([&MANIFEST.to_string()])
    {
        let path = out.join(name);
        if path.is_file() {
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
}
