//! Build-time facts `protokd validate` reports (`src/audit/validate/installation.rs`): the git
//! commit the binary was built from, the rustc that compiled it, the build profile and target.
//!
//! The commit is `git rev-parse HEAD` run in the package folder, with `-dirty` appended when
//! `git status --porcelain --untracked-files=no` lists a changed tracked file; outside a git
//! checkout (a source archive, a registry build) it is `unknown (not built from a git checkout)`.
//! The script runs again when the checkout's HEAD, index or HEAD log changes (a commit, a
//! checkout, `git add`), not on every edit, so `-dirty` is as of the last of those.

use std::path::Path;
use std::process::Command;

/// `program args...` run in the package folder: its trimmed standard output when it succeeds.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = match output("git", &["rev-parse", "HEAD"]) {
        Some(hash) => {
            let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        None => "unknown (not built from a git checkout)".to_string(),
    };
    for file in ["HEAD", "index", "logs/HEAD"] {
        if let Some(path) = output("git", &["rev-parse", "--git-path", file]) {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".to_string());
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=PROTOKD_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=PROTOKD_BUILD_RUSTC={rustc_version}");
    println!("cargo:rustc-env=PROTOKD_BUILD_PROFILE={profile}");
    println!("cargo:rustc-env=PROTOKD_BUILD_TARGET={target}");
}
