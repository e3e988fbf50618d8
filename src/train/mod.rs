//! Training loops: a four-modality teacher, and students (ProtoKD, pixel KD, unimodal baseline)
//! as the method page sections 3 and 6 describe, with run folders ([`run`]) that can be
//! resumed bit for bit.
//!
//! ## One epoch `e` (0-based)
//! 1. The training cases (in the split's order; a case's position is its index `i`) are
//!    shuffled by [`epoch_permutation`]`(seed, e, n)`; step `s` takes the cases at positions
//!    `s * batch .. (s + 1) * batch` of that order, for `s` in `0 .. floor(n / batch)` (a
//!    remainder is dropped, as a `drop_last` data loader).
//! 2. Each case's patch is [`augment`]`(case, patch, seed, e, i)` (crop, flips, intensity);
//!    the patches are stacked into a batch.
//! 3. One training step ([`Trainer::step`], on the engine of `--engine`) with the learning rate
//!    of epoch `e` ([`TrainConfig::lr_at`]); the teacher runs in evaluation mode.
//! 4. After the last step, when `e >= val_start_epoch` and `(e - val_start_epoch) %
//!    val_every == 0`: every validation case is segmented whole by the sliding window
//!    ([`crate::infer::sliding_window::segment_case`], `val_patch`, `val_stride`) and scored by Dice per region;
//!    the means over cases of WT, TC and ET and their mean are recorded; a strictly higher
//!    mean than the best so far writes `best.*`.
//! 5. `last.*` is written, then the curves.
//!
//! Everything a step uses is a function of the config, the epoch and the case index, so a run
//! stopped after any step (Ctrl-C, `stop_after`) and resumed from `last.optim.safetensors`
//! performs exactly the same arithmetic as an uninterrupted run and ends with the same bits.

pub mod config;
pub mod run;

use crate::data::augment::{augment, batch, epoch_permutation};
use crate::data::brats::{discover, load_case, Case, Dataset};
use crate::data::preprocess::{preprocess_with_crop, CropBox, PreparedCase};
use crate::data::split::{self, Split};
use crate::engine::Compute;
use crate::engine::{Net, Trainer};
use crate::eval::metrics::{region_dice, Region};
use crate::infer::sliding_window::{segment_case, Window};
use crate::io::checkpoint;
use crate::modality::Modalities;
use anyhow::{anyhow, bail, Context, Result};
use config::TrainConfig;
use indicatif::{ProgressBar, ProgressStyle};
use protokd_reference::state::{VNetConfig, VNetState};
use rayon::prelude::*;
use run::{MetricsLog, Progress, RunDir, RunRecord};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set by the Ctrl-C handler; the loop stops after the step in progress and saves.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process): the first Ctrl-C asks the training loop to
/// stop after its current step and save `last.*`; a second one ends the process at once (every
/// file is written atomically, so nothing is left half-written).
pub fn install_interrupt_handler() -> Result<()> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: exiting without waiting for the step");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: saving after the current step (Ctrl-C again to quit now)");
        })
        .map_err(|e| anyhow!("cannot install the Ctrl-C handler: {e}"));
    });
    result
}

/// Above this many bytes of prepared training images, cases are read from disk at every step
/// instead of being kept in memory (the paper's 200 cases would take 16 GiB).
pub const CACHE_LIMIT_BYTES: usize = 4 << 30;

/// What to train and where.
pub struct TrainArgs<'a> {
    /// Dataset folder.
    pub data: &'a Path,
    /// Run folder.
    pub out: &'a Path,
    /// Split folder (`train_list.txt`, `val_list.txt`, `test_list.txt`), else a seeded split.
    pub split_dir: Option<&'a Path>,
    /// The effective configuration.
    pub config: TrainConfig,
    /// Teacher checkpoint (ProtoKD and KD).
    pub teacher: Option<&'a Path>,
    /// Continue the run in `out` instead of starting one.
    pub resume: bool,
    /// Start afresh in an existing run folder (its run files are replaced).
    pub force: bool,
    /// Stop (and save) after this many steps in this invocation.
    pub stop_after: Option<u64>,
    /// Draw a progress bar on standard error (when it is a terminal).
    pub progress_bar: bool,
    /// Where the steps and validations run (same bits everywhere).
    pub compute: &'a Compute,
}

