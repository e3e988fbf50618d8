//! How a run folder is opened: a fresh run (a new or `--force`d folder, its record, its split
//! lists, a seeded network) or a resumed one (the recorded run checked against this one, the
//! state of `last.optim.safetensors`, the metrics so far).

use super::run::{self, MetricsLog, Progress, RunDir, RunRecord};
use super::TrainArgs;
use crate::data::split::{self, Split};
use anyhow::{anyhow, bail, Result};
use protokd_reference::adam::AdamState;
use protokd_reference::state::{VNetConfig, VNetState};
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

/// What a run starts from.
pub(super) struct Opened {
    /// The model.
    pub(super) state: VNetState,
    /// The optimiser.
    pub(super) adam: AdamState,
    /// Where the run stands.
    pub(super) progress: Progress,
    /// The metrics so far.
    pub(super) log: MetricsLog,
}

/// Opens `run` for a network of `net`. Resuming: reads `config.json` and refuses a run
/// recorded with another configuration than `record`, then reads `last.optim.safetensors` and
/// keeps the metrics up to its progress. Starting: prepares the folder ([`fresh_run_dir`]),
/// writes `config.json` and the split lists, and initialises the network from `init_seed`
/// with a zero Adam state and an empty `metrics.jsonl`.
pub(super) fn open(
    run: &RunDir,
    args: &TrainArgs,
    record: &RunRecord,
    net: VNetConfig,
) -> Result<Opened> {
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
        let r = run.load_last(net)?;
        let log = MetricsLog::resume(run, &r.progress)?;
        Ok(Opened {
            state: r.state,
            adam: r.adam,
            progress: r.progress,
            log,
        })
    } else {
        fresh_run_dir(args.out, args.force)?;
        run.write_record(record)?;
        write_split_lists(run, &record.split)?;
        let state = VNetState::init(net, args.config.init_seed);
        let adam = AdamState::for_state(&state);
        Ok(Opened {
            state,
            adam,
            progress: Progress::START,
            log: MetricsLog::create(run)?,
        })
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
