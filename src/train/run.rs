//! The run folder of a training run and what it holds:
//!
//! | file | content |
//! |---|---|
//! | `config.json` | [`RunRecord`]: the effective [`TrainConfig`], the split, the data folder, the teacher's hash, the protokd version |
//! | `metrics.jsonl` | one JSON object per line: every step (`kind: "step"`) and every validation (`kind: "val"`) |
//! | `last.safetensors` | the model after the last completed step (a plain checkpoint) |
//! | `last.optim.safetensors` | everything a resume needs: the model (`model.*`), Adam's moments (`adam.exp_avg.*`, `adam.exp_avg_sq.*`), and in the metadata the [`Progress`], Adam's step, `protokd.model.sha256` (the SHA-256 of the `last.safetensors` written with it) and `protokd.run.record_sha256` (of `config.json`) |
//! | `best.safetensors`, `best.optim.safetensors` | the same at the best validation mean Dice |
//! | `curves.svg` | losses and validation Dice, redrawn at every epoch's end |
//!
//! Every file is written atomically. A resume reads its state only from
//! `last.optim.safetensors`, a single file, so an interruption between two writes can only
//! lose the newest state, never mix two.
//!
//! What is saved and resumed is validated ([`checkpoint::first_invalid`]): a state with a value
//! that breaks its rule (non-finite, a negative variance, ...) is never written, the run stops
//! naming the epoch, the step and the tensor. A resume also refuses an optimiser file whose
//! Adam step is not the run's step count (or above 2^53), and one whose
//! `protokd.run.record_sha256` is not the hash of `config.json` (another run's file); a
//! `protokd.model.sha256` that is not the hash of `last.safetensors` (an interrupted save) and
//! a file from an earlier protokd, without these records, are resumed with a warning on
//! standard error.

use super::config::TrainConfig;
use crate::data::split::Split;
use crate::io::checkpoint::{self, check_values, read_state, Rule};
use crate::io::files::{write_atomic, write_json};
use crate::io::hash::sha256_hex;
use crate::io::tensorfile::{write_tensors, TensorFile};
use crate::modality::Modalities;
use anyhow::{anyhow, bail, Context, Result};
use protokd_reference::adam::AdamState;
use protokd_reference::state::{VNetConfig, VNetState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File names inside a run folder.
pub(crate) const CONFIG: &str = "config.json";
/// The key of the optimiser file's metadata that records the SHA-256 of its model file.
pub(crate) const MODEL_SHA256: &str = "protokd.model.sha256";
/// The key of the optimiser file's metadata that records the SHA-256 of the run's
/// `config.json`.
pub(crate) const RECORD_SHA256: &str = "protokd.run.record_sha256";
/// Step and validation records.
pub(crate) const METRICS: &str = "metrics.jsonl";
/// Training curves.
pub(crate) const CURVES: &str = "curves.svg";

/// What `config.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// The protokd version that started the run.
    pub protokd_version: String,
    /// The effective configuration.
    pub config: TrainConfig,
    /// The dataset folder as given.
    pub data: String,
    /// The split used.
    pub split: Split,
    /// The teacher checkpoint (path as given, SHA-256 of the file), for distillation.
    pub teacher: Option<(String, String)>,
    /// The checkpoint the run continued at its start (`--resume-from`: path as given,
    /// SHA-256 of the file); absent for a run started from the seeded initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<(String, String)>,
}

impl RunRecord {
    /// The differences that forbid resuming a run recorded as `self` with `other`: one
    /// `key: recorded vs given` line per differing config key, split part or teacher hash
    /// (the version and the paths are not compared).
    pub(crate) fn differences(&self, other: &RunRecord) -> Vec<String> {
        let mut out = Vec::new();
        let a = serde_json::to_value(&self.config).expect("config serialises");
        let b = serde_json::to_value(&other.config).expect("config serialises");
        if let (Value::Object(a), Value::Object(b)) = (a, b) {
            for (k, va) in &a {
                if b.get(k) != Some(va) {
                    out.push(format!(
                        "config `{k}`: {va} in the run folder, {} now",
                        b.get(k).unwrap_or(&Value::Null)
                    ));
                }
            }
        }
        for (name, x, y) in [
            ("training cases", &self.split.train, &other.split.train),
            ("validation cases", &self.split.val, &other.split.val),
            ("test cases", &self.split.test, &other.split.test),
        ] {
            if x != y {
                out.push(format!(
                    "{name}: {} in the run folder, {} now (or different ids)",
                    x.len(),
                    y.len()
                ));
            }
        }
        let hash = |t: &Option<(String, String)>| t.as_ref().map(|(_, h)| h.clone());
        if hash(&self.teacher) != hash(&other.teacher) {
            out.push(format!(
                "teacher: sha256 {} in the run folder, {} now",
                hash(&self.teacher).unwrap_or_else(|| "none".into()),
                hash(&other.teacher).unwrap_or_else(|| "none".into())
            ));
        }
        out
    }
}

