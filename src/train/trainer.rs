//! The trainer: everything a run holds between its hooks, the hooks that open and close the
//! run (`on_train_start`, `on_train_end`) and the stop check after each step. The hooks of an
//! epoch are in [`super::epoch`], [`super::validation`] and [`super::checkpoints`].

use super::cases::{cases_of, split_of, TrainCases};
use super::run::{MetricsLog, Progress, RunDir, RunRecord};
use super::{interrupt, start, teacher, Outcome, Stop, TrainArgs};
use crate::data::brats::Case;
use crate::data::dataset::{any_npy, check_headers, discover};
use crate::data::npy::NO_AFFINE;
use crate::engine::Trainer;
use crate::infer::sliding_window::Window;
use crate::modality::Modalities;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use protokd_reference::state::VNetConfig;

/// A run in progress; its methods are the hooks of the loop in [`super::train`].
pub(super) struct TrainingLoop<'a> {
    /// What to train and where.
    pub(super) args: &'a TrainArgs<'a>,
    /// The student's input modalities (recorded in its checkpoints).
    pub(super) modalities: Modalities,
    /// Their channels in the four-modality volumes.
    pub(super) channels: Vec<usize>,
    /// The run folder.
    pub(super) run: RunDir,
    /// The student (and the teacher) on the engine.
    pub(super) engine: Trainer<'a>,
    /// The training cases.
    pub(super) cases: TrainCases,
    /// How many there are.
    pub(super) n_train: usize,
    /// The validation cases.
    pub(super) val_cases: Vec<Case>,
    /// The sliding window of validation.
    pub(super) window: Window,
    /// `floor(n_train / batch_size)`.
    pub(super) steps_per_epoch: u64,
    /// Where the run stands.
    pub(super) progress: Progress,
    /// `metrics.jsonl`.
    pub(super) log: MetricsLog,
    /// The progress bar (hidden unless asked for, and until the start line is said).
    pub(super) bar: ProgressBar,
    /// What this invocation did so far.
    pub(super) outcome: Outcome,
    /// Said after the start line for an authors' `.npy` dataset: how its cases are used.
    pub(super) data_note: Option<String>,
}

