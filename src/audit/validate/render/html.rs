//! `report.html`: one self-contained page (inline CSS, the timing chart as inline SVG, no
//! script, no external asset), readable offline and printable.

use super::{chart, installation_rows, name, sections, timing_rows, verdict};
use crate::audit::validate::{accuracy, Report, Section};
use anyhow::Result;
use std::fmt::Write;

/// The page's style sheet (screen and print).
const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}\
table{border-collapse:collapse;width:100%;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .5em;\
vertical-align:top;text-align:left}th{background:#f2f2f2}td.detail{font-size:.9em;word-break:break-word}\
.pass{color:#17662b;font-weight:bold}.FAIL{color:#b00020;font-weight:bold}.tests{color:#555}\
.verdict{font-size:1.3em;padding:.5em;border:2px solid}code{font-size:.95em}\
details summary{cursor:pointer}@media print{body{margin:0;max-width:none}details{display:block}\
tr{page-break-inside:avoid}}";

/// `s` with the HTML special characters escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A verdict cell.
fn mark(v: &str) -> String {
    format!("<span class=\"{v}\">{v}</span>")
}

/// A Markdown table (`| a | b |` lines, the second the alignment row) as an HTML table, every
/// cell escaped; the first line is the header.
fn table_of_markdown(md: &str) -> String {
    let mut h = String::from("<table>");
    let rows = md.lines().filter(|l| l.starts_with('|'));
    for (i, line) in rows.enumerate().filter(|(i, _)| *i != 1) {
        let tag = if i == 0 { "th" } else { "td" };
        h.push_str("<tr>");
        for c in line.trim().trim_matches('|').split(" | ") {
            h.push_str(&format!("<{tag}>{}</{tag}>", esc(c.trim())));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h
}

/// The page.
pub fn page(r: &Report) -> Result<String> {
    let mut h = String::new();
    let v = verdict(r.passed());
    write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>protokd validation \
         report</title><style>{STYLE}</style></head><body><h1>protokd validation report</h1>\
         <p class=\"verdict {v}\">Verdict: {v} ({} of {} checks passed, {:.0} s)</p>\
         <p>Data (golden patches, recorded hashes, parity fixtures, record) from <code>{}</code>.</p>",
        r.outcomes.iter().filter(|o| o.passed).count(),
        r.outcomes.len(),
        r.seconds,
        esc(&r.tree.display().to_string())
    )?;
    h.push_str("<h2>Installation</h2><table>");
    for (k, val) in installation_rows(&r.installation) {
        write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&val))?;
    }
    h.push_str("</table>");
    for (section, mine) in sections(r) {
        write!(
            h,
            "<h2>{}</h2><table><tr><th>check</th><th>what</th><th>requirements</th>\
             <th>verdict</th><th>detail</th></tr>",
            section.title()
        )?;
        for o in mine {
            write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"detail\">{}</td></tr>",
                esc(&name(o)),
                esc(o.kind.title),
                o.kind.requirements.join(", "),
                mark(verdict(o.passed)),
                esc(&o.detail)
            )?;
        }
        h.push_str("</table>");
        if section == Section::Operation {
            for (name, t) in accuracy::tables(r) {
                write!(
                    h,
                    "<h3>Accuracy against float64, {}: {}</h3>",
                    esc(&name),
                    esc(&t.title)
                )?;
                h.push_str(&table_of_markdown(&t.summary_markdown()));
            }
        }
        if section == Section::Performance {
            let rows = timing_rows(r);
            if !rows.is_empty() {
                h.push_str("<h3>Timings: median of 3 runs after one warm-up</h3>");
                h.push_str(&chart::timings_svg(&rows)?);
            }
        }
    }
    h.push_str(
        "<h2>Traceability matrix</h2><p>Each requirement of <code>docs/requirements.md</code>, the \
         checks of this run that verify it and the tests that do (the test suite, run in CI). \
         Verdict <span class=\"tests\">tests</span>: no check of this run verifies it.</p>\
         <table><tr><th>requirement</th><th>checks</th><th>tests</th><th>verdict</th></tr>",
    );
    for row in &r.matrix {
        let checks: Vec<String> = row
            .checks
            .iter()
            .map(|(c, p)| format!("{} ({})", esc(c), mark(verdict(*p))))
            .collect();
        let tests = if row.tests.is_empty() {
            "0".to_string()
        } else {
            format!(
                "<details><summary>{}</summary>{}</details>",
                row.tests.len(),
                row.tests
                    .iter()
                    .map(|t| esc(t))
                    .collect::<Vec<_>>()
                    .join("<br>")
            )
        };
        write!(
            h,
            "<tr><td><b>{}</b> {}</td><td>{}</td><td>{tests}</td><td>{}</td></tr>",
            row.requirement.id,
            esc(&row.requirement.text),
            checks.join("<br>"),
            mark(row.verdict)
        )?;
    }
    h.push_str("</table></body></html>\n");
    Ok(h)
}
