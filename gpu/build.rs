//! Compiles the CUDA C kernels (`kernels/*.cu`) with the host C++ compiler for the Emulated
//! device, and generates the kernel table (`$OUT_DIR/kernels.rs`): every kernel's name, its
//! host-compiled entry point, and the sources NVRTC compiles for the Cuda device.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("kernels");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("gpu/kernels")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();

    // Headers every kernel file is compiled after: prelude.cuh first, then the other *.cuh
    // (emu.h, the host shim, is included by the prelude on the host only).
    let mut headers: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cuh"))
        .collect();
    headers.sort_by_key(|p| (p.file_name().unwrap() != "prelude.cuh", p.clone()));

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .include(&dir)
        .opt_level(2)
        .flag("-std=c++17")
        .flag("-ffp-contract=off")
        .flag("-fno-fast-math")
        .warnings(true)
        .extra_warnings(false)
        .flag("-x")
        .flag("c++");
    for h in &headers {
        build.flag("-include").flag(h.to_str().unwrap());
        println!("cargo:rerun-if-changed={}", h.display());
    }
    for s in &sources {
        build.file(s);
        println!("cargo:rerun-if-changed={}", s.display());
    }
    build.file(dir.join("emu_runtime.cpp"));
    build.compile("protokd_gpu_emulated");

    let mut names = Vec::new();
    for s in &sources {
        let text = std::fs::read_to_string(s).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("KERNEL(") {
                let name = rest.split(')').next().unwrap().trim().to_string();
                names.push(name);
            }
        }
    }
    let mut out = String::new();
    writeln!(out, "/// Every kernel, by name.").unwrap();
    writeln!(out, "pub(crate) const KERNEL_NAMES: &[&str] = &[").unwrap();
    for n in &names {
        writeln!(out, "    {n:?},").unwrap();
    }
    writeln!(out, "];").unwrap();
    file_table(&mut out, "HEADERS", "The headers", &headers);
    file_table(&mut out, "SOURCES", "The kernel sources", &sources);
    writeln!(out, "extern \"C\" {{").unwrap();
    for n in &names {
        writeln!(out, "    fn {n}(p: crate::args::KernelArgs);").unwrap();
    }
    writeln!(out, "}}").unwrap();
    writeln!(out, "/// The host-compiled entry point of a kernel.").unwrap();
    writeln!(
        out,
        "pub(crate) fn host_entry(name: &str) -> Option<unsafe extern \"C\" fn(crate::args::KernelArgs)> {{"
    )
    .unwrap();
    writeln!(out, "    match name {{").unwrap();
    for n in &names {
        writeln!(out, "        {n:?} => Some({n}),").unwrap();
    }
    writeln!(out, "        _ => None,\n    }}\n}}").unwrap();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("kernels.rs"), out).unwrap();
}

/// Writes `pub(crate) const NAME: &[(&str, &str)]`: each file's name and its text
/// (`include_str!`), in the order NVRTC gets them.
fn file_table(out: &mut String, name: &str, what: &str, files: &[PathBuf]) {
    writeln!(
        out,
        "/// {what}, by file name, in the order NVRTC gets them."
    )
    .unwrap();
    writeln!(out, "pub(crate) const {name}: &[(&str, &str)] = &[").unwrap();
    for f in files {
        let file = f.file_name().unwrap().to_str().unwrap();
        writeln!(
            out,
            "    ({file:?}, include_str!({:?})),",
            f.display().to_string()
        )
        .unwrap();
    }
    writeln!(out, "];").unwrap();
}