impl<'a> TrainingLoop<'a> {
    /// `on_train_start`: opens the run ([`TrainingLoop::open`]), says the start line (and, for an
    /// authors' `.npy` dataset, how its cases are used), then sets the
    /// progress bar at the run's global step (after the line, which it would otherwise cover).
    pub(super) fn on_train_start(
        args: &'a TrainArgs<'a>,
        say: &mut dyn FnMut(&str),
    ) -> Result<TrainingLoop<'a>> {
        let mut training = TrainingLoop::open(args)?;
        say(&training.start_line());
        if let Some(note) = &training.data_note {
            say(note);
        }
        training.bar = training.progress_bar();
        Ok(training)
    }

    /// The run, in this order: the student's modalities, the dataset and its split
    /// ([`split_of`]), the teacher ([`teacher::for_method`]), the training cases
    /// ([`TrainCases::load`]) and the validation cases, then the run folder, fresh or resumed
    /// ([`start::open`]), and the student on its engine. Its progress bar is hidden. (The
    /// config's numbers were checked when it was settled: [`TrainConfig::check`](super::config::TrainConfig::check).)
    fn open(args: &'a TrainArgs<'a>) -> Result<TrainingLoop<'a>> {
        let cfg = &args.config;
        let modalities = cfg.student_modalities()?;
        let channels = modalities.channels().to_vec();
        let dataset = discover(args.data)?;
        let split = split_of(&dataset, args.split_dir, cfg, args.data)?;
        let data_note = any_npy(&dataset.cases).then(|| {
            format!(
                "data: {} .npy case(s) used as the authors' preprocess.py stored them (z-scored \
                 and cropped; the config's crop is not applied); split {}; {NO_AFFINE}",
                dataset.cases.len(),
                split.source
            )
        });
        let teacher = teacher::for_method(cfg, args.teacher)?;
        let record = RunRecord {
            protokd_version: env!("CARGO_PKG_VERSION").to_string(),
            config: cfg.clone(),
            data: args.data.display().to_string(),
            split: split.clone(),
            teacher: teacher.as_ref().map(teacher::Teacher::recorded),
            resumed_from: None,
        };
        let net = VNetConfig {
            in_channels: channels.len(),
            n_classes: 4,
            n_filters: cfg.n_filters,
        };
        let run = RunDir {
            path: args.out.to_path_buf(),
        };
        let train_cases = cases_of(&dataset, &split.train, "training split")?;
        let cases = TrainCases::load(train_cases, cfg.crop_box())?;
        let val_cases = cases_of(&dataset, &split.val, "validation split")?;
        // Validation reads its cases at each epoch's end: their headers are checked now.
        check_headers(&val_cases)?;
        // The run folder is touched only once every input has loaded.
        let steps_per_epoch = (split.train.len() / cfg.batch_size) as u64;
        let (start, log) = start::open(&run, args, &record, net, steps_per_epoch)?;
        let teacher_state = teacher.as_ref().map(|t| &t.state);
        let engine = Trainer::new(args.compute, start.state, start.adam, teacher_state)?;
        Ok(TrainingLoop {
            args,
            modalities,
            channels,
            outcome: Outcome::start(&run, start.progress),
            run,
            engine,
            cases,
            n_train: split.train.len(),
            val_cases,
            window: Window {
                patch: cfg.val_patch,
                stride: cfg.val_stride,
            },
            steps_per_epoch,
            progress: start.progress,
            log,
            bar: ProgressBar::hidden(),
            data_note,
        })
    }

    /// `training teacher: 5 training / 1 validation cases, 2 step(s) per epoch x ...` (or
    /// `resuming ...`).
    fn start_line(&self) -> String {
        let cfg = &self.args.config;
        format!(
            "{} {}: {} training / {} validation cases, {} step(s) per epoch x {} epochs, batch \
             {}, patch {:?}, n_filters {}; run folder {}",
            if self.args.resume || self.args.resume_from.is_some() {
                "resuming"
            } else {
                "training"
            },
            cfg.method.name(),
            self.n_train,
            self.val_cases.len(),
            self.steps_per_epoch,
            cfg.max_epoch,
            cfg.batch_size,
            cfg.patch,
            cfg.n_filters,
            self.run.path.display()
        )
    }

    /// The progress bar over all steps of the run (drawn only when asked for), at the run's
    /// global step.
    fn progress_bar(&self) -> ProgressBar {
        let cfg = &self.args.config;
        let bar = if self.args.progress_bar {
            ProgressBar::new(self.steps_per_epoch * cfg.max_epoch)
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
        bar.set_position(self.progress.global_step);
        bar
    }

    /// The first epoch left to run.
    pub(super) fn first_epoch(&self) -> u64 {
        self.progress.epochs_done
    }

    /// Checked after every step: a Ctrl-C ([`Stop::Interrupted`]), else `stop_after` steps
    /// taken by this invocation ([`Stop::StepLimit`]).
    pub(super) fn stop_requested(&self) -> Option<Stop> {
        if interrupt::interrupted() {
            Some(Stop::Interrupted)
        } else if self.args.stop_after == Some(self.outcome.steps_run) {
            Some(Stop::StepLimit)
        } else {
            None
        }
    }

    /// `on_train_end`: clears the progress bar and returns the outcome at the run's progress
    /// (`stopped`: why the run ended before its last epoch).
    pub(super) fn on_train_end(mut self, stopped: Option<Stop>) -> Outcome {
        self.bar.finish_and_clear();
        self.outcome.progress = self.progress;
        self.outcome.stopped = stopped;
        self.outcome
    }
}
