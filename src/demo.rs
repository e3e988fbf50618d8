//! `protokd demo`: the whole pipeline on BraTS-like phantoms, from one command. It writes a
//! phantom cohort, trains a four-modality teacher, a unimodal baseline and a ProtoKD student,
//! evaluates all of them on the held-out test phantoms, prints a table like the paper's Table 1
//! and writes `results.json` and overlay PNGs.
//!
//! The default plan is small enough for 2 CPU cores in a few minutes ([`Plan::small`]); `--full`
//! is the paper's configuration on full-size phantoms ([`Plan::full`], for a GPU).

use crate::data::brats::{discover, load_case};
use crate::data::phantom::{self, PhantomConfig, Release, Templates};
use crate::engine::Compute;
use crate::engine::Net;
use crate::eval::evaluate::{evaluate_dataset, summarize, EvaluateOptions};
use crate::infer::sliding_window::{segment_case, Window};
use crate::io::checkpoint;
use crate::modality::{Modalities, NAMES};
use crate::train::config::{effective, Method, TrainConfig};
use crate::train::run::RunDir;
use crate::train::{train, TrainArgs};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the demo builds and trains.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Phantom grid, voxels along (x, y, z).
    pub size: [usize; 3],
    /// Number of phantom cases.
    pub cases: u64,
    /// Cohort seed.
    pub seed: u64,
    /// Config keys that replace the paper's, for every model.
    pub overrides: Value,
}

impl Plan {
    /// The default: 24 phantoms of 64 x 64 x 40 voxels (3.75 x 3.75 x 3.9 mm), split 17 / 2 / 5
    /// by the seeded split; n_filters 4, batch 2, patches of 32 x 48 x 48, 20 epochs of 8 steps
    /// at a base learning rate of 3e-3 (the paper's 1e-3 needs about twice the steps here),
    /// validation from epoch 5 with a 32 x 64 x 64 window. Everything else is the paper's.
    pub fn small() -> Plan {
        Plan {
            size: [64, 64, 40],
            cases: 24,
            seed: 2023,
            overrides: json!({
                "n_filters": 4,
                "batch_size": 2,
                "patch": [32, 48, 48],
                "max_epoch": 20,
                "lr": 3e-3,
                "crop": null,
                "val_patch": [32, 64, 64],
                "val_stride": [16, 32, 32],
            }),
        }
    }

    /// `--full`: the paper's configuration (n_filters 16, batch 4, 96 x 128 x 128 patches, 1000
    /// epochs, the BraTS crop, the paper's window) on 285 full-size phantoms split 200 / 28 /
    /// 57 like BraTS 2018.
    pub fn full() -> Plan {
        Plan {
            size: phantom::DEFAULT_SIZE,
            cases: 285,
            seed: 2023,
            overrides: json!({}),
        }
    }

    /// The effective config of one model.
    pub fn config(&self, method: Method, modalities: &Modalities) -> Result<TrainConfig> {
        effective(method, modalities, Some((&self.overrides, "the demo plan")))
    }
}

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

/// One row of the result table: a model's mean Dice per region on the test phantoms.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `teacher`, `unimodal` or `protokd`.
    pub model: &'static str,
    /// Its input modalities.
    pub modality: String,
    /// Mean Dice of WT, TC and ET (0..1) and their mean.
    pub dice: [f64; 4],
    /// The checkpoint evaluated.
    pub checkpoint: PathBuf,
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

/// The channel drawn in grey under a model's overlay: T1ce when the model sees it (it shows
/// the enhancing rim best), else the model's first modality.
fn grey_of(m: &Modalities) -> usize {
    if m.channels().contains(&2) {
        2
    } else {
        m.channels()[0]
    }
}

/// The table of the rows, Dice in percent, as the paper's Table 1.
pub fn table(rows: &[Row], test_cases: usize) -> String {
    let mut s = format!(
        "Dice (%) on {test_cases} held-out phantoms\n{:<28} {:>6} {:>6} {:>6} {:>6}\n",
        "model", "WT", "TC", "ET", "mean"
    );
    for r in rows {
        let name = match r.model {
            "teacher" => "teacher (all four)".to_string(),
            m => format!(
                "{} {}",
                r.modality,
                if m == "protokd" { "ProtoKD" } else { m }
            ),
        };
        s.push_str(&format!(
            "{name:<28} {:>6.2} {:>6.2} {:>6.2} {:>6.2}\n",
            100.0 * r.dice[0],
            100.0 * r.dice[1],
            100.0 * r.dice[2],
            100.0 * r.dice[3]
        ));
    }
    s
}

/// `results.json`: `{"rows": [{"model", "modality", "wt", "tc", "et", "mean", "checkpoint"}],
/// "test_cases", "plan", "protokd_version", "seconds"}`.
fn results_json(rows: &[Row], test: &[String], plan: &Plan, seconds: f64) -> Value {
    json!({
        "rows": rows.iter().map(|r| json!({
            "model": r.model,
            "modality": r.modality,
            "wt": r.dice[0],
            "tc": r.dice[1],
            "et": r.dice[2],
            "mean": r.dice[3],
            "checkpoint": r.checkpoint.display().to_string(),
        })).collect::<Vec<_>>(),
        "test_cases": test,
        "plan": {
            "phantom_size_xyz": plan.size,
            "phantom_cases": plan.cases,
            "phantom_seed": plan.seed,
            "config_overrides": plan.overrides,
        },
        "protokd_version": env!("CARGO_PKG_VERSION"),
        "seconds": seconds,
    })
}

