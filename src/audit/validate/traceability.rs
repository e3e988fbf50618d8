//! Traceability: the requirements of `docs/requirements.md` (compiled in: [`requirements`]), the
//! requirement tags of the tests ([`scan`]) and the checks ([`super::CHECKS`]), the rules they
//! must keep ([`problems`], TM-1 and `tests/layout/requirements.rs`) and the report's matrix
//! requirement -> checks -> verdict ([`matrix`]).
//!
//! A requirement is a table row of `docs/requirements.md` whose first cell is its id
//! (`| R-NUM-3 | text | source |`). A test is a `#[test]` function in a `.rs` file under
//! [`TEST_ROOTS`]; its tags are the comment lines `// Verifies: R-A-1, R-B-2` among the
//! attribute and comment lines right above its `#[test]` or between it and the `fn`, plus
//! every line `// Verifies (every test in this file): ...` of its file.

use super::{Outcome, CHECKS};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

/// `docs/requirements.md` as compiled into the binary.
const REQUIREMENTS: &str = include_str!("../../../docs/requirements.md");

/// The tag of one test.
pub const TEST_TAG: &str = "// Verifies:";
/// The tag that covers every test of its file.
pub const FILE_TAG: &str = "// Verifies (every test in this file):";

/// The folders (of the source tree) whose `.rs` files hold the workspace's tests.
pub const TEST_ROOTS: [&str; 8] = [
    "src",
    "tests",
    "reference/src",
    "reference/tests",
    "cpu/src",
    "cpu/tests",
    "gpu/src",
    "gpu/tests",
];

/// One requirement.
#[derive(Clone, Debug)]
pub struct Requirement {
    /// `R-NUM-3`.
    pub id: String,
    /// What it requires.
    pub text: String,
}

/// The requirements, in the page's order.
pub fn requirements() -> Vec<Requirement> {
    REQUIREMENTS
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() > 3 && cells[1].starts_with("R-")).then(|| Requirement {
                id: cells[1].to_string(),
                text: cells[2].to_string(),
            })
        })
        .collect()
}

/// One test and the requirements it names.
#[derive(Clone, Debug)]
pub struct Test {
    /// Its file, relative to the tree.
    pub file: String,
    /// Its function name.
    pub name: String,
    /// The line of its `#[test]` (from 1).
    pub line: usize,
    /// The requirement IDs its tags name (empty: untagged).
    pub ids: Vec<String>,
}

