//! `protokd bench`: a VNet forward or a whole ProtoKD step timed on seeded inputs, on one
//! engine (`--engine`) or side by side on several (`--engines`), with the machine's FMA peak
//! and, on host engines, where the time went.

use super::engine::EngineArg;
use anyhow::{bail, Context, Result};
use clap::Args;
use protokd::audit::bench::compare::{self, Outcome};
use protokd::audit::bench::{breakdown, parse_shape, Peak, What, Work};
use protokd::engine::EngineKind;
use protokd::io::files::{check_new, write_atomic, write_json};
use protokd_cpu::Isa;
use serde_json::Value;
use std::path::PathBuf;

/// Arguments of `protokd bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// What to time.
    #[arg(long, value_enum)]
    what: What,
    /// Input shape N,C,D,H,W (C = 4 for a step; D, H, W multiples of 16). The same for every
    /// engine of --engines (the spec engine takes minutes per run at the default shape).
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
    /// Run the same work on each of these engines, one after the other (any of spec, cpu,
    /// cuda, emulated); cuda where it cannot be opened is listed as not available. Instead of
    /// --engine.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        conflicts_with = "kind",
        value_name = "E,E"
    )]
    engines: Vec<EngineKind>,
    /// Also write the record as JSON (refused if it exists, unless --force).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Also write the side-by-side table as Markdown (refused if it exists, unless --force).
    #[arg(long, value_name = "OUT.md")]
    table: Option<PathBuf>,
    /// Also draw the engines' times as an SVG bar chart (refused if it exists, unless
    /// --force).
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    engine: EngineArg,
}

/// Above this many FLOPs per run, asking for the spec engine prints how long it may take.
const SPEC_WARNING_FLOPS: u64 = 20_000_000_000;

/// `protokd bench`: checks the settings and the outputs, measures the machine's peak, runs the
/// work on each engine, prints each record (time, GFLOP/s, fraction of the peak, breakdown) and
/// the side-by-side table, then writes the files asked for.
pub fn run(b: BenchArgs) -> Result<()> {
    let work = Work {
        what: b.what,
        shape: parse_shape(&b.shape)?,
        filters: b.filters,
        warmup: b.warmup,
        repeat: b.repeat,
    };
    work.check()?;
    let outputs = [
        (&b.json, "JSON output"),
        (&b.table, "table output"),
        (&b.svg, "SVG output"),
    ];
    for (i, (path, what)) in outputs.iter().enumerate() {
        let Some(p) = path else { continue };
        if let Some((_, other)) = outputs[..i].iter().find(|(q, _)| q.as_ref() == Some(p)) {
            bail!(
                "{what} {} is also the {other}: give each output its own file",
                p.display()
            );
        }
        check_new(p, what, b.force)?;
    }
    let simd = b.engine.simd.as_deref();
    let kinds = match b.engines.is_empty() {
        true => vec![b.engine.kind],
        false => b.engines.clone(),
    };
    if kinds.contains(&EngineKind::Spec) && work.flops() > SPEC_WARNING_FLOPS {
        eprintln!(
            "note: the spec engine runs plain loops at a few GFLOP/s; {:.0} GFLOP per run takes \
             minutes (--shape 1,4,32,32,32 --filters 4 compares in seconds)",
            work.flops() as f64 / 1e9
        );
    }
    // An unknown copy is refused when the engine is opened.
    let isa = simd.and_then(Isa::parse);
    let outcomes = if b.engines.is_empty() {
        let compute = b.engine.open()?;
        let peak = Peak::measure(isa);
        let record = protokd::audit::bench::run(&work, &compute, &peak)?;
        (vec![(b.engine.kind, Outcome::Ran(record))], peak)
    } else {
        let peak = Peak::measure(isa);
        (compare::run_engines(&kinds, simd, &work, &peak)?, peak)
    };
    let (outcomes, peak) = outcomes;
    print_machine(&peak.record);
    for (_, o) in &outcomes {
        if let Outcome::Ran(r) = o {
            print_record(r, &b.shape, b.filters);
        }
    }
    if outcomes.len() > 1 {
        println!("\n{}", compare::markdown(&outcomes));
        if !compare::same_result(&outcomes) {
            eprintln!(
                "warning: the engines' result hashes differ (they should give the same bits)"
            );
        }
    }
    if let Some(path) = &b.json {
        match (&outcomes[..], b.engines.is_empty()) {
            ([(_, Outcome::Ran(r))], true) => write_json(path, r)?,
            _ => write_json(path, &compare::record(&outcomes, &peak))?,
        }
    }
    if let Some(path) = &b.table {
        write_atomic(path, compare::markdown(&outcomes).as_bytes())?;
    }
    if let Some(path) = &b.svg {
        let title = format!(
            "{} {} n_filters {} on {} ({} threads)",
            b.what.name(),
            b.shape,
            b.filters,
            peak.record["cpu_model"].as_str().unwrap_or("unknown CPU"),
            peak.record["threads"]
        );
        let svg = compare::svg(&outcomes, &title)
            .with_context(|| format!("cannot draw the chart {}", path.display()))?;
        write_atomic(path, svg.as_bytes())?;
    }
    Ok(())
}

