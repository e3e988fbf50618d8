//! Generates what the Rust host code and the CUDA C kernels share, from one source each, and
//! compiles the kernels with the host C++ compiler for the Emulated device.
//!
//! | generated | from |
//! |---|---|
//! | `$OUT_DIR/pk_shared.cuh`: the `PK_*` constants | the Rust constants themselves (`protokd_reference::reduce::{LANES, BLOCK}`, `layers::batchnorm3d::{BN_EPS, BN_MOMENTUM, BN_KEEP}`, `losses::{DICE_SMOOTH, PROTO_EPS, COS_EPS}`, `std::f32::consts`), read here as a build dependency; `f32` values as exact hex floats |
//! | `pk_shared.cuh`: the argument structs `pk_<name>_args`, their enums and sub-structs, with `static_assert`s of every size and offset | `kernels/args.def` |
//! | `$OUT_DIR/args.rs` (`protokd_gpu::args`): the same structs in Rust (`<Name>Args`), with `const` asserts of the same sizes and offsets | `kernels/args.def` |
//! | `$OUT_DIR/kernels.rs` (`protokd_gpu::kernels`): `enum Kernel`, one typed handle per kernel (`TypedKernel<its args struct>`), the tables of template instances, the sources NVRTC compiles, the host-compiled entry points | the `KERNEL(name, family)` lines of `kernels/*.cu` |
//!
//! `pk_shared.cuh` is compiled first, before `prelude.cuh`, by both compilers: the host C++
//! compiler here (`-include`) and NVRTC (first in `kernels::HEADERS`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dir = manifest.join("kernels");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", dir.display());
    let listed = |ext: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("gpu/kernels")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        v.sort();
        v
    };
    let sources = listed("cu");
    // Headers every kernel file is compiled after: the generated pk_shared.cuh, prelude.cuh,
    // then the other *.cuh (emu.h, the host shim, is included by the prelude on the host only).
    let mut headers = listed("cuh");
    headers.sort_by_key(|p| (p.file_name().unwrap() != "prelude.cuh", p.clone()));
    let shared = out_dir.join("pk_shared.cuh");
    headers.insert(0, shared.clone());

    let defs = parse_defs(&std::fs::read_to_string(dir.join("args.def")).expect("args.def"));
    let kernels = scan_kernels(&sources, &defs);

    let mut cuh = String::new();
    write_constants(&mut cuh);
    write_c_defs(&mut cuh, &defs);
    std::fs::write(&shared, cuh).unwrap();
    std::fs::write(out_dir.join("args.rs"), rust_defs(&defs)).unwrap();
    std::fs::write(
        out_dir.join("kernels.rs"),
        kernel_table(&kernels, &headers, &sources),
    )
    .unwrap();

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
    }
    for s in &sources {
        build.file(s);
    }
    build.file(dir.join("emu_runtime.cpp"));
    build.compile("protokd_gpu_emulated");
}

// ---------------------------------------------------------------------------------------------
// Constants

/// A constant shared by the host and the kernels.
enum Value {
    Int(usize),
    F32(f32),
}

