//! The report's three files: `report.json` ([`json()`]: every check, figure and verdict),
//! `report.md` ([`markdown`]) and `report.html` ([`html`]: one self-contained page, inline CSS
//! and SVG, readable offline and printable), written by [`write()`].

mod chart;
mod html;
mod markdown;

use super::{Outcome, Report, Section, CHECKS};
use crate::io::files::{write_atomic, write_json};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;

/// The report's sections in order, each with the outcomes of its checks (sections where no
/// check ran left out).
pub fn sections(r: &Report) -> Vec<(Section, Vec<&Outcome>)> {
    [
        Section::Installation,
        Section::Operation,
        Section::Performance,
        Section::Traceability,
    ]
    .into_iter()
    .map(|section| {
        let mine = r
            .outcomes
            .iter()
            .filter(|o| o.kind.section == section)
            .collect::<Vec<_>>();
        (section, mine)
    })
    .filter(|(_, mine)| !mine.is_empty())
    .collect()
}

/// `OQ-1 cpu`: the check's id and its subject.
pub fn name(o: &Outcome) -> String {
    if o.subject.is_empty() {
        o.kind.id.to_string()
    } else {
        format!("{} {}", o.kind.id, o.subject)
    }
}

/// `pass`/`FAIL`.
fn verdict(passed: bool) -> &'static str {
    if passed {
        "pass"
    } else {
        "FAIL"
    }
}

/// One progress line: `pass  OQ-1 cpu  detail`.
pub fn line(o: &Outcome) -> String {
    format!("{:<5} {:<12} {}", verdict(o.passed), name(o), o.detail)
}

/// `report.json`.
pub fn json(r: &Report) -> Value {
    json!({
        "tool": format!("protokd {} validate", env!("CARGO_PKG_VERSION")),
        "verdict": verdict(r.passed()),
        "passed": r.passed(),
        "seconds": r.seconds,
        "tree": r.tree.display().to_string(),
        "installation": r.installation,
        "checks_available": CHECKS.iter().map(|k| json!({
            "id": k.id, "section": k.section, "title": k.title, "requirements": k.requirements,
        })).collect::<Vec<_>>(),
        "checks": r.outcomes.iter().map(|o| json!({
            "id": o.kind.id,
            "section": o.kind.section,
            "title": o.kind.title,
            "subject": o.subject,
            "requirements": o.kind.requirements,
            "passed": o.passed,
            "detail": o.detail,
            "figures": o.figures,
            "seconds": o.seconds,
        })).collect::<Vec<_>>(),
        "matrix": r.matrix.iter().map(|m| json!({
            "requirement": m.requirement.id,
            "text": m.requirement.text,
            "checks": m.checks.iter().map(|(c, p)| json!({"check": c, "passed": p})).collect::<Vec<_>>(),
            "tests": m.tests,
            "verdict": m.verdict,
        })).collect::<Vec<_>>(),
    })
}

/// The installation facts as `(label, value)` rows, in the report's order.
fn installation_rows(i: &Value) -> Vec<(&'static str, String)> {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join("; "),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    vec![
        ("protokd version", s(&i["protokd_version"])),
        ("commit", s(&i["commit"])),
        ("binary", s(&i["binary"]["path"])),
        ("binary SHA-256", s(&i["binary"]["sha256"])),
        ("build profile", s(&i["build_profile"])),
        ("build target", s(&i["build_target"])),
        ("rustc", s(&i["rustc"])),
        ("operating system", s(&i["os"])),
        ("CPU", s(&i["cpu_model"])),
        (
            "cores / threads",
            format!("{} / {}", s(&i["cores"]), s(&i["threads"])),
        ),
        ("SIMD copies available", s(&i["simd_available"])),
        ("SIMD copy chosen", s(&i["simd_chosen"])),
        ("GPU", s(&i["gpu"])),
        ("engines compared with the spec", {
            let e: Vec<String> = i["engines"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| s(&e["description"]))
                .collect();
            e.join("; ")
        }),
        ("engines not available", s(&i["engines_skipped"])),
    ]
}

/// The timing rows of the PQ-2 outcome, if it ran: `(engine, forward s, step s)`, `None` times
/// for an absent engine.
fn timing_rows(r: &Report) -> Vec<(String, Option<(f64, f64)>)> {
    r.outcomes
        .iter()
        .filter(|o| o.kind.id == "PQ-2")
        .flat_map(|o| o.figures["engines"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let times = e["forward_s"].as_f64().zip(e["step_s"].as_f64());
            (e["engine"].as_str().unwrap_or("?").to_string(), times)
        })
        .collect()
}

/// Writes `report.json`, `report.md` and `report.html` into `dir` (atomically; the caller has
/// checked that they may be written).
pub fn write(r: &Report, dir: &Path) -> Result<()> {
    write_json(&dir.join("report.json"), &json(r))?;
    write_atomic(&dir.join("report.md"), markdown::page(r).as_bytes())?;
    write_atomic(&dir.join("report.html"), html::page(r)?.as_bytes())
}
