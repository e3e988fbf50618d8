//! `protokd verify`: the golden suite on every engine asked for, compared bit for bit with the
//! specification.

use anyhow::Result;
use clap::Args;
use protokd::audit::verify::{available_engines, find_golden, line, report_json, verify_engines};
use protokd::engine::EngineKind;
use protokd::io::files::{check_new, check_not_input, write_json};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `protokd verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Folder of the golden patches (default: golden/ here, else in the source tree).
    #[arg(long, value_name = "DIR")]
    golden: Option<PathBuf>,
    /// Also write the report as JSON (refused if it exists, unless --force).
    #[arg(long, value_name = "REPORT.json")]
    json: Option<PathBuf>,
    /// Replace an existing --json file.
    #[arg(long)]
    force: bool,
    /// The engines to compare with the spec, comma-separated (cpu, emulated, cuda). Default:
    /// every available one. `--device` is the older spelling.
    #[arg(
        long,
        alias = "device",
        value_enum,
        value_delimiter = ',',
        value_name = "ENGINES"
    )]
    engines: Vec<EngineKind>,
}

/// `protokd verify`: every engine asked for (default: every available one) against the spec;
/// one line per engine, operation and patch. Exits 1 on any difference.
pub fn run(v: &VerifyArgs) -> Result<ExitCode> {
    if let Some(path) = &v.json {
        check_new(path, "JSON report", v.force)?;
    }
    let golden = find_golden(v.golden.as_deref())?;
    if let Some(path) = &v.json {
        let manifest = golden.join("manifest.json");
        check_not_input(
            path,
            "--json",
            &[("--golden", &golden), ("--golden", &manifest)],
        )?;
    }
    let (engines, skipped) = if v.engines.is_empty() {
        available_engines()
    } else {
        anyhow::ensure!(
            !v.engines.contains(&EngineKind::Spec),
            "--engines spec: the spec is what every engine is compared with; name cpu, emulated \
             or cuda"
        );
        let opened = v.engines.iter().map(|k| k.open()).collect::<Result<_>>()?;
        (opened, Vec::new())
    };
    for s in &skipped {
        println!("skipped    {s}");
    }
    let results = verify_engines(&golden, &engines)?;
    for c in &results {
        println!("{}", line(c));
    }
    for e in &engines {
        let mine: Vec<_> = results.iter().filter(|c| c.engine == e.kind()).collect();
        let same = mine.iter().filter(|c| c.differing == 0).count();
        println!(
            "{}: {same} of {} comparisons identical to the spec ({})",
            e.kind(),
            mine.len(),
            e.describe()
        );
    }
    let differing = results.iter().filter(|c| c.differing > 0).count();
    println!(
        "{} of {} comparisons identical (golden patches in {})",
        results.len() - differing,
        results.len(),
        golden.display()
    );
    if let Some(path) = &v.json {
        write_json(path, &report_json(&engines, &skipped, &golden, &results))?;
    }
    Ok(if differing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
