//! `protokd bench`: a VNet forward or a whole ProtoKD step timed on seeded inputs.

use super::engine::EngineArg;
use anyhow::Result;
use clap::Args;
use protokd::audit::bench::{parse_shape, What};
use protokd::io::files::{check_new, write_json};
use serde_json::Value;
use std::path::PathBuf;

/// Arguments of `protokd bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// What to time.
    #[arg(long, value_enum)]
    what: What,
    /// Input shape N,C,D,H,W (C = 4 for a step; D, H, W multiples of 16).
    #[arg(long, default_value = "1,4,96,128,128", value_name = "N,C,D,H,W")]
    shape: String,
    /// VNet width.
    #[arg(long, default_value_t = 16, value_name = "F")]
    filters: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 1, value_name = "W")]
    warmup: usize,
    /// Timed runs after the warm-up.
    #[arg(long, default_value_t = 3, value_name = "R")]
    repeat: usize,
    /// Also write the record as JSON (refused if it exists, unless --force).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Replace an existing --json file.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    engine: EngineArg,
}

/// `protokd bench`: runs, prints one line, writes the JSON record (if asked).
pub fn run(b: BenchArgs) -> Result<()> {
    let shape = parse_shape(&b.shape)?;
    if let Some(path) = &b.json {
        check_new(path, "JSON output", b.force)?;
    }
    let compute = b.engine.open()?;
    let record =
        protokd::audit::bench::run(b.what, shape, b.filters, (b.warmup, b.repeat), &compute)?;
    let gb = |v: &Value| {
        v.as_f64()
            .map_or("n/a".into(), |x| format!("{:.2} GB", x / 1e9))
    };
    println!(
        "{} {} n_filters {} on {} ({} threads): median {:.3} s, min {:.3} s, max {:.3} s over {} run(s); peak memory {}",
        record["what"].as_str().unwrap_or(""),
        b.shape,
        b.filters,
        record["device_description"].as_str().unwrap_or(""),
        record["threads"],
        record["median_s"].as_f64().unwrap_or(f64::NAN),
        record["min_s"].as_f64().unwrap_or(f64::NAN),
        record["max_s"].as_f64().unwrap_or(f64::NAN),
        b.repeat,
        gb(&record["peak_rss_bytes"])
    );
    if let Some(path) = &b.json {
        write_json(path, &record)?;
    }
    Ok(())
}
