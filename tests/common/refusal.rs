//! Refused command lines as rows of a table, and the one loop that runs a table.
//!
//! A row says what the case is, the input files it prepares, the arguments of `protokd`, the
//! exit status it must end with and the words its message must hold. [`refused`] runs every
//! row, checks each against the contract below, and then fails once, naming every row that broke
//! it (it does not stop at the first). Run with `--nocapture` to see every message.
//!
//! The contract of a refusal:
//! * the exit status is the row's (1 for protokd's own refusals, 2 for clap's);
//! * nothing on stdout; stderr starts with `error: ` and, for status 1, is that one line
//!   (unless the row allows [`Refusal::several_lines`]);
//! * no panic (`panicked`, `RUST_BACKTRACE`, `internal error`);
//! * every word of the row is in the message;
//! * the watched folder is as the row found it (after writing the row's files): no file created
//!   (no output, no temporary file), none removed, none changed.

use super::protokd_command;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One refused command line.
pub struct Refusal {
    /// What the case is (named when the row fails).
    pub case: String,
    /// Files written before the run: path and bytes.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// The arguments of `protokd`.
    pub args: Vec<String>,
    /// Environment variables of this run only (set on the child process, never on the tests').
    pub env: Vec<(String, String)>,
    /// The exit status.
    pub code: i32,
    /// Whether a message of status 1 may take more than one line.
    pub several_lines: bool,
    /// Words the message must hold.
    pub words: Vec<String>,
}

/// A row: (what the case is, files prepared, arguments, exit status, words of the message).
pub fn refusal<A: AsRef<str>, W: AsRef<str>>(
    case: &str,
    files: Vec<(PathBuf, Vec<u8>)>,
    args: impl IntoIterator<Item = A>,
    code: i32,
    words: impl IntoIterator<Item = W>,
) -> Refusal {
    Refusal {
        case: case.to_string(),
        files,
        args: args.into_iter().map(|a| a.as_ref().to_string()).collect(),
        env: Vec::new(),
        code,
        several_lines: false,
        words: words.into_iter().map(|w| w.as_ref().to_string()).collect(),
    }
}

impl Refusal {
    /// The same row run with the environment variable `key` set to `value`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The same row with a message of several lines allowed (a list after the `error: ` line).
    pub fn several_lines(mut self) -> Self {
        self.several_lines = true;
        self
    }
}

/// A prepared input file: `path` with `bytes`.
pub fn file(path: &Path, bytes: impl Into<Vec<u8>>) -> (PathBuf, Vec<u8>) {
    (path.to_path_buf(), bytes.into())
}

/// Every file and folder under `dir` by relative path: the bytes of a file, `None` for a folder.
type Tree = BTreeMap<PathBuf, Option<Vec<u8>>>;

fn tree(dir: &Path) -> Tree {
    fn walk(root: &Path, d: &Path, out: &mut Tree) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Tree::new();
    walk(dir, dir, &mut out);
    out
}

/// What changed between two trees, in words (empty if nothing).
fn changes(before: &Tree, after: &Tree) -> Vec<String> {
    let mut v = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => v.push(format!("{} removed", p.display())),
            Some(a) if a != b => v.push(format!("{} changed", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        v.push(format!("{} created", p.display()));
    }
    v
}

/// Runs one row; returns what broke the contract (empty if nothing).
fn run(watched: &Path, row: &Refusal) -> Vec<String> {
    for (path, bytes) in &row.files {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let before = tree(watched);
    let mut command = protokd_command();
    command.args(&row.args);
    for (k, v) in &row.env {
        command.env(k, v);
    }
    let o = command.output().expect("cannot run the protokd binary");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    println!("{}: {stderr}", row.case);
    let mut broken = Vec::new();
    if o.status.code() != Some(row.code) {
        broken.push(format!(
            "exit status {:?}, expected {}",
            o.status.code(),
            row.code
        ));
    }
    if !o.stdout.is_empty() {
        broken.push(format!("stdout: {}", String::from_utf8_lossy(&o.stdout)));
    }
    if !stderr.starts_with("error: ") {
        broken.push("stderr does not start with `error: `".into());
    }
    if row.code == 1 && !row.several_lines && stderr.trim_end_matches('\n').contains('\n') {
        broken.push("more than one line on stderr".into());
    }
    for bad in ["panicked", "RUST_BACKTRACE", "internal error"] {
        if stderr.contains(bad) {
            broken.push(format!("`{bad}` in the message"));
        }
    }
    for w in &row.words {
        if !stderr.contains(w.as_str()) {
            broken.push(format!("`{w}` not in the message"));
        }
    }
    broken.extend(changes(&before, &tree(watched)));
    if !broken.is_empty() {
        broken.push(format!("protokd {:?}", row.args));
        broken.push(format!("stderr: {stderr}"));
    }
    broken
}

/// Runs every row of `table` in order (a row's files stay for the rows after it) and fails
/// once, naming each row that broke the contract and how.
pub fn refused(watched: &Path, table: Vec<Refusal>) {
    let rows = table.len();
    let failed: Vec<String> = table
        .iter()
        .filter_map(|row| {
            let broken = run(watched, row);
            (!broken.is_empty()).then(|| format!("row `{}`:\n  {}", row.case, broken.join("\n  ")))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {rows} refusals broke the contract:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