/// The constants of `pk_shared.cuh`: C name, value, where it comes from, and the name of a Rust
/// constant to generate for the host where the value is defined here (not in Rust code).
fn constants() -> Vec<(&'static str, Value, &'static str, Option<&'static str>)> {
    use protokd_reference::layers::batchnorm3d::{BN_EPS, BN_KEEP, BN_MOMENTUM};
    use protokd_reference::losses::{COS_EPS, DICE_SMOOTH, PROTO_EPS};
    use protokd_reference::reduce::{BLOCK, LANES};
    use std::f32::consts::{LN_2, LOG2_E, SQRT_2};
    use Value::{Int, F32};
    vec![
        (
            "PK_LANES",
            Int(LANES),
            "protokd_reference::reduce::LANES",
            None,
        ),
        (
            "PK_BLOCK",
            Int(BLOCK),
            "protokd_reference::reduce::BLOCK",
            None,
        ),
        (
            "PK_BN_EPS",
            F32(BN_EPS),
            "protokd_reference::layers::batchnorm3d::BN_EPS",
            None,
        ),
        (
            "PK_BN_MOMENTUM",
            F32(BN_MOMENTUM),
            "protokd_reference::layers::batchnorm3d::BN_MOMENTUM",
            None,
        ),
        (
            "PK_BN_KEEP",
            F32(BN_KEEP),
            "protokd_reference::layers::batchnorm3d::BN_KEEP",
            None,
        ),
        (
            "PK_DICE_SMOOTH",
            F32(DICE_SMOOTH),
            "protokd_reference::losses::DICE_SMOOTH",
            None,
        ),
        (
            "PK_PROTO_EPS",
            F32(PROTO_EPS),
            "protokd_reference::losses::PROTO_EPS",
            None,
        ),
        (
            "PK_COS_EPS",
            F32(COS_EPS),
            "protokd_reference::losses::COS_EPS",
            None,
        ),
        (
            "PK_LOG2E",
            F32(LOG2_E),
            "std::f32::consts::LOG2_E (reference mathfn::LOG2E)",
            None,
        ),
        (
            "PK_LN2_HI",
            F32(LN_2),
            "std::f32::consts::LN_2 (reference mathfn::LN2_HI)",
            None,
        ),
        (
            "PK_SQRT_2",
            F32(SQRT_2),
            "std::f32::consts::SQRT_2 (reference mathfn::ln)",
            None,
        ),
        (
            "PK_LABEL_VALUES",
            Int(1 << u8::BITS),
            "the values a u8 label can take (gpu/build.rs)",
            Some("LABEL_VALUES"),
        ),
    ]
}

/// `x` as an exact C hex-float literal (`0x1.4f8b58p-17f`); checked by converting it back.
fn hex_f32(x: f32) -> String {
    assert!(x.is_normal(), "shared constant {x} is not a normal f32");
    let bits = x.to_bits();
    let negative = bits >> 31 == 1;
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    let mant = (bits & 0x7f_ffff) << 1;
    let back = (1.0 + mant as f64 / (1u64 << 24) as f64) * 2f64.powi(exp);
    assert_eq!(if negative { -back } else { back }, x as f64);
    format!("{}0x1.{mant:06x}p{exp:+}f", if negative { "-" } else { "" })
}

fn write_constants(out: &mut String) {
    out.push_str(
        "// GENERATED by gpu/build.rs: do not edit. What the CUDA C kernels share with the Rust\n\
         // code: constants read from the Rust constants themselves, and the kernels' argument\n\
         // structs from gpu/kernels/args.def (the host's copies: protokd_gpu::args).\n\n",
    );
    for (name, value, from, _) in constants() {
        match value {
            Value::Int(v) => writeln!(out, "// {from}\n#define {name} {v}").unwrap(),
            Value::F32(v) => writeln!(
                out,
                "// {from} = {v:?} (bits 0x{:08x})\n#define {name} {}",
                v.to_bits(),
                hex_f32(v)
            )
            .unwrap(),
        }
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------
// args.def

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Args,
    Struct,
    Enum,
}

enum Ty {
    I64,
    F32,
    Ptr { mutable: bool, elem: String },
    Array(Box<Ty>, usize),
    Named(String),
}

struct Field {
    name: String,
    ty: Option<Ty>,
    doc: String,
}

struct Def {
    kind: Kind,
    name: String,
    doc: String,
    fields: Vec<Field>,
}

/// Splits `code # doc`.
fn split_doc(line: &str) -> (&str, String) {
    match line.split_once('#') {
        Some((code, doc)) => (code, doc.trim().to_string()),
        None => (line, String::new()),
    }
}

fn parse_ty(s: &str) -> Ty {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (elem, n) = rest
            .strip_suffix(']')
            .and_then(|r| r.rsplit_once(';'))
            .unwrap_or_else(|| panic!("args.def: bad array type {s}"));
        return Ty::Array(Box::new(parse_ty(elem)), n.trim().parse().unwrap());
    }
    for (prefix, mutable) in [("*const ", false), ("*mut ", true)] {
        if let Some(elem) = s.strip_prefix(prefix) {
            assert!(
                c_elem(elem.trim()).is_some(),
                "args.def: no pointer to {elem}"
            );
            return Ty::Ptr {
                mutable,
                elem: elem.trim().to_string(),
            };
        }
    }
    match s {
        "i64" => Ty::I64,
        "f32" => Ty::F32,
        _ => Ty::Named(s.to_string()),
    }
}

