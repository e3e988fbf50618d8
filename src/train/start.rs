//! How a run folder is opened: a fresh run (a new or `--force`d folder, its record, its split
//! lists, a seeded network) or a resumed one (the recorded run checked against this one, the
//! state of `last.optim.safetensors`, the metrics so far).

use super::import;
use super::manifest::{remove_run_files, run_file_names};
use super::run::{MetricsLog, RunDir, RunRecord, RunState};
use super::TrainArgs;
use crate::data::split::{self, Split};
use crate::io::files::{check_not_input, remove_stale_temps};
use anyhow::{anyhow, bail, Result};
use protokd_reference::state::VNetConfig;
use std::path::{Path, PathBuf};

/// The files protokd may write in the run folder `out` ([`run_file_names`]).
fn run_files(out: &Path) -> Vec<PathBuf> {
    run_file_names().iter().map(|name| out.join(name)).collect()
}

/// Refuses a run whose folder, `split/` folder or any file it writes ([`run_files`]) is one of
/// its inputs (the dataset, the split folder or its lists, the teacher), with `--force` too.
fn check_inputs_kept(args: &TrainArgs) -> Result<()> {
    let mut inputs: Vec<(&str, PathBuf)> = vec![("--data", args.data.to_path_buf())];
    if let Some(dir) = args.split_dir {
        inputs.push(("--split-dir", dir.to_path_buf()));
        inputs.extend(
            split::SPLIT_FILES
                .iter()
                .map(|n| ("--split-dir", dir.join(n))),
        );
    }
    inputs.extend(args.teacher.map(|t| ("--teacher", t.to_path_buf())));
    inputs.extend(args.resume_from.map(|t| ("--resume-from", t.to_path_buf())));
    let inputs: Vec<(&str, &Path)> = inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
    check_not_input(args.out, "run folder", &inputs)?;
    check_not_input(&args.out.join("split"), "split folder", &inputs)?;
    for file in run_files(args.out) {
        check_not_input(&file, "run file", &inputs)?;
    }
    Ok(())
}

/// Removes the temporary files `.NAME.tmpPID` that a killed save left in the run folder and in
/// `split/` ([`remove_stale_temps`]: only those of processes no longer running), when a run
/// starts writing there: on a fresh start, and on a resume once the folder's record matches.
fn remove_killed_saves(out: &Path) -> Result<()> {
    for dir in [out.to_path_buf(), out.join("split")] {
        remove_stale_temps(&dir, None)?;
    }
    Ok(())
}

/// Opens `run` for a network of `net` with `steps_per_epoch` steps per epoch; returns the state
/// the run starts from and its metrics so far. Resuming: reads `config.json` and refuses a run
/// recorded with another configuration than `record`, then reads `last.optim.safetensors` and
/// keeps the metrics up to its progress. Starting: the state ([`RunState::fresh`], or with
/// `--resume-from` the checkpoint's, [`import::imported`], recorded in `config.json` as
/// `resumed_from`), then prepares the folder ([`fresh_run_dir`]), writes `config.json` and the
/// split lists, and starts an empty `metrics.jsonl`.
pub(super) fn open(
    run: &RunDir,
    args: &TrainArgs,
    record: &RunRecord,
    net: VNetConfig,
    steps_per_epoch: u64,
) -> Result<(RunState, MetricsLog)> {
    check_inputs_kept(args)?;
    if args.resume {
        let recorded = run.read_record()?;
        let diff = recorded.differences(record);
        if !diff.is_empty() {
            bail!(
                "cannot resume {}: it was started with another configuration:\n  {}",
                run.path.display(),
                diff.join("\n  ")
            );
        }
        remove_killed_saves(args.out)?;
        let last = run.load_last(net)?;
        let log = MetricsLog::resume(run, &last.progress)?;
        Ok((last, log))
    } else {
        let mut record = record.clone();
        let first = match args.resume_from {
            Some(path) => {
                let (state, sha256) = import::imported(path, net, &args.config, steps_per_epoch)?;
                record.resumed_from = Some((path.display().to_string(), sha256));
                state
            }
            None => RunState::fresh(net, args.config.init_seed),
        };
        fresh_run_dir(args.out, args.force)?;
        remove_killed_saves(args.out)?;
        run.write_record(&record)?;
        write_split_lists(run, &record.split)?;
        Ok((first, MetricsLog::create(run)?))
    }
}

/// Prepares the run folder of a fresh run: refuses a non-empty folder unless `force`, then
/// removes the files an earlier run wrote there ([`remove_run_files`]: those its manifest
/// lists, nothing else, no folder; refused when a file with a run file's name is not listed).
/// The caller has loaded and checked every input of the new run before.
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
        if force {
            remove_run_files(out)?;
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow!("run folder {}: cannot create ({e})", out.display()))
}

/// Writes the split's case lists into `run/split/` (so `evaluate --cases` can use them).
fn write_split_lists(run: &RunDir, split: &Split) -> Result<()> {
    let dir = run.file("split");
    let names: Vec<String> = split::SPLIT_FILES
        .iter()
        .map(|n| format!("split/{n}"))
        .collect();
    run.claim(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
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
