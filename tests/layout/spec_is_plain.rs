// Verifies (every test in this file): R-NUM-7
//! The specification crate is the specification and nothing else: no SIMD intrinsics, no
//! run-time CPU detection, no atomics (process-wide switches), no module of fast kernels, no
//! dependency on the engines held to it. (Checked on the source text, so a change that brings
//! any of these back fails CI.) That no import circle joins its modules is checked with every
//! crate of the workspace, in `main.rs`.

use super::{code_lines, modules, workspace, Files};

/// Every `.rs` file under `reference/src/`.
fn files() -> Files {
    modules(&workspace().join("reference/src"), &|_| true)
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
    let manifest = std::fs::read_to_string(workspace().join("reference/Cargo.toml")).unwrap();
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
