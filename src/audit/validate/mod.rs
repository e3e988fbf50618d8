//! `protokd validate`: the qualification report a regulated user files. It runs, on the machine
//! it is installed on, the checks of [`CHECKS`] in four sections, and returns a [`Report`] that
//! [`render`] writes as `report.html` (one self-contained page), `report.md` and `report.json`:
//!
//! | section | checks | module |
//! |---|---|---|
//! | installation (IQ) | the build and the machine; the golden files against `golden/manifest.json` | [`installation`] |
//! | operation (OQ) | the golden suite on every engine against the spec ([`crate::audit::verify`]); the example step with 1, 2 and all threads; the recorded hashes; the PyTorch parity fixtures | [`operation`], [`parity`] |
//! | performance (PQ) | an end-to-end run on phantoms ([`crate::demo::run`]) against its record; forward and step timings per engine ([`crate::audit::bench::run`]) | [`performance`] |
//! | traceability (TM) | every requirement of `docs/requirements.md` traced to a check | [`traceability`] |
//!
//! Every check names the requirements it verifies ([`CheckKind::requirements`]); a check whose
//! work fails with an error fails with that error as its detail. The report's verdict is
//! "pass" when every check that ran passed.
//!
//! What validate reads besides the binary (the golden patches, the recorded hashes, the parity
//! fixtures, the end-to-end record, the MNI152 templates and the tests' requirement tags) lives in
//! the source tree it was built from: [`Options::tree`] (`--tree DIR`), by default that tree's
//! path as compiled in, else the current folder ([`find_tree`]).

pub mod accuracy;
pub mod installation;
pub mod operation;
pub mod parity;
pub mod performance;
pub mod render;
pub mod traceability;

use crate::engine::Compute;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A section of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Section {
    /// Installation qualification: installed as released.
    Installation,
    /// Operational qualification: operates as specified.
    Operation,
    /// Performance qualification: performs as expected on representative data.
    Performance,
    /// Every requirement traced to its checks.
    Traceability,
}

impl Section {
    /// The section's heading.
    pub fn title(self) -> &'static str {
        match self {
            Section::Installation => "Installation qualification",
            Section::Operation => "Operational qualification",
            Section::Performance => "Performance qualification",
            Section::Traceability => "Traceability",
        }
    }
}

/// One kind of check: its id, what it shows and the requirements it verifies.
#[derive(Debug)]
pub struct CheckKind {
    /// `IQ-1`, `OQ-3`, ...: the id the report and `--checks` use.
    pub id: &'static str,
    /// Its section.
    pub section: Section,
    /// What it shows, in a few words.
    pub title: &'static str,
    /// The requirement IDs (`docs/requirements.md`) it verifies.
    pub requirements: &'static [&'static str],
}

/// Every check validate can run, in the report's order.
pub const CHECKS: &[CheckKind] = &[
    CheckKind {
        id: "IQ-1",
        section: Section::Installation,
        title: "the build and the machine are recorded",
        requirements: &["R-VAL-1"],
    },
    CheckKind {
        id: "IQ-2",
        section: Section::Installation,
        title: "the golden files are those golden/manifest.json lists",
        requirements: &["R-DAT-6", "R-VAL-2"],
    },
    CheckKind {
        id: "OQ-1",
        section: Section::Operation,
        title: "the golden suite gives the spec's bits on every engine",
        requirements: &["R-NUM-1", "R-NUM-2", "R-NUM-3", "R-NUM-5", "R-CLI-7"],
    },
    CheckKind {
        id: "OQ-2",
        section: Section::Operation,
        title: "a whole ProtoKD step gives the same bits with 1, 2 and all threads",
        requirements: &["R-NUM-4"],
    },
    CheckKind {
        id: "OQ-3",
        section: Section::Operation,
        title: "the example step gives its recorded SHA-256",
        requirements: &["R-NUM-6", "R-VAL-2"],
    },
    CheckKind {
        id: "OQ-4",
        section: Section::Operation,
        title: "each golden patch gives its recorded snapshot",
        requirements: &[
            "R-NUM-6", "R-MTH-3", "R-MTH-4", "R-MTH-5", "R-MTH-6", "R-MTH-7", "R-MTH-8", "R-MTH-9",
            "R-VAL-2",
        ],
    },
    CheckKind {
        id: "OQ-5",
        section: Section::Operation,
        title: "the PyTorch parity fixtures are met within their bounds",
        requirements: &[
            "R-MTH-12", "R-MTH-3", "R-MTH-4", "R-MTH-5", "R-MTH-6", "R-MTH-7", "R-MTH-8",
            "R-MTH-9", "R-DAT-7", "R-VAL-2",
        ],
    },
    CheckKind {
        id: "OQ-6",
        section: Section::Operation,
        title: "every operation's float32 error against the float64 spec is measured on the golden patches",
        requirements: &["R-VAL-5"],
    },
    CheckKind {
        id: "PQ-1",
        section: Section::Performance,
        title: "the end-to-end run on phantoms reproduces its record",
        requirements: &[
            "R-VAL-4", "R-WFL-1", "R-WFL-2", "R-WFL-3", "R-DAT-4", "R-DAT-5", "R-MTH-1", "R-MTH-2",
            "R-MTH-10", "R-MTH-11",
        ],
    },
    CheckKind {
        id: "PQ-2",
        section: Section::Performance,
        title: "forward and step are timed on every engine",
        requirements: &["R-WFL-4"],
    },
    CheckKind {
        id: "TM-1",
        section: Section::Traceability,
        title: "every requirement is traced to a test or a check",
        requirements: &["R-VAL-3"],
    },
];

