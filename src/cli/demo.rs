//! `protokd demo`: the whole pipeline on BraTS-like phantoms, from the phantoms to the table.

use super::engine::EngineArg;
use anyhow::{Context, Result};
use clap::Args;
use protokd::demo::{DemoOptions, Plan};
use protokd::modality::Modalities;
use std::path::PathBuf;

/// Arguments of `protokd demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Output folder (refused if it exists, unless --force).
    #[arg(long, default_value = "protokd-demo", value_name = "DIR")]
    out: PathBuf,
    /// The students' modality (t1, t2, t1ce, flair, or a comma-separated subset).
    #[arg(long, default_value = "t1ce")]
    modality: String,
    /// Students (unimodal and ProtoKD) for each of the four modalities.
    #[arg(long)]
    all_modalities: bool,
    /// The paper's configuration on 285 full-size phantoms (days on a CPU; meant for a GPU).
    #[arg(long)]
    full: bool,
    /// Replace the files of an existing output folder.
    #[arg(long)]
    force: bool,
    /// Folder holding the MNI152 templates (default: data/mni152).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArg,
}

/// `protokd demo`: runs the plan (small, or the paper's with `--full`), printing its progress.
pub fn run(d: DemoArgs) -> Result<()> {
    let opts = DemoOptions {
        compute: d.engine.open()?,
        out: d.out,
        modality: Modalities::parse(&d.modality).context("--modality")?,
        all_modalities: d.all_modalities,
        plan: if d.full { Plan::full() } else { Plan::small() },
        force: d.force,
        templates: d.templates,
    };
    protokd::demo::run(&opts, &mut |line| println!("{line}"))?;
    Ok(())
}
