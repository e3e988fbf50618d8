//! The specification crate is the specification and nothing else: no SIMD intrinsics, no
//! run-time CPU detection, no atomics (process-wide switches), no module of fast kernels, no
//! dependency on the engines held to it. (Checked on the source text, so a change that brings
//! any of these back fails CI.) That no import circles between its modules is checked with
//! every crate of the workspace, by the root package's `tests/layout/main.rs`.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as (module path like `layers/conv3d`, text).
fn files() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&src(), &mut paths);
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(src()).unwrap().with_extension("");
            let mut m = rel.to_string_lossy().replace('\\', "/");
            if let Some(parent) = m.strip_suffix("/mod") {
                m = parent.to_string();
            }
            (m, std::fs::read_to_string(p).unwrap())
        })
        .collect()
}

#[test]
fn no_simd_detection_atomics_or_fast_modules() {
    let forbidden = [
        "std::arch",
        "core::arch",
        "target_feature",
        "is_x86_feature_detected",
        "is_aarch64_feature_detected",
        "Atomic",
        "asm!",
        "static mut",
    ];
    let all = files();
    assert!(all.len() > 15, "found only {} files", all.len());
    for (module, text) in &all {
        for f in forbidden {
            assert!(
                !text.contains(f),
                "reference/src/{module}.rs contains `{f}`"
            );
        }
        let leaf = module.rsplit('/').next().unwrap();
        for fast in ["fast", "simd", "kernels", "rowops"] {
            assert_ne!(leaf, fast, "reference/src has a module `{module}`");
        }
    }
}

#[test]
fn no_dependency_on_the_engines_held_to_it() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    for engine in ["protokd-cpu", "protokd-gpu", "../cpu", "../gpu"] {
        assert!(
            !manifest.contains(engine),
            "reference/Cargo.toml names {engine}"
        );
    }
    for (module, text) in files() {
        for engine in ["protokd_cpu", "protokd_gpu"] {
            let code: String = code_lines(&text).collect::<Vec<_>>().join("\n");
            assert!(
                !code.contains(engine),
                "reference/src/{module}.rs uses {engine}"
            );
        }
    }
}

/// The lines of `text` that are code: comments dropped, and the unit-test module
/// (`#[cfg(test)] mod tests`, which may use anything) cut off.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod tests"))
        .unwrap_or(lines.len());
    lines
        .into_iter()
        .take(end)
        .filter(|l| !l.trim_start().starts_with("//"))
}