/// Where a run stands, stored in the metadata of the `.optim.safetensors` files.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Epochs finished, validation included.
    pub epochs_done: u64,
    /// Steps done in epoch `epochs_done` (0-based); equal to the steps per epoch when its steps
    /// are done but its validation is not.
    pub step_in_epoch: u64,
    /// Steps done in all.
    pub global_step: u64,
    /// Best validation mean Dice so far and its epoch (0-based).
    pub best: Option<(f64, u64)>,
}

impl Progress {
    /// The start of a run.
    pub(crate) const START: Progress = Progress {
        epochs_done: 0,
        step_in_epoch: 0,
        global_step: 0,
        best: None,
    };

    fn to_metadata(self) -> Vec<(String, String)> {
        let mut m = vec![
            (
                "protokd.run.epochs_done".into(),
                self.epochs_done.to_string(),
            ),
            (
                "protokd.run.step_in_epoch".into(),
                self.step_in_epoch.to_string(),
            ),
            (
                "protokd.run.global_step".into(),
                self.global_step.to_string(),
            ),
        ];
        if let Some((mean, epoch)) = self.best {
            // The bits, so that a resumed run compares exactly as an uninterrupted one.
            m.push((
                "protokd.run.best_mean_bits".into(),
                format!("{:016x}", mean.to_bits()),
            ));
            m.push(("protokd.run.best_epoch".into(), epoch.to_string()));
        }
        m
    }

    fn from_metadata(meta: &HashMap<String, String>, file: &Path) -> Result<Progress> {
        let get = |k: &str| -> Result<u64> {
            let v = meta
                .get(k)
                .ok_or_else(|| anyhow!("{}: metadata `{k}` is missing", file.display()))?;
            v.parse()
                .map_err(|_| anyhow!("{}: metadata `{k}` = `{v}` is not a count", file.display()))
        };
        let best = match meta.get("protokd.run.best_mean_bits") {
            None => None,
            Some(bits) => {
                let b = u64::from_str_radix(bits, 16).map_err(|_| {
                    anyhow!(
                        "{}: metadata `protokd.run.best_mean_bits` = `{bits}` is not hexadecimal",
                        file.display()
                    )
                })?;
                Some((f64::from_bits(b), get("protokd.run.best_epoch")?))
            }
        };
        Ok(Progress {
            epochs_done: get("protokd.run.epochs_done")?,
            step_in_epoch: get("protokd.run.step_in_epoch")?,
            global_step: get("protokd.run.global_step")?,
            best,
        })
    }
}

/// A run folder.
pub struct RunDir {
    /// Its path.
    pub path: PathBuf,
}

/// The state of a run: what `last.optim.safetensors` holds, or a fresh start.
pub(crate) struct RunState {
    /// The model.
    pub state: VNetState,
    /// The optimiser.
    pub adam: AdamState,
    /// Where the run stands.
    pub progress: Progress,
}

impl RunState {
    /// The start of a run: the network of `cfg` initialised from `init_seed`, Adam's state at
    /// zero, [`Progress::START`].
    pub fn fresh(cfg: VNetConfig, init_seed: u64) -> RunState {
        let state = VNetState::init(cfg, init_seed);
        let adam = AdamState::for_state(&state);
        RunState {
            state,
            adam,
            progress: Progress::START,
        }
    }
}

impl RunDir {
    /// The path of a file in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `config.json` (atomically).
    pub(crate) fn write_record(&self, record: &RunRecord) -> Result<()> {
        self.claim(&[CONFIG])?;
        write_json(&self.file(CONFIG), record)
    }

