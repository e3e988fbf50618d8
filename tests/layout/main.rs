// Verifies (every test in this file): R-NUM-7
//! The layout of the workspace holds: no import circle between the modules of any crate
//! (protokd-reference, protokd-cpu, protokd-gpu, the protokd library and its binary), and none
//! between the stage folders of `src/` (io, data, engine, infer, eval, report, train, audit,
//! and the top-level modules), so each stage can be read knowing only the stages below it;
//! and the specification crate is plain ([`spec_is_plain`]). Checked on the source text: every
//! `crate::a::b` and `super::a` path on a code line.

mod requirements;
mod spec_is_plain;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A directed graph of module (or folder) names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// A crate's source files: (module path like `engine/net`, text).
type Files = Vec<(String, String)>;

/// One crate's source: (module path like `engine/net`, text), for every `.rs` file under
/// `root` whose module path `keep` accepts.
fn modules(root: &Path, keep: &dyn Fn(&str) -> bool) -> Files {
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
    walk(root, &mut paths);
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            let m = rel.to_string_lossy().replace('\\', "/");
            let m = m.strip_suffix("/mod").unwrap_or(&m).to_string();
            (m, std::fs::read_to_string(p).unwrap())
        })
        .filter(|(m, _)| keep(m))
        .collect()
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

/// The import graph of one crate: an edge `a -> b` when module `a` names a path into module
/// `b` (the longest prefix of the path that is a module; the crate root is left out).
fn import_graph(files: &[(String, String)], root: &str) -> Graph {
    let known: BTreeSet<&str> = files.iter().map(|(m, _)| m.as_str()).collect();
    let mut edges = Graph::new();
    for (module, text) in files {
        let parent: Vec<&str> = module.split('/').collect();
        let parent = &parent[..parent.len() - 1];
        for line in code_lines(text) {
            for (prefix, base) in [("crate::", &[][..]), ("super::", parent)] {
                for (i, _) in line.match_indices(prefix) {
                    let path = line[i + prefix.len()..]
                        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        .next()
                        .unwrap_or("")
                        .split("::")
                        .filter(|s| !s.is_empty());
                    let full: Vec<&str> = base.iter().copied().chain(path).collect();
                    let target = (1..=full.len())
                        .rev()
                        .map(|n| full[..n].join("/"))
                        .find(|m| known.contains(m.as_str()));
                    if let Some(t) = target.filter(|t| t != module && t != root) {
                        edges.entry(module.clone()).or_default().insert(t);
                    }
                }
            }
        }
    }
    edges
}

/// A circle of `graph`, as the path that closes it, if there is one (depth-first search for a
/// back edge).
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> bool {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for t in g.get(m).into_iter().flatten() {
            match state.get(t.as_str()).copied().unwrap_or(0) {
                1 => {
                    stack.push(t.clone());
                    return true;
                }
                0 if visit(t, g, state, stack) => return true,
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        false
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        let mut stack = Vec::new();
        if state.get(m.as_str()).copied().unwrap_or(0) == 0
            && visit(m, graph, &mut state, &mut stack)
        {
            return Some(stack);
        }
    }
    None
}

/// `graph` with each module replaced by its top-level folder (or top-level file module).
fn folders(graph: &Graph) -> Graph {
    let top = |m: &str| m.split('/').next().unwrap().to_string();
    let mut out = Graph::new();
    for (a, targets) in graph {
        for b in targets {
            if top(a) != top(b) {
                out.entry(top(a)).or_default().insert(top(b));
            }
        }
    }
    out
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The binary's modules (`main.rs` and `cli/`); the library is every other file of `src/`.
fn in_binary(m: &str) -> bool {
    m == "main" || m == "cli" || m.starts_with("cli/")
}

/// Every crate of the workspace: (name, root module, its files).
fn crates() -> Vec<(&'static str, &'static str, Files)> {
    let w = workspace();
    let all = |_: &str| true;
    vec![
        (
            "protokd-reference",
            "lib",
            modules(&w.join("reference/src"), &all),
        ),
        ("protokd-cpu", "lib", modules(&w.join("cpu/src"), &all)),
        ("protokd-gpu", "lib", modules(&w.join("gpu/src"), &all)),
        (
            "protokd (library)",
            "lib",
            modules(&w.join("src"), &|m| !in_binary(m)),
        ),
        (
            "protokd (binary)",
            "main",
            modules(&w.join("src"), &in_binary),
        ),
    ]
}

#[test]
fn no_import_circle_between_modules_of_any_crate() {
    for (name, root, files) in crates() {
        let graph = import_graph(&files, root);
        assert!(
            graph.values().map(BTreeSet::len).sum::<usize>() > 0 || files.len() < 3,
            "{name}: the scan found no imports at all in {} files",
            files.len()
        );
        if let Some(c) = circle(&graph) {
            panic!("{name}: import circle {}", c.join(" -> "));
        }
    }
}

#[test]
fn no_import_circle_between_the_stage_folders() {
    let (_, root, files) = crates().swap_remove(3);
    let graph = folders(&import_graph(&files, root));
    assert!(
        graph.get("infer").is_some_and(|t| t.contains("engine")),
        "the scan finds the stages' imports: {graph:?}"
    );
    if let Some(c) = circle(&graph) {
        panic!(
            "import circle between the folders of src/: {}",
            c.join(" -> ")
        );
    }
}

#[test]
fn the_scan_finds_a_circle_where_there_is_one() {
    let files = |texts: &[(&str, &str)]| -> Files {
        texts
            .iter()
            .map(|(m, t)| (m.to_string(), t.to_string()))
            .collect()
    };
    let fine = files(&[
        ("io/files", "use crate::volume::Volume;"),
        (
            "data/brats",
            "use crate::io::files::write_atomic;\nuse super::split::Split;",
        ),
        ("data/split", "// use crate::data::brats; (a comment)"),
        ("volume", ""),
    ]);
    let g = import_graph(&fine, "lib");
    assert_eq!(circle(&g), None, "{g:?}");
    assert_eq!(circle(&folders(&g)), None);
    let looped = files(&[
        (
            "io/files",
            "use crate::volume::Volume;\nfn f() { crate::data::brats::discover(); }",
        ),
        ("data/brats", "use crate::io::files::write_atomic;"),
        ("volume", ""),
    ]);
    let g = import_graph(&looped, "lib");
    let c = circle(&g).expect("io/files -> data/brats -> io/files");
    assert_eq!(c.first(), c.last(), "{c:?}");
    assert!(circle(&folders(&g)).is_some());
    let folder_only = files(&[
        ("io/files", "use crate::data::brats::X;"),
        ("io/nifti", ""),
        ("data/brats", "use crate::io::nifti::Y;"),
    ]);
    let g = import_graph(&folder_only, "lib");
    assert_eq!(circle(&g), None, "no circle between modules");
    assert!(
        circle(&folders(&g)).is_some(),
        "a circle between folders io and data"
    );
}
