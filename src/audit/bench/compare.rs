//! `protokd bench --engines spec,cpu,cuda`: the same work ([`Work`]) on each engine asked for,
//! one after the other in this process, as a side-by-side table ([`markdown`]) and a bar chart
//! ([`svg`]).
//!
//! An engine that cannot be opened on this machine (`cuda` without a driver, NVRTC or device)
//! is listed as not available, with the reason, and the others still run; asking only for
//! engines that are not available is an error. Any other failure (bad settings, a `--simd` copy
//! this CPU cannot run) stops the comparison. Each engine's row gives its result hash
//! ([`super::run`]'s `result_sha256`): every engine computes the same bits, so the hashes of a
//! comparison must all be equal (`same_result` in the record).
//!
//! Peak memory is not compared: the engines run in one process, whose high-water mark only
//! grows (each record's `peak_rss_bytes` is the process's so far).

use super::{run, Peak, Work};
use crate::engine::EngineKind;
use crate::report::plot::register_bundled_font;
use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{json, Value};

/// What happened on one engine: its record, or why it is not available.
pub enum Outcome {
    /// The engine ran the work: its record ([`run`]).
    Ran(Value),
    /// The engine could not be opened here: why.
    Unavailable(String),
}

/// Runs `work` on every engine of `kinds` in order (the fast CPU engine on `simd` if given);
/// see the module docs for engines that are not available.
pub fn run_engines(
    kinds: &[EngineKind],
    simd: Option<&str>,
    work: &Work,
    peak: &Peak,
) -> Result<Vec<(EngineKind, Outcome)>> {
    if simd.is_some() && !kinds.contains(&EngineKind::Cpu) {
        bail!("--simd names a copy of the fast CPU engine, but --engines does not list cpu");
    }
    let mut out = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let opened = match kind {
            EngineKind::Cpu => kind.open_with_simd(simd)?,
            EngineKind::Cuda => match kind.open() {
                Ok(c) => c,
                Err(e) => {
                    out.push((kind, Outcome::Unavailable(format!("{e:#}"))));
                    continue;
                }
            },
            _ => kind.open()?,
        };
        out.push((kind, Outcome::Ran(run(work, &opened, peak)?)));
    }
    if out
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Unavailable(_)))
    {
        let why: Vec<String> = out
            .iter()
            .filter_map(|(k, o)| match o {
                Outcome::Unavailable(why) => Some(format!("{}: {why}", k.name())),
                Outcome::Ran(_) => None,
            })
            .collect();
        bail!(
            "no engine of --engines is available here ({})",
            why.join("; ")
        );
    }
    Ok(out)
}

/// The records that ran.
fn ran(outcomes: &[(EngineKind, Outcome)]) -> impl Iterator<Item = &Value> {
    outcomes.iter().filter_map(|(_, o)| match o {
        Outcome::Ran(r) => Some(r),
        Outcome::Unavailable(_) => None,
    })
}

/// Whether every engine that ran gave the same result hash.
pub fn same_result(outcomes: &[(EngineKind, Outcome)]) -> bool {
    let mut hashes = ran(outcomes).map(|r| &r["result_sha256"]);
    let first = hashes.next();
    hashes.all(|h| Some(h) == first)
}

/// The comparison's JSON record: the work, the machine, one entry per engine (its record, or
/// `available: false` and the reason) and `same_result`.
pub fn record(outcomes: &[(EngineKind, Outcome)], peak: &Peak) -> Value {
    let engines: Vec<Value> = outcomes
        .iter()
        .map(|(k, o)| match o {
            Outcome::Ran(r) => json!({"engine": k.name(), "available": true, "record": r}),
            Outcome::Unavailable(why) => {
                json!({"engine": k.name(), "available": false, "reason": why})
            }
        })
        .collect();
    json!({
        "machine": peak.record,
        "engines": engines,
        "same_result": same_result(outcomes),
    })
}