    /// Reads `config.json`.
    pub fn read_record(&self) -> Result<RunRecord> {
        let path = self.file(CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow!(
                "{}: cannot read the run's configuration ({e}); is {} a run folder?",
                path.display(),
                self.path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a run record", path.display()))
    }

    /// Writes `<tag>.safetensors` (the model) and then `<tag>.optim.safetensors` (model,
    /// optimiser, progress and the model file's SHA-256), each atomically. Refuses, writing
    /// nothing, a state or optimiser state with a value that breaks its rule
    /// ([`checkpoint::first_invalid`]), naming the epoch, the step and the first such tensor.
    pub fn save(
        &self,
        tag: &str,
        state: &VNetState,
        modalities: &Modalities,
        adam: &AdamState,
        progress: Progress,
    ) -> Result<()> {
        if let Some(bad) = checkpoint::first_invalid(state, Some(adam)) {
            bail!(
                "training diverged: after step {} ({} epoch(s) finished), {bad}; {} was not written (a file \
                 already there keeps the previous state); lower `lr`?",
                progress.global_step,
                progress.epochs_done,
                self.file(&format!("{tag}.safetensors")).display()
            );
        }
        let model_path = self.file(&format!("{tag}.safetensors"));
        self.claim(&[
            &format!("{tag}.safetensors"),
            &format!("{tag}.optim.safetensors"),
        ])?;
        checkpoint::save(&model_path, state, modalities)?;
        let model_bytes = std::fs::read(&model_path)
            .with_context(|| format!("cannot read back {}", model_path.display()))?;
        let tensors = checkpoint::optimiser_tensors(state, adam);
        let mut meta: HashMap<String, String> = progress.to_metadata().into_iter().collect();
        meta.insert("protokd.adam.step".into(), adam.step.to_string());
        meta.insert("protokd.modalities".into(), modalities.to_string());
        meta.insert(MODEL_SHA256.into(), sha256_hex(&model_bytes));
        meta.insert(RECORD_SHA256.into(), sha256_hex(&self.record_bytes()?));
        meta.insert(
            "protokd.version".into(),
            env!("CARGO_PKG_VERSION").to_string(),
        );
        write_tensors(
            &self.file(&format!("{tag}.optim.safetensors")),
            &tensors,
            Some(meta),
        )?;
        Ok(())
    }

    /// Reads `last.optim.safetensors` for a network of `cfg`, validated: the model as any
    /// checkpoint ([`read_state`]); `exp_avg` finite, `exp_avg_sq` finite and not negative
    /// ([`Rule`]); Adam's step equal to the run's `global_step` and at most 2^53; and the file
    /// this run's ([`RunDir::check_provenance`]).
    pub(crate) fn load_last(&self, cfg: VNetConfig) -> Result<RunState> {
        let path = self.file("last.optim.safetensors");
        if !path.exists() {
            bail!(
                "{}: no saved state to resume from (the run stopped before its first step?)",
                path.display()
            );
        }
        let file = TensorFile::open(&path)?;
        let state = read_state(&file, "model.", cfg)?;
        let meta = file.metadata().unwrap_or_default();
        let progress = Progress::from_metadata(&meta, &path)?;
        let mut adam = AdamState::for_state(&state);
        adam.step = self.adam_step(&meta, &path, &progress)?;
        self.check_provenance(&meta, &path)?;
        read_moments(&file, &state, &mut adam)?;
        Ok(RunState {
            state,
            adam,
            progress,
        })
    }

    /// Adam's step from the metadata of the optimiser file `path`: a count, at most 2^53,
    /// equal to the run's `global_step` (one Adam step per training step).
    fn adam_step(
        &self,
        meta: &HashMap<String, String>,
        path: &Path,
        progress: &Progress,
    ) -> Result<u64> {
        let key = "protokd.adam.step";
        let v = meta
            .get(key)
            .ok_or_else(|| anyhow!("{}: metadata `{key}` is missing", path.display()))?;
        let step: u64 = v.parse().map_err(|_| {
            anyhow!(
                "{}: metadata `{key}` = `{v}` is not a count",
                path.display()
            )
        })?;
        if step > checkpoint::MAX_ADAM_STEP {
            bail!(
                "{}: metadata `{key}` = {step} is above 2^53 (the most steps Adam counts exactly)",
                path.display()
            );
        }
        if step != progress.global_step {
            bail!(
                "{}: metadata `{key}` = {step} but `protokd.run.global_step` = {}; Adam takes \
                 one step per training step",
                path.display(),
                progress.global_step
            );
        }
        Ok(step)
    }

    /// The bytes of `config.json`.
    fn record_bytes(&self) -> Result<Vec<u8>> {
        let path = self.file(CONFIG);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// Checks that the optimiser file `path` belongs to this run: its recorded
    /// `protokd.run.record_sha256` must be the hash of `config.json` (else it is another run's
    /// file: refused, both files named). Its recorded `protokd.model.sha256` is compared with
    /// the hash of `last.safetensors`: they differ after an interruption between the two writes
    /// of a save (`last.safetensors` is written first), which must still resume (the state is
    /// read from the optimiser file alone, and the next save rewrites both), so a mismatch is
    /// a warning on standard error naming both files. A file without the records (from an
    /// earlier protokd) is accepted with a warning.
    fn check_provenance(&self, meta: &HashMap<String, String>, path: &Path) -> Result<()> {
        let (model, record) = (self.file("last.safetensors"), self.file(CONFIG));
        let (Some(want_model), Some(want_record)) =
            (meta.get(MODEL_SHA256), meta.get(RECORD_SHA256))
        else {
            eprintln!(
                "warning: {} does not record `{MODEL_SHA256}` and `{RECORD_SHA256}` (written by \
                 an earlier protokd); that it belongs to this run ({}, {}) is not checked",
                path.display(),
                record.display(),
                model.display()
            );
            return Ok(());
        };
        let actual = sha256_hex(&self.record_bytes()?);
        if actual != *want_record {
            bail!(
                "{} belongs to a run whose {CONFIG} has sha256 {want_record}, but {} has sha256 \
                 {actual}: the optimiser state is another run's",
                path.display(),
                record.display()
            );
        }
        let actual = std::fs::read(&model).map(|b| sha256_hex(&b));
        if actual.as_ref().ok() != Some(want_model) {
            eprintln!(
                "warning: {} was saved with a model of sha256 {want_model}, but {} {}: an \
                 interrupted save? resuming from the optimiser file's own model (the next save \
                 rewrites both)",
                path.display(),
                model.display(),
                match actual {
                    Ok(h) => format!("has sha256 {h}"),
                    Err(e) => format!("cannot be read ({e})"),
                }
            );
        }
        Ok(())
    }
}

/// Reads Adam's moments `adam.exp_avg.<name>` and `adam.exp_avg_sq.<name>` of every parameter of
/// `state` from an optimiser file into `adam`: f32 of the parameter's shape, within their
/// [`Rule`].
fn read_moments(file: &TensorFile, state: &VNetState, adam: &mut AdamState) -> Result<()> {
    let path = file.path();
    for (i, (name, t)) in state.parameters().enumerate() {
        for (prefix, slot, rule) in [
            ("adam.exp_avg.", &mut adam.exp_avg[i], Rule::Moment),
            (
                "adam.exp_avg_sq.",
                &mut adam.exp_avg_sq[i],
                Rule::SquaredMoment,
            ),
        ] {
            let m = file.f32(&format!("{prefix}{name}"))?;
            if m.shape != t.shape {
                bail!(
                    "{}: tensor `{prefix}{name}` has shape {:?}, expected {:?}",
                    path.display(),
                    m.shape,
                    t.shape
                );
            }
            if let Err(e) = check_values(&format!("{prefix}{name}"), &m, rule) {
                bail!("{}: {e}", path.display());
            }
            *slot = m;
        }
    }
    Ok(())
}

/// The step and validation records of a run, kept in memory and appended to `metrics.jsonl`
/// one line at a time.
pub(crate) struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
    /// Every record so far.
    pub records: Vec<Value>,
}

impl MetricsLog {
    /// Starts `metrics.jsonl` afresh.
    pub fn create(run: &RunDir) -> Result<MetricsLog> {
        let path = run.file(METRICS);
        run.claim(&[METRICS])?;
        write_atomic(&path, b"")?;
        Self::open_append(path, Vec::new())
    }

    /// Reopens the log of a run resumed at `p`: keeps the step records up to
    /// `p.global_step` and the validation records of the epochs before `p.epochs_done` (what
    /// an uninterrupted run would hold at that point; later lines were written after the
    /// saved state and will be written again), rewriting the file atomically. Kept lines are
    /// written back as they were read (re-serialising a parsed f64 can change its last digit).
    pub fn resume(run: &RunDir, p: &Progress) -> Result<MetricsLog> {
        let path = run.file(METRICS);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow!("{}: cannot read ({e})", path.display()))?;
        let mut records = Vec::new();
        let mut kept = String::new();
        for line in text.lines() {
            // A line cut by a crash is not JSON: it lies after the saved state, drop it.
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let keep = match v["kind"].as_str() {
                Some("step") => v["step"].as_u64().is_some_and(|s| s <= p.global_step),
                Some("val") => v["epoch"].as_u64().is_some_and(|e| e < p.epochs_done),
                _ => false,
            };
            if keep {
                records.push(v);
                kept.push_str(line);
                kept.push('\n');
            }
        }
        write_atomic(&path, kept.as_bytes())?;
        Self::open_append(path, records)
    }

    fn open_append(path: PathBuf, records: Vec<Value>) -> Result<MetricsLog> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| anyhow!("{}: cannot open for appending ({e})", path.display()))?;
        Ok(MetricsLog {
            file,
            path,
            records,
        })
    }

    /// Appends one record (one line, written in one call).
    pub fn push(&mut self, record: Value) -> Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| anyhow!("{}: cannot write ({e})", self.path.display()))?;
        self.records.push(record);
        Ok(())
    }
}
