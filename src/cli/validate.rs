//! `protokd validate`: the qualification report (installation, operation, performance,
//! traceability) written as `report.html`, `report.md` and `report.json` into `--out`.

use anyhow::{bail, Context, Result};
use clap::Args;
use protokd::audit::validate::{self, find_tree, render, Options};
use protokd::audit::verify::available_engines;
use protokd::engine::EngineKind;
use protokd::io::files::check_not_input;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `protokd validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// Folder for report.html, report.md, report.json and the end-to-end run's files (refused
    /// if it holds files, unless --force).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Write into a folder that holds files (replacing the report and the end-to-end run).
    #[arg(long)]
    force: bool,
    /// The engines compared with the spec and timed, comma-separated (cpu, emulated, cuda).
    /// Default: every available one.
    #[arg(
        long,
        alias = "engine",
        value_enum,
        value_delimiter = ',',
        value_name = "ENGINES"
    )]
    engines: Vec<EngineKind>,
    /// Time larger shapes (2 x 4 x 64^3, n_filters 8).
    #[arg(long)]
    full: bool,
    /// The source tree holding golden/, examples/audit/, tests/fixtures/parity/, the recorded
    /// hashes and docs/validation/record.json (default: the tree this binary was built from,
    /// else the current folder).
    #[arg(long, value_name = "DIR")]
    tree: Option<PathBuf>,
    /// Run only these checks, comma-separated (IQ-1, IQ-2, OQ-1 .. OQ-5, PQ-1, PQ-2, TM-1).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    checks: Vec<String>,
}

/// Refuses `out` when it is a file, or a folder holding files without `force`.
fn check_out(out: &Path, force: bool) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!("--out {} is a file; give a folder", out.display());
    }
    if !force && out.is_dir() {
        let mut entries = std::fs::read_dir(out)
            .with_context(|| format!("cannot list --out {}", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "--out {} already holds files; pass --force to replace the report in it",
                out.display()
            );
        }
    }
    Ok(())
}

/// `protokd validate`: runs the checks, writes the report, and exits 1 when a check failed.
pub fn run(a: &ValidateArgs) -> Result<ExitCode> {
    for id in &a.checks {
        validate::check_kind(id).context("--checks")?;
    }
    anyhow::ensure!(
        !a.engines.contains(&EngineKind::Spec),
        "--engines spec: the spec is what every engine is compared with; name cpu, emulated or cuda"
    );
    check_out(&a.out, a.force)?;
    let tree = find_tree(a.tree.as_deref())?;
    check_not_input(&a.out, "--out", &[("--tree", &tree)])?;
    let (engines, skipped) = if a.engines.is_empty() {
        available_engines()
    } else {
        let opened = a.engines.iter().map(|k| k.open()).collect::<Result<_>>()?;
        (opened, Vec::new())
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create --out {}", a.out.display()))?;
    let opts = Options {
        tree,
        engines,
        skipped,
        full: a.full,
        only: a.checks.clone(),
        work: a.out.join("end-to-end"),
        force: a.force,
    };
    let report = validate::run(&opts, &mut |l| println!("{l}"))?;
    render::write(&report, &a.out)?;
    let failed = report.outcomes.iter().filter(|o| !o.passed).count();
    println!(
        "{}: {} of {} checks passed; wrote {}",
        if failed == 0 { "pass" } else { "FAIL" },
        report.outcomes.len() - failed,
        report.outcomes.len(),
        a.out.join("report.html").display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