/// The check of id `id` (one of [`CHECKS`]).
pub fn check_kind(id: &str) -> Result<&'static CheckKind> {
    match CHECKS.iter().find(|k| k.id == id) {
        Some(k) => Ok(k),
        None => bail!(
            "unknown check `{id}`; the checks are {}",
            CHECKS.iter().map(|k| k.id).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One check as it ran: its kind, what it was run on, the verdict and the figures.
#[derive(Debug)]
pub struct Outcome {
    /// Which check.
    pub kind: &'static CheckKind,
    /// What it ran on (an engine, a fixture, a patch; empty when it ran once).
    pub subject: String,
    /// Passed or not.
    pub passed: bool,
    /// One line: what was found (on a failure, what differs and where).
    pub detail: String,
    /// The figures behind the verdict.
    pub figures: Value,
    /// Seconds the check took (all its subjects together).
    pub seconds: f64,
}

/// What a check's work returns: the verdict, one line of detail and the figures.
pub struct Finding {
    /// Passed or not.
    pub passed: bool,
    /// One line.
    pub detail: String,
    /// The figures.
    pub figures: Value,
}

impl Finding {
    /// A finding that passes when `passed`.
    pub fn new(passed: bool, detail: impl Into<String>, figures: Value) -> Finding {
        Finding {
            passed,
            detail: detail.into(),
            figures,
        }
    }
}

/// What validate runs on and where.
pub struct Options {
    /// The source tree the data come from ([`find_tree`]).
    pub tree: PathBuf,
    /// The engines compared with the spec and timed (the spec is always there).
    pub engines: Vec<Compute>,
    /// One line per engine left out, saying why.
    pub skipped: Vec<String>,
    /// Larger shapes and the demo's default plan (slower).
    pub full: bool,
    /// The ids of the checks to run (empty: all of them).
    pub only: Vec<String>,
    /// A folder for the end-to-end run's files (must not exist unless `force`).
    pub work: PathBuf,
    /// Replace the end-to-end run's folder.
    pub force: bool,
}

impl Options {
    /// Whether check `id` runs.
    fn runs(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == id)
    }
}

/// The report: the installation's facts, every check's outcome, and the traceability matrix.
pub struct Report {
    /// The build and the machine ([`installation::facts`]).
    pub installation: Value,
    /// Every check that ran, in [`CHECKS`] order.
    pub outcomes: Vec<Outcome>,
    /// The matrix requirement -> checks -> verdict.
    pub matrix: Vec<traceability::Row>,
    /// Where the data came from.
    pub tree: PathBuf,
    /// Seconds for the whole run.
    pub seconds: f64,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.passed)
    }
}

/// The source tree validate reads its data from: `explicit`, else the tree this binary was
/// built from, else the current folder; the first that holds `golden/manifest.json`.
pub fn find_tree(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            PathBuf::from("."),
        ],
    };
    match candidates
        .iter()
        .find(|p| p.join("golden/manifest.json").is_file())
    {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "cannot find protokd's source tree (a folder with golden/manifest.json): looked in \
             {}; pass --tree DIR",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs one check: `work` returns its findings, one per subject (`("", f)` when it runs once);
/// an error fails the check with the error's chain as its detail.
fn run_check(
    kind: &'static CheckKind,
    say: &mut dyn FnMut(&str),
    work: impl FnOnce() -> Result<Vec<(String, Finding)>>,
) -> Vec<Outcome> {
    let t0 = Instant::now();
    let found = work();
    let seconds = t0.elapsed().as_secs_f64();
    let outcomes = match found {
        Ok(list) => list
            .into_iter()
            .map(|(subject, f)| Outcome {
                kind,
                subject,
                passed: f.passed,
                detail: f.detail,
                figures: f.figures,
                seconds,
            })
            .collect(),
        Err(e) => vec![Outcome {
            kind,
            subject: String::new(),
            passed: false,
            detail: format!("{e:#}"),
            figures: json!(null),
            seconds,
        }],
    };
    for o in &outcomes {
        say(&render::line(o));
    }
    outcomes
}

/// Runs the checks `o` asks for, in [`CHECKS`] order, saying one line per outcome, and returns
/// the report (the traceability matrix covers the checks that ran).
pub fn run(o: &Options, say: &mut dyn FnMut(&str)) -> Result<Report> {
    for id in &o.only {
        check_kind(id)?;
    }
    let t0 = Instant::now();
    let installation = installation::facts(&o.engines, &o.skipped);
    let mut outcomes = Vec::new();
    for kind in CHECKS {
        if !o.runs(kind.id) {
            continue;
        }
        let tree = &o.tree;
        outcomes.extend(run_check(kind, say, || match kind.id {
            "IQ-1" => Ok(vec![(String::new(), installation::recorded(&installation))]),
            "IQ-2" => installation::golden_files(tree),
            "OQ-1" => operation::engines_match_spec(tree, &o.engines),
            "OQ-2" => operation::thread_counts(tree),
            "OQ-3" => operation::example_step(tree),
            "OQ-4" => operation::golden_snapshots(tree),
            "OQ-5" => parity::fixtures(tree),
            "OQ-6" => accuracy::golden(tree),
            "PQ-1" => performance::end_to_end(tree, &o.work, o.force),
            "PQ-2" => performance::timings(&o.engines, &o.skipped, o.full),
            "TM-1" => traceability::check(tree),
            other => bail!("check {other} has no work"),
        }));
    }
    let matrix = traceability::matrix(&outcomes, &o.tree);
    Ok(Report {
        installation,
        outcomes,
        matrix,
        tree: o.tree.clone(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}