/// The side-by-side table in Markdown: one row per engine (time, GFLOP/s, fraction of the
/// machine's FMA peak, result hash), a row `not available: <why>` for the others.
pub fn markdown(outcomes: &[(EngineKind, Outcome)]) -> String {
    let mut t = String::from(
        "| engine | runs on | median s | min s | max s | GFLOP/s | of FMA peak | result SHA-256 |\n\
         |---|---|---:|---:|---:|---:|---:|---|\n",
    );
    for (k, o) in outcomes {
        t += &match o {
            Outcome::Ran(r) => format!(
                "| {} | {} | {:.4} | {:.4} | {:.4} | {:.2} | {} | `{}` |\n",
                k.name(),
                r["device_description"].as_str().unwrap_or(""),
                r["median_s"].as_f64().unwrap_or(f64::NAN),
                r["min_s"].as_f64().unwrap_or(f64::NAN),
                r["max_s"].as_f64().unwrap_or(f64::NAN),
                r["gflops_per_s"].as_f64().unwrap_or(f64::NAN),
                r["fraction_of_peak"]
                    .as_f64()
                    .map_or("-".into(), |f| format!("{:.1}%", f * 100.0)),
                r["result_sha256"].as_str().unwrap_or(""),
            ),
            Outcome::Unavailable(why) => format!(
                "| {} | not available: {} | | | | | | |\n",
                k.name(),
                why.replace('|', "/").replace('\n', " ")
            ),
        };
    }
    t
}

/// Picture size in pixels (SVG user units).
const SIZE: (u32, u32) = (900, 420);

/// The bar chart of the comparison: one horizontal bar per engine that ran, its median time on
/// a log axis (the spec engine is orders of magnitude slower than the others), labelled with the
/// time and the GFLOP/s; engines that are not available are named below the bars. `title`
/// heads it (the work and the machine).
pub fn svg(outcomes: &[(EngineKind, Outcome)], title: &str) -> Result<String> {
    register_bundled_font()?;
    let bars: Vec<(&str, f64, f64)> = outcomes
        .iter()
        .filter_map(|(k, o)| match o {
            Outcome::Ran(r) => Some((
                k.name(),
                r["median_s"].as_f64().unwrap_or(f64::NAN),
                r["gflops_per_s"].as_f64().unwrap_or(f64::NAN),
            )),
            Outcome::Unavailable(_) => None,
        })
        .collect();
    let lo = bars.iter().map(|b| b.1).fold(f64::INFINITY, f64::min);
    let hi = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    if !(lo.is_finite() && lo > 0.0 && hi.is_finite()) {
        bail!("the chart needs a positive time for every engine that ran");
    }
    let (x0, x1) = (lo / 3.0, hi * 10.0);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(90)
            .build_cartesian_2d((x0..x1).log_scale(), 0.0..bars.len() as f64)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("median seconds per run (log scale)")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        let colours = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
        ];
        for (i, &(name, secs, gflops)) in bars.iter().enumerate() {
            let y = (bars.len() - 1 - i) as f64;
            let colour = colours[i % colours.len()];
            chart
                .draw_series([Rectangle::new(
                    [(x0, y + 0.2), (secs, y + 0.8)],
                    colour.filled(),
                )])
                .map_err(|e| anyhow!("{e}"))?;
            let label = ("sans-serif", 14).into_font().color(&BLACK);
            chart
                .draw_series([Text::new(
                    format!(" {secs:.3} s, {gflops:.1} GFLOP/s"),
                    (secs, y + 0.5),
                    label.pos(Pos::new(HPos::Left, VPos::Center)),
                )])
                .map_err(|e| anyhow!("{e}"))?;
            chart
                .draw_series([Text::new(
                    format!("{name} "),
                    (x0, y + 0.5),
                    label.pos(Pos::new(HPos::Right, VPos::Center)),
                )])
                .map_err(|e| anyhow!("{e}"))?;
        }
        let missing: Vec<&str> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Unavailable(_)))
            .map(|(k, _)| k.name())
            .collect();
        if !missing.is_empty() {
            root.draw(&Text::new(
                format!("not available here: {}", missing.join(", ")),
                (15, SIZE.1 as i32 - 18),
                ("sans-serif", 13).into_font(),
            ))
            .map_err(|e| anyhow!("{e}"))?;
        }
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(out)
}
