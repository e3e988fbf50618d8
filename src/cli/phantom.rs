//! `protokd phantom`: a cohort of BraTS-like phantom cases written to a folder.

use anyhow::{Context, Result};
use clap::Args;
use protokd::data::phantom;
use protokd::io::console::say;
use protokd::io::files::check_not_input;
use std::path::PathBuf;

/// Arguments of `protokd phantom`.
#[derive(Args)]
pub struct PhantomArgs {
    /// Output folder (created if missing); receives one folder per case.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of cases (indices 0..N).
    #[arg(long, value_name = "N")]
    cases: u64,
    /// Cohort seed; the same seed gives the same bytes.
    #[arg(long, value_name = "S")]
    seed: u64,
    /// BraTS naming and labels: 2018 (`_t1 _t2 _t1ce _flair _seg`, ET = 4) or 2023 (`-t1n -t2w
    /// -t1c -t2f -seg`, ET = 3).
    #[arg(long, default_value = "2018", value_name = "2018|2023")]
    release: String,
    /// Voxels along x, y, z over the fixed 240 x 240 x 155 mm field of view.
    #[arg(long, default_value = "240,240,155", value_name = "X,Y,Z")]
    size: String,
    /// Folder holding the MNI152 T1, GM and WM templates (default: data/mni152 here, else
    /// in the source tree protokd was built from).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Replace the files of cases that exist in --out (refused otherwise).
    #[arg(long)]
    force: bool,
}

/// `protokd phantom`: checks the arguments, then writes the cohort, one line per case.
pub fn run(p: PhantomArgs) -> Result<()> {
    let release = phantom::parse_release(&p.release).context("--release")?;
    let size = phantom::parse_size(&p.size)?;
    let config = phantom::PhantomConfig::new(size, release)?;
    anyhow::ensure!(p.cases >= 1, "--cases must be at least 1, got {}", p.cases);
    let dir = phantom::find_templates(p.templates.as_deref())?;
    check_not_input(&p.out, "--out", &[("--templates", &dir)])?;
    let templates = phantom::Templates::load(&dir)?;
    phantom::write_cohort(
        &p.out,
        &templates,
        &config,
        p.seed,
        p.cases,
        p.force,
        |case, path| {
            let t = &case.tumour;
            say(&format!(
                "wrote {}: {} tumour, R {:.1} mm, voxels NCR {} ED {} ET {}",
                path.display(),
                t.kind.name(),
                t.radius_mm,
                t.voxels[0],
                t.voxels[1],
                t.voxels[2]
            ))
        },
    )?;
    say(&format!(
        "wrote {} case(s) to {} ({})",
        p.cases,
        p.out.display(),
        phantom::GENERATOR
    ))
}
