//! `report.md`: the report as Markdown tables, section by section.

use super::{installation_rows, name, sections, timing_rows, verdict};
use crate::audit::validate::{accuracy, Report};
use std::fmt::Write;

/// A table cell: `|` escaped, line breaks removed.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The page.
pub fn page(r: &Report) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# protokd validation report\n");
    let _ = writeln!(
        m,
        "**Verdict: {}** ({} of {} checks passed, {:.0} s; data from `{}`)\n",
        verdict(r.passed()),
        r.outcomes.iter().filter(|o| o.passed).count(),
        r.outcomes.len(),
        r.seconds,
        r.tree.display()
    );
    let _ = writeln!(m, "## Installation\n\n| | |\n|---|---|");
    for (k, v) in installation_rows(&r.installation) {
        let _ = writeln!(m, "| {k} | {} |", cell(&v));
    }
    for (section, mine) in sections(r) {
        let _ = writeln!(
            m,
            "\n## {}\n\n| check | what | requirements | verdict | detail |\n|---|---|---|---|---|",
            section.title()
        );
        for o in mine {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} |",
                name(o),
                o.kind.title,
                o.kind.requirements.join(", "),
                verdict(o.passed),
                cell(&o.detail)
            );
        }
    }
    let timings = timing_rows(r);
    if !timings.is_empty() {
        let _ = writeln!(
            m,
            "\n### Timings (median of 3, seconds)\n\n| engine | forward | step |\n|---|---|---|"
        );
        for (e, t) in timings {
            match t {
                Some((f, s)) => {
                    let _ = writeln!(m, "| {e} | {f:.4} | {s:.4} |");
                }
                None => {
                    let _ = writeln!(m, "| {e} | absent | absent |");
                }
            }
        }
    }
    for (name, t) in accuracy::tables(r) {
        let _ = writeln!(
            m,
            "\n### Accuracy against float64, {name}: {}\n\n{}",
            t.title,
            t.summary_markdown()
        );
    }
    let _ = writeln!(
        m,
        "\n## Traceability matrix\n\nVerdict `tests`: no check of this run verifies it; the tests \
         listed do (the test suite, run in CI).\n\n| requirement | checks | tests | verdict |\n|---|---|---|---|"
    );
    for row in &r.matrix {
        let checks: Vec<String> = row
            .checks
            .iter()
            .map(|(c, p)| format!("{c} ({})", verdict(*p)))
            .collect();
        let _ = writeln!(
            m,
            "| **{}** {} | {} | {} | {} |",
            row.requirement.id,
            cell(&row.requirement.text),
            checks.join(", "),
            row.tests.len(),
            row.verdict
        );
    }
    m
}