/// Runs the demo; `say` receives the progress lines.
pub fn run(o: &DemoOptions, say: &mut dyn FnMut(&str)) -> Result<Vec<Row>> {
    let t0 = Instant::now();
    crate::io::files::check_new(&o.out, "demo folder", o.force)?;
    let plan = &o.plan;
    let students: Vec<Modalities> = if o.all_modalities {
        NAMES
            .iter()
            .map(|n| Modalities::parse(n))
            .collect::<Result<_>>()?
    } else {
        vec![o.modality.clone()]
    };
    // Check every config before spending time.
    let teacher_cfg = plan.config(Method::Teacher, &Modalities::all())?;
    for m in &students {
        plan.config(Method::Protokd, m)?;
    }
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
    phantom::write_cohort(&data, &templates, &pc, plan.seed, plan.cases, |_, _| Ok(()))?;
    say(&format!("    {:.1} s", t0.elapsed().as_secs_f64()));

    let runs = o.out.join("runs");
    let mut trained: Vec<(&'static str, Modalities, PathBuf)> = Vec::new();
    let train_one = |stage: &str,
                     name: &str,
                     cfg: TrainConfig,
                     teacher: Option<&Path>,
                     say: &mut dyn FnMut(&str)|
     -> Result<PathBuf> {
        let out = runs.join(name);
        say(&format!(
            "[{stage}] train {name}: {} ({}), {} epochs, n_filters {}, batch {}, patch {:?}",
            cfg.method.name(),
            cfg.modalities,
            cfg.max_epoch,
            cfg.n_filters,
            cfg.batch_size,
            cfg.patch
        ));
        let args = TrainArgs {
            data: &data,
            out: &out,
            split_dir: None,
            config: cfg,
            teacher,
            resume: false,
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
        Ok(out)
    };
    let teacher_run = train_one("2", "teacher", teacher_cfg.clone(), None, say)?;
    let teacher_ck = chosen_checkpoint(&teacher_run);
    trained.push(("teacher", Modalities::all(), teacher_ck.clone()));
    for m in &students {
        let b = train_one(
            "3",
            &format!("{m}-unimodal"),
            plan.config(Method::Baseline, m)?,
            None,
            say,
        )?;
        trained.push(("unimodal", m.clone(), chosen_checkpoint(&b)));
        let p = train_one(
            "4",
            &format!("{m}-protokd"),
            plan.config(Method::Protokd, m)?,
            Some(&teacher_ck),
            say,
        )?;
        trained.push(("protokd", m.clone(), chosen_checkpoint(&p)));
    }

    // The test phantoms of the teacher's split (every run uses the same seeded split).
    let test = RunDir {
        path: teacher_run.clone(),
    }
    .read_record()?
    .split
    .test;
    if test.is_empty() {
        bail!("the demo plan holds out no test phantom");
    }
    let dataset = discover(&data)?.select(&test, "demo test split")?;
    let window = Window {
        patch: teacher_cfg.val_patch,
        stride: teacher_cfg.val_stride,
    };
    say(&format!(
        "[5] evaluate {} models on {} test phantoms",
        trained.len(),
        test.len()
    ));
    let overlays = o.out.join("overlays");
    std::fs::create_dir_all(&overlays)
        .with_context(|| format!("cannot create {}", overlays.display()))?;
    let first = load_case(&dataset.cases[0])?;
    if let Some(labels) = &first.labels {
        crate::report::overlay::write_overlay_png(
            &first.images[grey_of(&Modalities::all())],
            labels,
            &overlays.join("reference.png"),
            &format!("{}: reference labels", first.case.id),
        )?;
    }
    let mut rows = Vec::new();
    for (model, m, ck_path) in &trained {
        let ck = checkpoint::load(ck_path)?;
        let label = match *model {
            "teacher" => "teacher".to_string(),
            _ => format!("{m}-{model}"),
        };
        let report_dir = o.out.join("eval").join(&label);
        let opts = EvaluateOptions::default();
        let net = Net::new(&o.compute, &ck.state)?;
        let scores = evaluate_dataset(
            &net,
            &dataset.cases,
            m.channels(),
            &window,
            &opts,
            |_, _, _| {},
        )?;
        let summary = summarize(&scores);
        let meta = json!({
            "tool": format!("protokd {} demo", env!("CARGO_PKG_VERSION")),
            "model": ck_path.display().to_string(),
            "modalities": m.to_string(),
            "test_cases": test,
            "hd95_units": "mm",
        });
        crate::eval::evaluate::write_report(&report_dir, &summary, &scores, meta, o.force)?;
        let d = summary.mean_dice();
        rows.push(Row {
            model,
            modality: m.to_string(),
            dice: [d[0], d[1], d[2], (d[0] + d[1] + d[2]) / 3.0],
            checkpoint: ck_path.clone(),
        });
        let pred = segment_case(&net, &first, m.channels(), &window)?;
        crate::report::overlay::write_overlay_png(
            &first.images[grey_of(m)],
            &pred.labels,
            &overlays.join(format!("{label}.png")),
            &format!("{}: {model} ({m})", first.case.id),
        )?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    crate::io::files::write_json(
        &o.out.join("results.json"),
        &results_json(&rows, &test, plan, seconds),
    )?;
    say(&table(&rows, test.len()));
    say(&format!(
        "wrote {} (and runs/, eval/, overlays/) in {:.0} s",
        o.out.join("results.json").display(),
        seconds
    ));
    Ok(rows)
}
