//! `protokd demo`: the whole pipeline on BraTS-like phantoms, from one command. It writes a
//! phantom cohort, trains a four-modality teacher, a unimodal baseline and a ProtoKD student,
//! evaluates all of them on the held-out test phantoms, prints a table like the paper's Table 1
//! and writes `results.json` and overlay PNGs.
//!
//! [`run`] goes through the stages in this order, each a function: check the output folder and
//! every model's config; write the phantoms (`data/`); train the teacher, then for each student
//! modality a unimodal baseline and a ProtoKD student (`runs/`); evaluate every model on the
//! test phantoms (`eval/`, `overlays/`); write `results.json` and print the table.
//!
//! The default plan is small enough for 2 CPU cores in a few minutes ([`Plan::small`]); `--full`
//! is the paper's configuration on full-size phantoms ([`Plan::full`], for a GPU).

mod evaluation;
mod models;
mod plan;
mod results;

pub use plan::Plan;
pub use results::{table, Row};

use crate::data::phantom::{self, PhantomConfig, Release, Templates};
use crate::engine::Compute;
use crate::modality::{Modalities, NAMES};
use crate::train::config::{Method, TrainConfig};
use anyhow::Result;
use evaluation::TestSet;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `protokd demo`.
pub struct DemoOptions {
    /// Output folder.
    pub out: PathBuf,
    /// The students' modality.
    pub modality: Modalities,
    /// Students for each of the four modalities (instead of `modality` alone).
    pub all_modalities: bool,
    /// The plan.
    pub plan: Plan,
    /// Replace an existing output folder's files.
    pub force: bool,
    /// MNI152 templates folder (default: found as `protokd phantom` does).
    pub templates: Option<PathBuf>,
    /// Where training and evaluation run.
    pub compute: Compute,
}

/// Runs the demo; `say` receives the progress lines. The stages, in order: the output folder
/// must be new (or `force`); every config is checked (`check_configs`); the phantoms are
/// written (`write_phantoms`); the models are trained (the teacher first); each is evaluated
/// on the teacher's test phantoms, after the reference overlay; `results.json` is written and
/// the table said.
pub fn run(o: &DemoOptions, say: &mut dyn FnMut(&str)) -> Result<Vec<Row>> {
    let t0 = Instant::now();
    crate::io::files::check_new(&o.out, "demo folder", o.force)?;
    let students = students(o)?;
    let teacher_cfg = check_configs(&o.plan, &students)?;
    let data = write_phantoms(o, t0, say)?;
    let trained = models::train_models(o, &data, &students, say)?;
    let teacher_run = &trained[0].run;
    let test = TestSet::open(o, &data, teacher_run, &teacher_cfg, trained.len(), say)?;
    test.write_reference_overlay()?;
    let rows = trained
        .iter()
        .map(|t| test.evaluate(o, t))
        .collect::<Result<Vec<_>>>()?;
    results::write_results(o, &rows, &test.ids, t0, say)?;
    Ok(rows)
}

/// The students' modalities: each of the four with `all_modalities`, else `modality`.
fn students(o: &DemoOptions) -> Result<Vec<Modalities>> {
    if o.all_modalities {
        NAMES.iter().map(|n| Modalities::parse(n)).collect()
    } else {
        Ok(vec![o.modality.clone()])
    }
}

/// Checks every config before spending time: the teacher's (returned) and each student's
/// ProtoKD config.
fn check_configs(plan: &Plan, students: &[Modalities]) -> Result<TrainConfig> {
    let teacher_cfg = plan.config(Method::Teacher, &Modalities::all())?;
    for m in students {
        plan.config(Method::Protokd, m)?;
    }
    Ok(teacher_cfg)
}

/// Writes the phantom cohort of the plan into `data/` (returned), with a line before and the
/// seconds since `t0` after.
fn write_phantoms(o: &DemoOptions, t0: Instant, say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let plan = &o.plan;
    let data = o.out.join("data");
    let [x, y, z] = plan.size;
    say(&format!(
        "[1] phantoms: {} cases of {x} x {y} x {z} voxels (seed {}) -> {}",
        plan.cases,
        plan.seed,
        data.display()
    ));
    let templates = Templates::load(&phantom::find_templates(o.templates.as_deref())?)?;
    let pc = PhantomConfig::new(plan.size, Release::Brats2018)?;
    phantom::write_cohort(
        &data,
        &templates,
        &pc,
        plan.seed,
        plan.cases,
        o.force,
        |_, _| Ok(()),
    )?;
    say(&format!("    {:.1} s", t0.elapsed().as_secs_f64()));
    Ok(data)
}