fn parse_defs(text: &str) -> Vec<Def> {
    let mut defs: Vec<Def> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (code, doc) = split_doc(line);
        if code.trim().is_empty() {
            continue;
        }
        if !code.starts_with(char::is_whitespace) {
            let (kind, name) = code.trim().split_once(' ').unwrap_or_else(|| {
                panic!(
                    "args.def:{}: expected `args NAME`, `struct NAME` or `enum NAME`",
                    i + 1
                )
            });
            let kind = match kind {
                "args" => Kind::Args,
                "struct" => Kind::Struct,
                "enum" => Kind::Enum,
                _ => panic!("args.def:{}: unknown entry {kind}", i + 1),
            };
            defs.push(Def {
                kind,
                name: name.trim().to_string(),
                doc,
                fields: Vec::new(),
            });
            continue;
        }
        let def = defs
            .last_mut()
            .unwrap_or_else(|| panic!("args.def:{}: a field outside an entry", i + 1));
        let field = if def.kind == Kind::Enum {
            Field {
                name: code.trim().to_string(),
                ty: None,
                doc,
            }
        } else {
            let (name, ty) = code
                .split_once(':')
                .unwrap_or_else(|| panic!("args.def:{}: expected `field: type`", i + 1));
            Field {
                name: name.trim().to_string(),
                ty: Some(parse_ty(ty)),
                doc,
            }
        };
        def.fields.push(field);
    }
    defs
}

/// The C element type of a pointer field.
fn c_elem(elem: &str) -> Option<&'static str> {
    Some(match elem {
        "f32" => "float",
        "u8" => "unsigned char",
        "u32" => "unsigned int",
        "i32" => "int",
        _ => return None,
    })
}

fn find<'a>(defs: &'a [Def], name: &str) -> &'a Def {
    defs.iter()
        .find(|d| d.name == name && d.kind != Kind::Args)
        .unwrap_or_else(|| panic!("args.def: unknown type {name}"))
}

/// Size and alignment of a type, by the C rules (which `#[repr(C)]` follows); 64-bit pointers.
fn layout(ty: &Ty, defs: &[Def]) -> (usize, usize) {
    match ty {
        Ty::I64 | Ty::Ptr { .. } => (8, 8),
        Ty::F32 => (4, 4),
        Ty::Array(t, n) => {
            let (s, a) = layout(t, defs);
            (s * n, a)
        }
        Ty::Named(n) => {
            let d = find(defs, n);
            match d.kind {
                Kind::Enum => (8, 8),
                _ => {
                    let (size, align, _) = struct_layout(d, defs);
                    (size, align)
                }
            }
        }
    }
}

/// Size, alignment and field offsets of a struct.
fn struct_layout(def: &Def, defs: &[Def]) -> (usize, usize, Vec<usize>) {
    let (mut at, mut align, mut offsets) = (0usize, 1, Vec::new());
    for f in &def.fields {
        let (s, a) = layout(f.ty.as_ref().unwrap(), defs);
        at = at.next_multiple_of(a);
        offsets.push(at);
        at += s;
        align = align.max(a);
    }
    (at.next_multiple_of(align), align, offsets)
}