/// `x` as `n.nn unit` after dividing by `scale`, or `n/a`.
fn opt(v: &Value, scale: f64, unit: &str) -> String {
    v.as_f64()
        .map_or("n/a".into(), |x| format!("{:.2}{unit}", x / scale))
}

/// The CPU, its clock and its measured and nominal FMA peaks.
fn print_machine(m: &Value) {
    println!(
        "CPU {} at {} GHz, {} threads; best SIMD copy {}: measured FMA peak {} GFLOP/s (nominal {} GFLOP/s){}",
        m["cpu_model"].as_str().unwrap_or("unknown"),
        opt(&m["cpu_ghz"], 1.0, ""),
        m["threads"],
        m["best_simd"].as_str().unwrap_or(""),
        opt(&m["measured_peak_gflops_per_s"], 1.0, ""),
        opt(&m["nominal_peak_gflops_per_s"], 1.0, ""),
        match m["engine_simd"].as_str() {
            Some(s) => format!("; {s} copy: {} GFLOP/s", opt(&m["engine_simd_peak_gflops_per_s"], 1.0, "")),
            None => String::new(),
        }
    );
}

/// ` (x% of the measured FMA peak[, y% of its SIMD copy's])` on a host engine, else nothing.
fn peak_fractions(r: &Value) -> String {
    let Some(f) = r["fraction_of_peak"].as_f64() else {
        return String::new();
    };
    let copy = r["fraction_of_simd_peak"]
        .as_f64()
        .map_or(String::new(), |g| {
            format!(", {:.1}% of its SIMD copy's", g * 100.0)
        });
    format!(" ({:.1}% of the measured FMA peak{copy})", f * 100.0)
}

/// One engine's line (times, memory, GFLOP/s, fraction of the peak) and its breakdown.
fn print_record(r: &Value, shape: &str, filters: usize) {
    println!(
        "{} {} n_filters {} on {} ({} threads): median {:.3} s, min {:.3} s, max {:.3} s over {} run(s); peak memory {}; {} GFLOP/s{}",
        r["what"].as_str().unwrap_or(""),
        shape,
        filters,
        r["device_description"].as_str().unwrap_or(""),
        r["threads"],
        r["median_s"].as_f64().unwrap_or(f64::NAN),
        r["min_s"].as_f64().unwrap_or(f64::NAN),
        r["max_s"].as_f64().unwrap_or(f64::NAN),
        r["repeat"],
        opt(&r["peak_rss_bytes"], 1e9, " GB"),
        opt(&r["gflops_per_s"], 1.0, ""),
        peak_fractions(r),
    );
    if !r["breakdown"].is_null() {
        print!("{}", breakdown::table(&r["breakdown"]));
    }
}