/// Why a run ended before its last epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C.
    Interrupted,
    /// `stop_after` steps were taken.
    StepLimit,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Where it stands.
    pub progress: Progress,
    /// `None` when every epoch is done.
    pub stopped: Option<Stop>,
    /// Steps taken by this invocation.
    pub steps_run: u64,
    /// Seconds spent in training steps by this invocation.
    pub step_seconds: f64,
    /// Seconds spent validating by this invocation.
    pub val_seconds: f64,
}

/// Training cases, kept in memory or read at every use.
enum TrainCases {
    Memory(Vec<PreparedCase>),
    Disk(Vec<Case>, Option<CropBox>),
}

/// Reads, checks and z-scores a case and applies the crop (`None`: the whole volume).
fn prepare(case: &Case, crop: Option<&CropBox>) -> Result<PreparedCase> {
    let loaded = load_case(case)?;
    if loaded.labels.is_none() {
        bail!(
            "case {} ({}) has no segmentation; training and validation need one",
            case.id,
            case.dir.display()
        );
    }
    let whole = CropBox {
        start: [0; 3],
        end: loaded.dims(),
    };
    preprocess_with_crop(&loaded, crop.unwrap_or(&whole))
}

impl TrainCases {
    fn load(cases: Vec<Case>, crop: Option<CropBox>) -> Result<TrainCases> {
        let first = prepare(&cases[0], crop.as_ref())?;
        let bytes = first.image.len() * 4 * cases.len();
        if bytes > CACHE_LIMIT_BYTES {
            return Ok(TrainCases::Disk(cases, crop));
        }
        let mut all = vec![first];
        for c in &cases[1..] {
            all.push(prepare(c, crop.as_ref())?);
        }
        Ok(TrainCases::Memory(all))
    }

    fn get(&self, i: usize) -> Result<std::borrow::Cow<'_, PreparedCase>> {
        Ok(match self {
            TrainCases::Memory(v) => std::borrow::Cow::Borrowed(&v[i]),
            TrainCases::Disk(cases, crop) => {
                std::borrow::Cow::Owned(prepare(&cases[i], crop.as_ref())?)
            }
        })
    }
}

/// Dice of WT, TC and ET, each averaged over the validation cases (in the split's order,
/// summed in f64), segmented whole by the sliding window.
pub fn validate(
    net: &Net,
    cases: &[Case],
    channels: &[usize],
    window: &Window,
) -> Result<[f64; 3]> {
    let mut sums = [0f64; 3];
    for case in cases {
        let loaded = load_case(case)?;
        let Some(labels) = &loaded.labels else {
            bail!(
                "validation case {} ({}) has no segmentation",
                case.id,
                case.dir.display()
            );
        };
        let pred = segment_case(net, &loaded, channels, window)
            .with_context(|| format!("validation case {}", case.id))?;
        for (s, r) in sums.iter_mut().zip(Region::ALL) {
            *s += region_dice(&pred.labels, labels, r);
        }
    }
    Ok(sums.map(|s| s / cases.len() as f64))
}

/// The dataset's cases named by the split (in the split's order).
fn cases_of(dataset: &Dataset, ids: &[String], what: &str) -> Result<Vec<Case>> {
    Ok(dataset.select(ids, what)?.cases)
}

/// The split: from the folder when given, else seeded from the config.
fn make_split(dataset: &Dataset, split_dir: Option<&Path>, cfg: &TrainConfig) -> Result<Split> {
    match split_dir {
        Some(dir) => split::from_dir(dir, dataset),
        None => {
            let ids: Vec<String> = dataset.cases.iter().map(|c| c.id.clone()).collect();
            split::seeded(&ids, cfg.split_seed, cfg.val_fraction, cfg.test_fraction)
                .with_context(|| format!("dataset {}", dataset.root.display()))
        }
    }
}