/// The IDs of a tag line after `prefix`.
fn ids_of(line: &str, prefix: &str) -> Vec<String> {
    line.trim()
        .strip_prefix(prefix)
        .map(|rest| {
            rest.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a line belongs to the attributes and comments around a test's `#[test]`.
fn is_preamble(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("#[") || t.starts_with("//") || t.is_empty()
}

/// The tests of one file's text (see the module docs for the tag rules).
pub fn tests_of(file: &str, text: &str) -> Vec<Test> {
    let lines: Vec<&str> = text.lines().collect();
    let whole: Vec<String> = lines.iter().flat_map(|l| ids_of(l, FILE_TAG)).collect();
    let mut tests = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() != "#[test]" {
            continue;
        }
        let mut ids = whole.clone();
        let above = lines[..i].iter().rev().take_while(|l| {
            let t = l.trim();
            t.starts_with("#[") || t.starts_with("//")
        });
        ids.extend(above.flat_map(|l| ids_of(l, TEST_TAG)));
        let below = lines[i + 1..].iter().take_while(|l| is_preamble(l));
        ids.extend(below.flat_map(|l| ids_of(l, TEST_TAG)));
        let name = lines[i + 1..]
            .iter()
            .find_map(|l| l.split_once("fn ").map(|(_, r)| r))
            .map(|r| r.split(['(', '<']).next().unwrap_or(r).trim().to_string())
            .unwrap_or_default();
        tests.push(Test {
            file: file.to_string(),
            name,
            line: i + 1,
            ids,
        });
    }
    tests
}

/// Every test under the [`TEST_ROOTS`] of `tree`, by file path order.
pub fn scan(tree: &Path) -> Result<Vec<Test>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for e in entries {
            let p = e?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for root in TEST_ROOTS {
        let dir = tree.join(root);
        if dir.is_dir() {
            walk(&dir, &mut files)?;
        }
    }
    files.sort();
    let mut tests = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let rel = f
            .strip_prefix(tree)
            .unwrap_or(&f)
            .to_string_lossy()
            .replace('\\', "/");
        tests.extend(tests_of(&rel, &text));
    }
    Ok(tests)
}

/// What breaks the traceability rules: a requirement no test and no check names, a tag or a
/// check naming an unknown requirement, a test without a tag. One line each.
pub fn problems(reqs: &[Requirement], tests: &[Test]) -> Vec<String> {
    let known: BTreeSet<&str> = reqs.iter().map(|r| r.id.as_str()).collect();
    let mut named: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for t in tests {
        if t.ids.is_empty() {
            out.push(format!(
                "{}:{}: test {} has no `{TEST_TAG}` tag",
                t.file, t.line, t.name
            ));
        }
        for id in &t.ids {
            if known.contains(id.as_str()) {
                named.insert(id);
            } else {
                out.push(format!(
                    "{}:{}: test {} names {id}, which docs/requirements.md does not list",
                    t.file, t.line, t.name
                ));
            }
        }
    }
    for k in CHECKS {
        for id in k.requirements {
            if known.contains(id) {
                named.insert(id);
            } else {
                out.push(format!(
                    "check {} names {id}, which docs/requirements.md does not list",
                    k.id
                ));
            }
        }
    }
    for r in reqs {
        if !named.contains(r.id.as_str()) {
            out.push(format!("{} has no test and no validate check", r.id));
        }
    }
    out
}

/// TM-1: [`problems`] of the compiled-in requirements and the tests of `tree`.
pub fn check(tree: &Path) -> Result<Vec<(String, super::Finding)>> {
    let reqs = requirements();
    let tests = scan(tree)?;
    let p = problems(&reqs, &tests);
    let detail = if p.is_empty() {
        format!(
            "{} requirements, each traced; {} tests, each tagged; {} checks",
            reqs.len(),
            tests.len(),
            CHECKS.len()
        )
    } else {
        p.join("; ")
    };
    Ok(vec![(
        String::new(),
        super::Finding::new(
            p.is_empty(),
            detail,
            json!({"requirements": reqs.len(), "tests": tests.len(), "problems": p}),
        ),
    )])
}

/// One row of the matrix.
#[derive(Clone, Debug)]
pub struct Row {
    /// The requirement.
    pub requirement: Requirement,
    /// The outcomes of the checks that verify it, as `(check id and subject, passed)`.
    pub checks: Vec<(String, bool)>,
    /// The tests that verify it (`file::name`).
    pub tests: Vec<String>,
    /// `pass` (every check that ran passed), `FAIL` (one failed), or `tests` (no check ran;
    /// verified by the test suite, which validate does not run).
    pub verdict: &'static str,
}

/// The matrix of every requirement: the outcomes naming it and the tests of `tree` naming it
/// (none when the tree's tests cannot be read).
pub fn matrix(outcomes: &[Outcome], tree: &Path) -> Vec<Row> {
    let tests = scan(tree).unwrap_or_default();
    requirements()
        .into_iter()
        .map(|r| {
            let checks: Vec<(String, bool)> = outcomes
                .iter()
                .filter(|o| o.kind.requirements.contains(&r.id.as_str()))
                .map(|o| (super::render::name(o), o.passed))
                .collect();
            let tests: Vec<String> = tests
                .iter()
                .filter(|t| t.ids.contains(&r.id))
                .map(|t| format!("{}::{}", t.file, t.name))
                .collect();
            let verdict = if checks.iter().any(|c| !c.1) {
                "FAIL"
            } else if checks.is_empty() {
                "tests"
            } else {
                "pass"
            };
            Row {
                requirement: r,
                checks,
                tests,
                verdict,
            }
        })
        .collect()
}