fn c_name(def: &Def) -> String {
    match def.kind {
        Kind::Args => format!("pk_{}_args", def.name),
        _ => def.name.clone(),
    }
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn rust_name(def: &Def) -> String {
    match def.kind {
        Kind::Args => camel(&def.name) + "Args",
        _ => camel(&def.name),
    }
}

/// `long long name[3]`, `const float *name`, ...
fn c_decl(ty: &Ty, name: &str, defs: &[Def]) -> String {
    match ty {
        Ty::I64 => format!("long long {name}"),
        Ty::F32 => format!("float {name}"),
        Ty::Ptr { mutable, elem } => format!(
            "{}{} *{name}",
            if *mutable { "" } else { "const " },
            c_elem(elem).unwrap()
        ),
        Ty::Array(t, n) => c_decl(t, &format!("{name}[{n}]"), defs),
        Ty::Named(n) => format!("{} {name}", c_name(find(defs, n))),
    }
}

fn rust_ty(ty: &Ty, defs: &[Def]) -> String {
    match ty {
        Ty::I64 => "i64".into(),
        Ty::F32 => "f32".into(),
        Ty::Ptr { elem, .. } => format!("DevPtr<{elem}>"),
        Ty::Array(t, n) => format!("[{}; {n}]", rust_ty(t, defs)),
        Ty::Named(n) => rust_name(find(defs, n)),
    }
}

fn write_c_defs(out: &mut String, defs: &[Def]) {
    for def in defs {
        let name = c_name(def);
        if !def.doc.is_empty() {
            writeln!(out, "// {}", def.doc).unwrap();
        }
        if def.kind == Kind::Enum {
            writeln!(out, "enum {name} : long long {{").unwrap();
            for (i, v) in def.fields.iter().enumerate() {
                let doc = if v.doc.is_empty() {
                    String::new()
                } else {
                    format!(" // {}", v.doc)
                };
                let constant = format!("{}_{}", def.name, v.name).to_uppercase();
                writeln!(out, "    {constant} = {i},{doc}").unwrap();
            }
            writeln!(
                out,
                "}};\nstatic_assert(sizeof({name}) == 8, \"{name}\");\n"
            )
            .unwrap();
            continue;
        }
        writeln!(out, "struct {name} {{").unwrap();
        for f in &def.fields {
            let doc = if f.doc.is_empty() {
                String::new()
            } else {
                format!(" // {}", f.doc)
            };
            let decl = c_decl(f.ty.as_ref().unwrap(), &f.name, defs);
            writeln!(out, "    {decl};{doc}").unwrap();
        }
        writeln!(out, "}};").unwrap();
        let (size, _, offsets) = struct_layout(def, defs);
        writeln!(
            out,
            "static_assert(sizeof({name}) == {size}, \"{name}: size (gpu/kernels/args.def)\");"
        )
        .unwrap();
        for (f, off) in def.fields.iter().zip(offsets) {
            writeln!(
                out,
                "static_assert(__builtin_offsetof({name}, {}) == {off}, \"{name}.{}: offset\");",
                f.name, f.name
            )
            .unwrap();
        }
        out.push('\n');
    }
}

fn rust_doc(out: &mut String, indent: &str, doc: &str, fallback: &str) {
    let doc = if doc.is_empty() { fallback } else { doc };
    // Brackets in args.def comments are shapes (`[C]`), not rustdoc links.
    let doc = doc.replace('[', "\\[").replace(']', "\\]");
    writeln!(out, "{indent}/// {doc}").unwrap();
}

fn rust_defs(defs: &[Def]) -> String {
    let mut out =
        String::from("// GENERATED by gpu/build.rs from gpu/kernels/args.def: do not edit.\n\n");
    for def in defs {
        let name = rust_name(def);
        let c = c_name(def);
        rust_doc(
            &mut out,
            "",
            &def.doc,
            &format!("Arguments of kernel `{}`.", def.name),
        );
        writeln!(
            out,
            "///\n/// C mirror: `{c}` (`pk_shared.cuh`, from `gpu/kernels/args.def`)."
        )
        .unwrap();
        if def.kind == Kind::Enum {
            writeln!(
                out,
                "#[repr(i64)]\n#[derive(Clone, Copy, Debug, PartialEq, Eq)]"
            )
            .unwrap();
            writeln!(out, "pub enum {name} {{").unwrap();
            for (i, v) in def.fields.iter().enumerate() {
                let constant = format!("{}_{}", def.name, v.name).to_uppercase();
                rust_doc(&mut out, "    ", &v.doc, &format!("`{constant}`."));
                writeln!(out, "    {} = {i},", camel(&v.name)).unwrap();
            }
            writeln!(out, "}}").unwrap();
            writeln!(
                out,
                "// SAFETY: a 64-bit integer, the layout of C's `enum {c} : long long`."
            )
            .unwrap();
            writeln!(
                out,
                "unsafe impl cudarc::driver::DeviceRepr for {name} {{}}\n"
            )
            .unwrap();
            continue;
        }
        writeln!(
            out,
            "#[repr(C)]\n#[derive(Clone, Copy, Debug)]\npub struct {name} {{"
        )
        .unwrap();
        for f in &def.fields {
            rust_doc(&mut out, "    ", &f.doc, &format!("`{}`.", f.name));
            writeln!(
                out,
                "    pub {}: {},",
                f.name,
                rust_ty(f.ty.as_ref().unwrap(), defs)
            )
            .unwrap();
        }
        writeln!(out, "}}").unwrap();
        let (size, _, offsets) = struct_layout(def, defs);
        writeln!(out, "const _: () = {{").unwrap();
        writeln!(out, "    assert!(std::mem::size_of::<{name}>() == {size});").unwrap();
        for (f, off) in def.fields.iter().zip(offsets) {
            writeln!(
                out,
                "    assert!(std::mem::offset_of!({name}, {}) == {off});",
                f.name
            )
            .unwrap();
        }
        writeln!(out, "}};").unwrap();
        writeln!(
            out,
            "// SAFETY: `#[repr(C)]` with the layout of `{c}` (asserted here and in C)."
        )
        .unwrap();
        writeln!(
            out,
            "unsafe impl cudarc::driver::DeviceRepr for {name} {{}}"
        )
        .unwrap();
        if def.kind == Kind::Args {
            writeln!(
                out,
                "// SAFETY: as above; the kernels that take it are declared `KERNEL(name, {})`.",
                def.name
            )
            .unwrap();
            writeln!(out, "unsafe impl KernelArgs for {name} {{}}").unwrap();
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// One `KERNEL(name, family)` line of a `.cu` file.
struct KernelDecl {
    name: String,
    family: String,
    /// `(template, arguments)` where the body is one template instance, `{ tmpl<4, 1>(p); }`.
    instance: Option<(String, Vec<usize>)>,
}

fn scan_kernels(sources: &[PathBuf], defs: &[Def]) -> Vec<KernelDecl> {
    let mut kernels = Vec::new();
    for s in sources {
        let text = std::fs::read_to_string(s).unwrap();
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("KERNEL(") else {
                continue;
            };
            let (head, body) = rest.split_once(')').unwrap();
            let (name, family) = head.split_once(',').unwrap_or_else(|| {
                panic!(
                    "{}: `KERNEL({head})` names no argument struct: KERNEL(name, family)",
                    s.display()
                )
            });
            let (name, family) = (name.trim().to_string(), family.trim().to_string());
            assert!(
                defs.iter().any(|d| d.kind == Kind::Args && d.name == family),
                "{}: kernel {name} takes `args {family}`, which gpu/kernels/args.def does not declare",
                s.display()
            );
            let instance = body
                .trim()
                .strip_prefix("{ ")
                .and_then(|b| b.strip_suffix(">(p); }"))
                .and_then(|b| b.split_once('<'))
                .map(|(t, a)| {
                    let args = a.split(',').map(|x| x.trim().parse().unwrap()).collect();
                    (t.trim().to_string(), args)
                });
            kernels.push(KernelDecl {
                name,
                family,
                instance,
            });
        }
    }
    kernels
}

fn file_table(out: &mut String, name: &str, what: &str, files: &[PathBuf]) {
    writeln!(
        out,
        "/// {what}, by file name, in the order NVRTC gets them."
    )
    .unwrap();
    writeln!(out, "pub(crate) const {name}: &[(&str, &str)] = &[").unwrap();
    for f in files {
        let file = f.file_name().unwrap().to_str().unwrap();
        writeln!(out, "    ({file:?}, include_str!({:?})),", path_str(f)).unwrap();
    }
    writeln!(out, "];").unwrap();
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn kernel_table(kernels: &[KernelDecl], headers: &[PathBuf], sources: &[PathBuf]) -> String {
    let mut out = String::from(
        "// GENERATED by gpu/build.rs from the KERNEL(name, family) lines of gpu/kernels/*.cu.\n\n",
    );
    let n = kernels.len();
    writeln!(
        out,
        "/// Every kernel of `gpu/kernels/*.cu`, in file and line order."
    )
    .unwrap();
    writeln!(
        out,
        "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum Kernel {{"
    )
    .unwrap();
    for k in kernels {
        writeln!(
            out,
            "    /// `{}` (arguments `pk_{}_args`).",
            k.name, k.family
        )
        .unwrap();
        writeln!(out, "    {},", camel(&k.name)).unwrap();
    }
    writeln!(out, "}}\n").unwrap();
    writeln!(out, "/// The kernels' names, in [`Kernel`] order.").unwrap();
    writeln!(out, "pub(crate) const NAMES: [&str; {n}] = [").unwrap();
    for k in kernels {
        writeln!(out, "    {:?},", k.name).unwrap();
    }
    writeln!(out, "];\n").unwrap();
    writeln!(out, "impl Kernel {{").unwrap();
    writeln!(
        out,
        "    /// Every kernel.\n    pub const ALL: [Kernel; {n}] = ["
    )
    .unwrap();
    for k in kernels {
        writeln!(out, "        Kernel::{},", camel(&k.name)).unwrap();
    }
    writeln!(out, "    ];\n}}\n").unwrap();
    for k in kernels {
        writeln!(
            out,
            "/// Kernel `{}`, launched with [`{}`].\npub const {}: TypedKernel<{}> = TypedKernel::new(Kernel::{});",
            k.name,
            camel(&k.family) + "Args",
            k.name.to_uppercase(),
            camel(&k.family) + "Args",
            camel(&k.name)
        )
        .unwrap();
    }
    out.push('\n');
    let mut templates: BTreeMap<&str, Vec<&KernelDecl>> = BTreeMap::new();
    for k in kernels {
        if let Some((t, _)) = &k.instance {
            templates.entry(t).or_default().push(k);
        }
    }
    for (t, ks) in templates {
        let family = &ks[0].family;
        assert!(
            ks.iter().all(|k| &k.family == family),
            "template {t}: families differ"
        );
        let arity = ks[0].instance.as_ref().unwrap().1.len();
        writeln!(
            out,
            "/// The kernels that are one instance of the template `{t}<..>`, with its arguments.\npub const {}_INSTANCES: [([usize; {arity}], TypedKernel<{}>); {}] = [",
            t.to_uppercase(),
            camel(family) + "Args",
            ks.len()
        )
        .unwrap();
        for k in ks {
            let args = &k.instance.as_ref().unwrap().1;
            writeln!(out, "    ({args:?}, {}),", k.name.to_uppercase()).unwrap();
        }
        writeln!(out, "];\n").unwrap();
    }
    for (name, value, from, rust) in constants() {
        if let (Some(rust), Value::Int(v)) = (rust, value) {
            writeln!(
                out,
                "/// {from}; `{name}` in the kernels.\npub const {rust}: usize = {v};\n"
            )
            .unwrap();
        }
    }
    file_table(&mut out, "HEADERS", "The headers", headers);
    file_table(&mut out, "SOURCES", "The kernel sources", sources);
    writeln!(out, "extern \"C\" {{").unwrap();
    for k in kernels {
        writeln!(
            out,
            "    fn pk_emu_{}(args: *const std::ffi::c_void);",
            k.name
        )
        .unwrap();
    }
    writeln!(out, "}}\n").unwrap();
    writeln!(
        out,
        "/// The host-compiled entry point of a kernel (prelude.cuh's `pk_emu_<name>`: reads the\n/// kernel's argument struct at `args`).\npub(crate) fn host_entry(kernel: Kernel) -> unsafe extern \"C\" fn(*const std::ffi::c_void) {{\n    match kernel {{"
    )
    .unwrap();
    for k in kernels {
        writeln!(
            out,
            "        Kernel::{} => pk_emu_{},",
            camel(&k.name),
            k.name
        )
        .unwrap();
    }
    writeln!(out, "    }}\n}}").unwrap();
    out
}