/// Loads the teacher of a distillation run and checks it fits: four channels (all
/// modalities), four classes, the student's width. Returns it with the file's SHA-256.
fn load_teacher(path: &Path, cfg: &TrainConfig) -> Result<(VNetState, String)> {
    let (ck, sha256) = checkpoint::load_hashed(path)?;
    let c = ck.state.config;
    if c.in_channels != 4
        || ck
            .modalities
            .as_ref()
            .is_some_and(|m| *m != Modalities::all())
    {
        bail!(
            "teacher {}: takes {} channel(s) ({}); a teacher takes all four modalities",
            path.display(),
            c.in_channels,
            ck.modalities.map_or("unrecorded".into(), |m| m.to_string())
        );
    }
    if c.n_classes != 4 || c.n_filters != cfg.n_filters {
        bail!(
            "teacher {}: {} filters and {} classes, but the student has {} filters and 4 classes \
             (the prototype loss compares feature maps of equal width)",
            path.display(),
            c.n_filters,
            c.n_classes,
            cfg.n_filters
        );
    }
    Ok((ck.state, sha256))
}

/// File names a run writes (removed by `force` before a fresh start).
const RUN_FILES: [&str; 8] = [
    run::CONFIG,
    run::METRICS,
    run::CURVES,
    "last.safetensors",
    "last.optim.safetensors",
    "best.safetensors",
    "best.optim.safetensors",
    "split",
];

/// Prepares the run folder of a fresh run: refuses a non-empty folder unless `force`, then
/// removes the files a run writes.
fn fresh_run_dir(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        let non_empty = std::fs::read_dir(out)
            .map_err(|e| anyhow!("run folder {}: cannot read ({e})", out.display()))?
            .next()
            .is_some();
        if non_empty && !force {
            bail!(
                "run folder {} already exists and is not empty; pass --resume to continue its \
                 run or --force to start afresh there",
                out.display()
            );
        }
        for name in RUN_FILES {
            let p = out.join(name);
            if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else if p.exists() {
                std::fs::remove_file(&p)
            } else {
                Ok(())
            }
            .map_err(|e| anyhow!("{}: cannot remove ({e})", p.display()))?;
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow!("run folder {}: cannot create ({e})", out.display()))
}

