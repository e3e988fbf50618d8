//! Installation qualification: what is installed and on what ([`facts`]), and the golden files
//! against `golden/manifest.json` ([`golden_files`]).
//!
//! The build facts are compiled in by `build.rs` (commit, rustc, profile, target); the
//! binary's SHA-256 is that of the running executable (`std::env::current_exe`); the CPU model
//! is `/proc/cpuinfo`'s `model name` (Linux; "unknown" elsewhere); the SIMD copies are those
//! protokd-cpu can run here and the one it chose ([`protokd_cpu::Isa`]); the GPU is the CUDA
//! device's own description (model, compute capability, driver, CUDA and NVRTC versions as
//! protokd-gpu reports them), or why there is none.

use super::Finding;
use crate::engine::Compute;
use crate::io::hash::{sha256_file, sha256_hex};
use anyhow::{Context, Result};
use protokd_cpu::{Cpu, Isa};
use serde_json::{json, Value};
use std::path::Path;

/// The running binary's path and SHA-256, or why they cannot be read.
fn binary() -> Value {
    let found = std::env::current_exe()
        .context("cannot find the running binary")
        .and_then(|p| {
            let hash = sha256_file(&p).with_context(|| format!("cannot read {}", p.display()))?;
            Ok((p, hash))
        });
    match found {
        Ok((path, hash)) => json!({"path": path.display().to_string(), "sha256": hash}),
        Err(e) => json!({"error": format!("{e:#}")}),
    }
}

/// The CPU model from `/proc/cpuinfo`, or `unknown`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The operating system: `/etc/os-release`'s `PRETTY_NAME` where there is one, with the kernel
/// family and architecture Rust was built for.
fn os() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
    let family = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    match pretty {
        Some(p) => format!("{p} ({family})"),
        None => family,
    }
}

/// Everything the installation section records: the build, the binary, the machine, the
/// engines compared (`engines`) and those left out (`skipped`, with why).
pub fn facts(engines: &[Compute], skipped: &[String]) -> Value {
    let gpu: Vec<String> = engines
        .iter()
        .filter(|e| e.kind() == "cuda")
        .map(|e| e.describe())
        .collect();
    let no_gpu: Vec<&String> = skipped.iter().filter(|s| s.starts_with("cuda")).collect();
    json!({
        "protokd_version": env!("CARGO_PKG_VERSION"),
        "commit": env!("PROTOKD_BUILD_COMMIT"),
        "build_profile": env!("PROTOKD_BUILD_PROFILE"),
        "build_target": env!("PROTOKD_BUILD_TARGET"),
        "rustc": env!("PROTOKD_BUILD_RUSTC"),
        "binary": binary(),
        "os": os(),
        "cpu_model": cpu_model(),
        "cores": std::thread::available_parallelism().map_or(1, |c| c.get()),
        "threads": rayon::current_num_threads(),
        "simd_available": Isa::usable().iter().map(|i| i.name()).collect::<Vec<_>>(),
        "simd_chosen": Cpu::new().isa().name(),
        "gpu": if gpu.is_empty() {
            json!(format!("no GPU ({})", no_gpu.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")))
        } else {
            json!(gpu)
        },
        "engines": engines.iter().map(|e| json!({"engine": e.kind(), "description": e.describe()})).collect::<Vec<_>>(),
        "engines_skipped": skipped,
    })
}

/// IQ-1: the facts are all there (the binary could be hashed and the commit is known).
pub fn recorded(facts: &Value) -> Finding {
    let hashed = facts["binary"]["sha256"].is_string();
    let detail = format!(
        "protokd {} ({}), {} build for {}, {}; binary sha256 {}",
        facts["protokd_version"].as_str().unwrap_or("?"),
        facts["commit"].as_str().unwrap_or("?"),
        facts["build_profile"].as_str().unwrap_or("?"),
        facts["build_target"].as_str().unwrap_or("?"),
        facts["rustc"].as_str().unwrap_or("?"),
        facts["binary"]["sha256"]
            .as_str()
            .or(facts["binary"]["error"].as_str())
            .unwrap_or("?"),
    );
    Finding::new(hashed, detail, facts.clone())
}

/// IQ-2: every file `golden/manifest.json` lists has its SHA-256; names each file that does not
/// (or cannot be read).
pub fn golden_files(tree: &Path) -> Result<Vec<(String, Finding)>> {
    let golden = tree.join("golden");
    let manifest_path = golden.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", manifest_path.display()))?;
    let patches = manifest["patches"]
        .as_array()
        .with_context(|| format!("{}: no `patches` list", manifest_path.display()))?;
    let mut files = Vec::new();
    let mut wrong = Vec::new();
    for p in patches {
        let name = p["name"].as_str().unwrap_or_default();
        let hashes = p["sha256"].as_object().with_context(|| {
            format!("{}: patch `{name}` has no sha256", manifest_path.display())
        })?;
        for (file, want) in hashes {
            let path = golden.join(name).join(file);
            let got = std::fs::read(&path).map(|b| sha256_hex(&b));
            let rel = format!("golden/{name}/{file}");
            match got {
                Ok(h) if Some(h.as_str()) == want.as_str() => {}
                Ok(h) => wrong.push(format!("{rel} has SHA-256 {h}, the manifest says {want}")),
                Err(e) => wrong.push(format!("{rel} cannot be read ({e})")),
            }
            files.push(json!({"file": rel, "sha256": want}));
        }
    }
    let detail = if wrong.is_empty() {
        format!("{} files as golden/manifest.json lists them", files.len())
    } else {
        wrong.join("; ")
    };
    Ok(vec![(
        String::new(),
        Finding::new(
            wrong.is_empty(),
            detail,
            json!({"manifest_sha256": sha256_hex(text.as_bytes()), "files": files, "wrong": wrong}),
        ),
    )])
}
