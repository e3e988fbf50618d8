//! The demo's models and their training: the four-modality teacher, then for each student
//! modality a unimodal baseline and a ProtoKD student distilled from the teacher, each in
//! `runs/<name>/`.

use super::DemoOptions;
use crate::modality::Modalities;
use crate::train::config::Method;
use crate::train::{train, TrainArgs};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One kind of model the demo trains.
struct Model {
    /// Its name in the table and `results.json`.
    name: &'static str,
    /// The stage of the demo that trains it (`[2]`, `[3]`, `[4]` in the progress lines).
    stage: &'static str,
    /// Its training method.
    method: Method,
}

/// The four-modality teacher.
const TEACHER: Model = Model {
    name: "teacher",
    stage: "2",
    method: Method::Teacher,
};
/// A student without distillation.
const UNIMODAL: Model = Model {
    name: "unimodal",
    stage: "3",
    method: Method::Baseline,
};
/// A ProtoKD student.
const PROTOKD: Model = Model {
    name: "protokd",
    stage: "4",
    method: Method::Protokd,
};

/// A trained model.
pub(super) struct Trained {
    /// `teacher`, `unimodal` or `protokd`.
    pub(super) model: &'static str,
    /// Its input modalities.
    pub(super) modalities: Modalities,
    /// Its run name: `teacher`, or `<modalities>-<model>` for a student.
    pub(super) name: String,
    /// Its run folder.
    pub(super) run: PathBuf,
    /// The checkpoint evaluated: the run's best, or its last when it never validated.
    pub(super) checkpoint: PathBuf,
}

/// Trains the teacher (the first of the result), then for each of `students` its unimodal
/// baseline and its ProtoKD student (distilled from the teacher's checkpoint), in that order.
pub(super) fn train_models(
    o: &DemoOptions,
    data: &Path,
    students: &[Modalities],
    say: &mut dyn FnMut(&str),
) -> Result<Vec<Trained>> {
    let teacher = train_model(o, data, &TEACHER, &Modalities::all(), None, say)?;
    let teacher_ck = teacher.checkpoint.clone();
    let mut trained = vec![teacher];
    for m in students {
        trained.push(train_model(o, data, &UNIMODAL, m, None, say)?);
        trained.push(train_model(o, data, &PROTOKD, m, Some(&teacher_ck), say)?);
    }
    Ok(trained)
}

/// Trains one model on the phantoms in `data`: its config from the plan, a line naming it,
/// a fresh run (silent but for the progress bar), a line with its steps, time and best
/// validation.
fn train_model(
    o: &DemoOptions,
    data: &Path,
    model: &Model,
    modalities: &Modalities,
    teacher: Option<&Path>,
    say: &mut dyn FnMut(&str),
) -> Result<Trained> {
    let cfg = o.plan.config(model.method, modalities)?;
    let name = match model.method {
        Method::Teacher => model.name.to_string(),
        _ => format!("{modalities}-{}", model.name),
    };
    let out = o.out.join("runs").join(&name);
    say(&format!(
        "[{}] train {name}: {} ({}), {} epochs, n_filters {}, batch {}, patch {:?}",
        model.stage,
        cfg.method.name(),
        cfg.modalities,
        cfg.max_epoch,
        cfg.n_filters,
        cfg.batch_size,
        cfg.patch
    ));
    let args = TrainArgs {
        data,
        out: &out,
        split_dir: None,
        config: cfg,
        teacher,
        resume: false,
        resume_from: None,
        force: o.force,
        stop_after: None,
        progress_bar: true,
        compute: &o.compute,
    };
    let t = Instant::now();
    let outcome = train(&args, &mut |_| {})?;
    say(&format!(
        "    {} steps in {:.1} s{}",
        outcome.steps_run,
        t.elapsed().as_secs_f64(),
        outcome
            .progress
            .best
            .map_or(String::new(), |(m, e)| format!(
                ", best validation mean Dice {m:.3} at epoch {}",
                e + 1
            ))
    ));
    Ok(Trained {
        model: model.name,
        modalities: modalities.clone(),
        checkpoint: chosen_checkpoint(&out),
        name,
        run: out,
    })
}

/// The best checkpoint of a run, or its last when it never validated.
fn chosen_checkpoint(run: &Path) -> PathBuf {
    let best = run.join("best.safetensors");
    if best.exists() {
        best
    } else {
        run.join("last.safetensors")
    }
}