/// Writes the split's case lists into `run/split/` (so `evaluate --cases` can use them).
fn write_split_lists(run: &RunDir, split: &Split) -> Result<()> {
    let dir = run.file("split");
    std::fs::create_dir_all(&dir).map_err(|e| anyhow!("{}: cannot create ({e})", dir.display()))?;
    for (name, ids) in split::SPLIT_FILES
        .iter()
        .zip([&split.train, &split.val, &split.test])
    {
        let mut text = format!("# {}\n", split.source);
        for id in ids {
            text.push_str(id);
            text.push('\n');
        }
        crate::io::files::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// Redraws `curves.svg` from the records so far.
fn write_curves(run: &RunDir, log: &MetricsLog, cfg: &TrainConfig) -> Result<()> {
    let title = format!(
        "{} ({}), {}",
        cfg.method.name(),
        cfg.modalities,
        run.path.display()
    );
    crate::report::plot::write_training_plot(&log.records, &run.file(run::CURVES), &title)
}

/// Runs (or resumes) a training run; `say` receives one line per event (start, epoch, stop).
pub fn train(args: &TrainArgs, say: &mut dyn FnMut(&str)) -> Result<Outcome> {
    let cfg = &args.config;
    let modalities = cfg.student_modalities()?;
    let channels = modalities.channels().to_vec();
    let dataset = discover(args.data)?;
    let split = make_split(&dataset, args.split_dir, cfg)?;
    if split.train.len() < cfg.batch_size {
        bail!(
            "{} training case(s) in {} but batch_size is {}: an epoch would have no step",
            split.train.len(),
            args.data.display(),
            cfg.batch_size
        );
    }
    let teacher = match (cfg.method.needs_teacher(), args.teacher) {
        (true, Some(p)) => Some((load_teacher(p, cfg)?, p)),
        (true, None) => bail!(
            "method {} distils from a teacher: pass --teacher T.safetensors (a four-modality \
             model from `protokd train teacher`)",
            cfg.method.name()
        ),
        (false, Some(p)) => bail!(
            "method {} uses no teacher, but --teacher {} was given",
            cfg.method.name(),
            p.display()
        ),
        (false, None) => None,
    };
    let record = RunRecord {
        protokd_version: env!("CARGO_PKG_VERSION").to_string(),
        config: cfg.clone(),
        data: args.data.display().to_string(),
        split: split.clone(),
        teacher: teacher
            .as_ref()
            .map(|((_, hash), p)| (p.display().to_string(), hash.clone())),
    };
    let net = VNetConfig {
        in_channels: channels.len(),
        n_classes: 4,
        n_filters: cfg.n_filters,
    };
    let run = RunDir {
        path: args.out.to_path_buf(),
    };
    let (state, adam, mut progress, mut log) = if args.resume {
        let recorded = run.read_record()?;
        let diff = recorded.differences(&record);
        if !diff.is_empty() {
            bail!(
                "cannot resume {}: it was started with another configuration:\n  {}",
                run.path.display(),
                diff.join("\n  ")
            );
        }
        let r = run.load_last(net)?;
        let log = MetricsLog::resume(&run, &r.progress)?;
        (r.state, r.adam, r.progress, log)
    } else {
        fresh_run_dir(args.out, args.force)?;
        run.write_record(&record)?;
        write_split_lists(&run, &split)?;
        let state = VNetState::init(net, cfg.init_seed);
        let adam = protokd_reference::adam::AdamState::for_state(&state);
        (state, adam, Progress::START, MetricsLog::create(&run)?)
    };
    let teacher_state = teacher.as_ref().map(|((s, _), _)| s);
    let mut trainer = Trainer::new(args.compute, state, adam, teacher_state)?;
    // Saves the student (fetched from its device once) under each of `tags`.
    let save = |tags: &[&str], trainer: &Trainer, progress: Progress| -> Result<()> {
        let (state, adam) = (trainer.state()?, trainer.adam()?);
        for tag in tags {
            run.save(tag, &state, &modalities, &adam, progress)?;
        }
        Ok(())
    };
    let train_cases = TrainCases::load(
        cases_of(&dataset, &split.train, "training split")?,
        cfg.crop_box(),
    )?;
    let val_cases = cases_of(&dataset, &split.val, "validation split")?;
    let window = Window {
        patch: cfg.val_patch,
        stride: cfg.val_stride,
    };
    let n_train = split.train.len();
    let steps_per_epoch = (n_train / cfg.batch_size) as u64;
    let total_steps = steps_per_epoch * cfg.max_epoch;
    say(&format!(
        "{} {}: {} training / {} validation cases, {} step(s) per epoch x {} epochs, batch {}, \
         patch {:?}, n_filters {}; run folder {}",
        if args.resume { "resuming" } else { "training" },
        cfg.method.name(),
        n_train,
        val_cases.len(),
        steps_per_epoch,
        cfg.max_epoch,
        cfg.batch_size,
        cfg.patch,
        cfg.n_filters,
        run.path.display()
    ));
    let bar = if args.progress_bar {
        ProgressBar::new(total_steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps {elapsed_precise} ETA {eta_precise} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(cfg.method.name());
    bar.set_position(progress.global_step);
    let mut outcome = Outcome {
        run_dir: run.path.clone(),
        progress,
        stopped: None,
        steps_run: 0,
        step_seconds: 0.0,
        val_seconds: 0.0,
    };
    let mut say_above = |line: &str| bar.suspend(|| say(line));
    for epoch in progress.epochs_done..cfg.max_epoch {
        let order = epoch_permutation(cfg.seed, epoch, n_train);
        let step_cfg = cfg.step_config(epoch);
        let mut epoch_loss = 0f64;
        let first_step = if epoch == progress.epochs_done {
            progress.step_in_epoch
        } else {
            0
        };
        for s in first_step..steps_per_epoch {
            let t0 = Instant::now();
            let b = cfg.batch_size;
            let picks = &order[s as usize * b..(s as usize + 1) * b];
            let samples = picks
                .par_iter()
                .map(|&i| {
                    let case = train_cases.get(i)?;
                    Ok(augment(&case, cfg.patch, cfg.seed, epoch, i as u64)?.0)
                })
                .collect::<Result<Vec<_>>>()?;
            let (image, labels) = batch(&samples)?;
            let l = trainer
                .step(&image, &labels, &channels, &step_cfg)
                .with_context(|| format!("epoch {epoch}, step {s}"))?;
            outcome.step_seconds += t0.elapsed().as_secs_f64();
            outcome.steps_run += 1;
            progress.global_step += 1;
            progress.step_in_epoch = s + 1;
            if !l.total.is_finite() {
                bail!(
                    "epoch {epoch}, step {s}: the loss is {} (diverged); lower `lr` in the config",
                    l.total
                );
            }
            epoch_loss += l.total as f64;
            log.push(json!({
                "kind": "step", "epoch": epoch, "step": progress.global_step,
                "total": l.total, "seg": l.seg, "dice": l.dice, "ce": l.ce,
                "kd": l.kd, "proto": l.proto, "lr": step_cfg.adam.lr,
            }))?;
            bar.set_position(progress.global_step);
            bar.set_message(format!(
                "epoch {}/{} loss {:.4}",
                epoch + 1,
                cfg.max_epoch,
                l.total
            ));
            let stop = if INTERRUPTED.load(Ordering::SeqCst) {
                Some(Stop::Interrupted)
            } else if args.stop_after == Some(outcome.steps_run) {
                Some(Stop::StepLimit)
            } else {
                None
            };
            if let Some(why) = stop {
                save(&["last"], &trainer, progress)?;
                write_curves(&run, &log, cfg)?;
                bar.finish_and_clear();
                outcome.progress = progress;
                outcome.stopped = Some(why);
                return Ok(outcome);
            }
        }
        let mut line = format!(
            "epoch {}/{}: mean loss {:.4}, lr {:.3e}",
            epoch + 1,
            cfg.max_epoch,
            epoch_loss / (steps_per_epoch - first_step).max(1) as f64,
            step_cfg.adam.lr
        );
        progress.epochs_done = epoch + 1;
        progress.step_in_epoch = 0;
        let due = epoch >= cfg.val_start_epoch
            && (epoch - cfg.val_start_epoch).is_multiple_of(cfg.val_every);
        let mut tags = vec!["last"];
        if due && !val_cases.is_empty() {
            let t0 = Instant::now();
            let [wt, tc, et] = validate(&trainer.net(), &val_cases, &channels, &window)?;
            outcome.val_seconds += t0.elapsed().as_secs_f64();
            let mean = (wt + tc + et) / 3.0;
            let best = progress.best.is_none_or(|(b, _)| mean > b);
            log.push(json!({
                "kind": "val", "epoch": epoch, "step": progress.global_step,
                "wt": wt, "tc": tc, "et": et, "mean": mean, "best": best,
            }))?;
            line.push_str(&format!(
                ", validation Dice WT {wt:.4} TC {tc:.4} ET {et:.4} mean {mean:.4}{}",
                if best { " (best)" } else { "" }
            ));
            if best {
                progress.best = Some((mean, epoch));
                tags.insert(0, "best");
            }
        }
        save(&tags, &trainer, progress)?;
        write_curves(&run, &log, cfg)?;
        say_above(&line);
    }
    bar.finish_and_clear();
    outcome.progress = progress;
    Ok(outcome)
}
