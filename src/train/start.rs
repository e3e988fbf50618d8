//! How a run folder is opened: a fresh run (a new or `--force`d folder, its record, its split
//! lists, a seeded network) or a resumed one (the recorded run checked against this one, the
//! state of `last.optim.safetensors`, the metrics so far).

use super::run::{self, MetricsLog, RunDir, RunRecord, RunState};
use super::TrainArgs;
use crate::data::split::{self, Split};
use anyhow::{anyhow, bail, Result};
use protokd_reference::state::VNetConfig;
use std::path::Path;

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

/// Opens `run` for a network of `net`; returns the state the run starts from and its metrics
/// so far. Resuming: reads `config.json` and refuses a run recorded with another
/// configuration than `record`, then reads `last.optim.safetensors` and keeps the metrics up
/// to its progress. Starting: prepares the folder ([`fresh_run_dir`]), writes `config.json`
/// and the split lists, and starts the state ([`RunState::fresh`]) and an empty
/// `metrics.jsonl`.
pub(super) fn open(
    run: &RunDir,
    args: &TrainArgs,
    record: &RunRecord,
    net: VNetConfig,
) -> Result<(RunState, MetricsLog)> {
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
        let last = run.load_last(net)?;
        let log = MetricsLog::resume(run, &last.progress)?;
        Ok((last, log))
    } else {
        fresh_run_dir(args.out, args.force)?;
        run.write_record(record)?;
        write_split_lists(run, &record.split)?;
        let fresh = RunState::fresh(net, args.config.init_seed);
        Ok((fresh, MetricsLog::create(run)?))
    }
}

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
