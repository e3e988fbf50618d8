//! Training curves as an SVG picture, drawn from a run's `metrics.jsonl` records, and the font
//! that all of protokd's drawing shares.
//!
//! The picture has a title line and two panels, one above the other:
//!
//! * **Losses against step**: `total`, `seg`, `kd` and `proto` of the step records, one line
//!   each, and the per-epoch mean of `total` as a thicker line with a dot per epoch (at the
//!   mean step of the epoch). A series whose plotted values are all zero (`kd` and `proto` of a
//!   teacher or baseline run) is not drawn, and the panel's caption says so. The y axis is
//!   logarithmic when every drawn value is above zero and the largest is at least 10 times the
//!   smallest (a decade or more), else linear.
//! * **Validation Dice against epoch**: `wt`, `tc`, `et` and `mean` of the validation records,
//!   y from 0 to 1, a dot per record. Without validation records the panel says "no
//!   validation yet".
//!
//! Records are read leniently, because a picture of a run that is still going (or that was
//! cut short) should still be drawn: a record whose `kind` is neither `"step"` nor `"val"`, or
//! that lacks a numeric `step` (step records) or `epoch` (validation records), is skipped; a
//! value that is missing, not a number, NaN or infinite skips that one point of that series;
//! so does a Dice value outside 0..1.
//!
//! Long runs are thinned so that the file stays small: a loss series with more than
//! [`MAX_POINTS`] points is cut, in step order, into runs of `ceil(n / MAX_POINTS)` consecutive
//! points (the last run may be shorter), and each run is drawn as one point at the mean of its
//! steps and the mean of its values.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// DejaVu Sans 2.37 (Bitstream Vera licence, `data/fonts/LICENSE-DejaVu.txt`), bundled so that
/// drawing text needs no system fonts.
const DEJAVU_SANS: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");

/// Registers the bundled DejaVu Sans as plotters' `sans-serif` font (once per process).
/// plotters' `ab_glyph` text needs it for every text it lays out, in SVG and bitmap pictures.
pub(crate) fn register_bundled_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if !ok {
        bail!("the bundled font data/fonts/DejaVuSans.ttf could not be read");
    }
    Ok(())
}

/// At most this many points per loss series (see the module docs for how longer series are
/// thinned).
pub(crate) const MAX_POINTS: usize = 2000;

/// Picture size in pixels (SVG user units).
const SIZE: (u32, u32) = (1000, 800);

/// Loss series of the step records: (JSON field, colour).
const LOSSES: [(&str, RGBColor); 4] = [
    ("total", RGBColor(31, 119, 180)),
    ("seg", RGBColor(255, 127, 14)),
    ("kd", RGBColor(44, 160, 44)),
    ("proto", RGBColor(214, 39, 40)),
];

/// Colour of the per-epoch mean of `total`.
const EPOCH_MEAN: RGBColor = RGBColor(8, 48, 107);

/// Dice series of the validation records: (JSON field, legend name, colour).
const DICE: [(&str, &str, RGBColor); 4] = [
    ("wt", "WT", RGBColor(31, 119, 180)),
    ("tc", "TC", RGBColor(255, 127, 14)),
    ("et", "ET", RGBColor(44, 160, 44)),
    ("mean", "mean", RGBColor(0, 0, 0)),
];

/// Draws the training curves of `records` (the parsed lines of a run's `metrics.jsonl`, in
/// file order) with the heading `title`, and writes the SVG to `path` atomically (temporary
/// file, then rename). The rules (panels, skipped records and points, thinning) are in the
/// module docs. Zero records give a picture whose panels say that there is nothing yet.
pub(crate) fn write_training_plot(records: &[Value], path: &Path, title: &str) -> Result<()> {
    let svg = render_training_svg(records, title)
        .with_context(|| format!("cannot draw the training plot {}", path.display()))?;
    crate::io::files::write_atomic(path, svg.as_bytes())
        .with_context(|| format!("cannot write the training plot {}", path.display()))
}

/// One plotted line: (x, y) points in x order.
type Points = Vec<(f64, f64)>;

/// Field `key` of `record` as a finite number.
fn finite(record: &Value, key: &str) -> Option<f64> {
    record.get(key)?.as_f64().filter(|v| v.is_finite())
}

/// The records of `kind` that have a finite `x_key`, in file order.
fn records_of<'a>(records: &'a [Value], kind: &str, x_key: &str) -> Vec<(f64, &'a Value)> {
    records
        .iter()
        .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .filter_map(|r| finite(r, x_key).map(|x| (x, r)))
        .collect()
}

/// Thins `points` to at most [`MAX_POINTS`] by averaging runs of consecutive points.
fn downsample(points: Points) -> Points {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let run = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(run)
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / n,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

/// A value range with room around it; a single value gets a range around it.
fn padded(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if log {
        if hi > lo {
            let f = (hi / lo).powf(0.05);
            (lo / f, hi * f)
        } else {
            (lo / 2.0, hi * 2.0)
        }
    } else if hi > lo {
        let m = (hi - lo) * 0.05;
        (lo - m, hi + m)
    } else {
        (lo - lo.abs().max(1.0) * 0.5, hi + hi.abs().max(1.0) * 0.5)
    }
}

/// Smallest and largest value of the `y` (or `x`) coordinates of `series`.
fn extent<'a>(series: impl Iterator<Item = &'a Points>, y: bool) -> Option<(f64, f64)> {
    series
        .flatten()
        .map(|p| if y { p.1 } else { p.0 })
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// What the loss panel draws.
struct LossPanel {
    /// (name, colour, points) of the drawn series.
    series: Vec<(&'static str, RGBColor, Points)>,
    /// Per-epoch mean of `total`: (mean step, mean total) per epoch, in epoch order.
    epoch_mean: Points,
    /// Names of the series left out because all their values are zero.
    all_zero: Vec<&'static str>,
}

fn loss_panel(records: &[Value]) -> LossPanel {
    let mut steps = records_of(records, "step", "step");
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut series = Vec::new();
    let mut all_zero = Vec::new();
    for (key, colour) in LOSSES {
        let points: Points = steps
            .iter()
            .filter_map(|(s, r)| finite(r, key).map(|v| (*s, v)))
            .collect();
        if points.is_empty() {
            continue;
        }
        if points.iter().all(|p| p.1 == 0.0) {
            all_zero.push(key);
            continue;
        }
        series.push((key, colour, downsample(points)));
    }
    // Per epoch (records without a finite epoch are left out of the means).
    let mut epochs: BTreeMap<i64, (f64, f64, f64)> = BTreeMap::new();
    for (s, r) in &steps {
        if let (Some(e), Some(t)) = (finite(r, "epoch"), finite(r, "total")) {
            let acc = epochs.entry(e as i64).or_insert((0.0, 0.0, 0.0));
            acc.0 += s;
            acc.1 += t;
            acc.2 += 1.0;
        }
    }
    let epoch_mean = epochs.values().map(|(s, t, n)| (s / n, t / n)).collect();
    LossPanel {
        series,
        epoch_mean,
        all_zero,
    }
}

/// Dice series of the validation records: (legend name, colour, (epoch, dice) points).
fn dice_series(records: &[Value]) -> Vec<(&'static str, RGBColor, Points)> {
    let mut vals = records_of(records, "val", "epoch");
    vals.sort_by(|a, b| a.0.total_cmp(&b.0));
    DICE.iter()
        .map(|&(key, name, colour)| {
            let points = vals
                .iter()
                .filter_map(|(e, r)| finite(r, key).map(|v| (*e, v)))
                .filter(|p| (0.0..=1.0).contains(&p.1))
                .collect();
            (name, colour, points)
        })
        .collect()
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Writes `note` in the middle of `area` under `caption`.
fn note(area: &Area, caption: &str, note: &str) -> Result<()> {
    let body = area
        .titled(caption, ("sans-serif", 20))
        .map_err(|e| anyhow!("{e}"))?;
    let (w, h) = body.dim_in_pixel();
    let style = ("sans-serif", 18)
        .into_font()
        .color(&BLACK.mix(0.6))
        .pos(Pos::new(HPos::Center, VPos::Center));
    body.draw(&Text::new(
        note.to_string(),
        (w as i32 / 2, h as i32 / 2),
        style,
    ))
    .map_err(|e| anyhow!("{e}"))
}

/// Tick label: whole numbers without a fraction, others with two decimals.
fn tick(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws a chart's mesh with its axis names, then its line series and the legend; shared by
/// the linear and log loss charts and the Dice chart.
fn draw_chart<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    (x_desc, y_desc): (&str, &str),
    lines: &[(&str, RGBColor, u32, &Points)],
    legend_at: SeriesLabelPosition,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_label_formatter(&tick)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for &(name, colour, width, points) in lines {
        let style = colour.stroke_width(width);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(|e| anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        // Dots where a line alone would show nothing (one point) or where there are few
        // points (epoch means, validation).
        if points.len() == 1 || width > 1 {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| Circle::new(p, width + 2, colour.filled())),
                )
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow!("{e}"))
}

/// Draws the loss panel into `area`.
fn draw_loss_panel(area: &Area, panel: &LossPanel) -> Result<()> {
    let mut caption = "Training losses".to_string();
    if !panel.all_zero.is_empty() {
        caption += &format!(" ({}: all zero, not drawn)", panel.all_zero.join(", "));
    }
    let mut lines: Vec<(&str, RGBColor, u32, &Points)> = panel
        .series
        .iter()
        .map(|(n, c, p)| (*n, *c, 1, p))
        .collect();
    if !panel.epoch_mean.is_empty() && !panel.series.is_empty() {
        lines.push(("total (epoch mean)", EPOCH_MEAN, 3, &panel.epoch_mean));
    }
    let all = || lines.iter().map(|l| l.3);
    let (Some((x0, x1)), Some((y0, y1))) = (extent(all(), false), extent(all(), true)) else {
        return note(area, &caption, "no training steps yet");
    };
    let (x0, x1) = padded(x0, x1, false);
    let log = y0 > 0.0 && y1 >= 10.0 * y0;
    let (y0, y1) = padded(y0, y1, log);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(70);
    let x_desc = "step";
    let y_desc = if log { "loss (log scale)" } else { "loss" };
    let descs = (x_desc, y_desc);
    if log {
        let mut chart = builder
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(|e| anyhow!("{e}"))?;
        draw_chart(&mut chart, descs, &lines, SeriesLabelPosition::UpperRight)
    } else {
        let mut chart = builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("{e}"))?;
        draw_chart(&mut chart, descs, &lines, SeriesLabelPosition::UpperRight)
    }
}

/// Draws the validation panel into `area`.
fn draw_dice_panel(area: &Area, series: &[(&'static str, RGBColor, Points)]) -> Result<()> {
    let caption = "Validation Dice";
    let Some((x0, x1)) = extent(series.iter().map(|s| &s.2), false) else {
        return note(area, caption, "no validation yet");
    };
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 0.5, x1 + 0.5)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0.0..1.0)
        .map_err(|e| anyhow!("{e}"))?;
    let lines: Vec<(&str, RGBColor, u32, &Points)> = series
        .iter()
        .filter(|s| !s.2.is_empty())
        .map(|(n, c, p)| (*n, *c, if *n == "mean" { 3 } else { 2 }, p))
        .collect();
    draw_chart(
        &mut chart,
        ("epoch", "Dice"),
        &lines,
        SeriesLabelPosition::LowerRight,
    )
}

/// The SVG text of the training plot.
fn render_training_svg(records: &[Value], title: &str) -> Result<String> {
    register_bundled_font()?;
    let losses = loss_panel(records);
    let dice = dice_series(records);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let body = root
            .titled(title, ("sans-serif", 24))
            .map_err(|e| anyhow!("{e}"))?;
        let (top, bottom) = body.split_vertically(SIZE.1 / 2);
        draw_loss_panel(&top, &losses)?;
        draw_dice_panel(&bottom, &dice)?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(svg)
}

// Verifies (every test in this file): R-WFL-1
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(s: u64, total: f64, kd: f64, proto: f64) -> Value {
        json!({"kind": "step", "epoch": (s - 1) / 10, "step": s, "total": total, "seg": total * 0.8,
               "dice": total * 0.5, "ce": total * 0.3, "kd": kd, "proto": proto, "lr": 1e-3})
    }

    fn val(e: u64, d: f64) -> Value {
        json!({"kind": "val", "epoch": e, "step": (e + 1) * 10, "wt": d, "tc": d * 0.9,
               "et": d * 0.8, "mean": d * 0.9})
    }

    /// The contents of the SVG's text elements.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
            .collect()
    }

    fn has_text(svg: &str, text: &str) -> bool {
        texts(svg).contains(&text)
    }

    fn student_run(steps: u64) -> Vec<Value> {
        let mut r: Vec<Value> = (1..=steps)
            .map(|s| step(s, 2.0 / (s as f64).sqrt(), 0.1, 0.01))
            .collect();
        r.extend((0..steps / 10).map(|e| val(e, 0.5 + e as f64 * 0.01)));
        r
    }

    #[test]
    fn svg_has_panels_and_legend() {
        let svg = render_training_svg(&student_run(50), "student run").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for name in [
            "student run",
            "total",
            "seg",
            "kd",
            "proto",
            "total (epoch mean)",
            "WT",
            "TC",
            "ET",
            "mean",
            "Validation Dice",
            "loss (log scale)",
        ] {
            assert!(has_text(&svg, name), "no {name} in {:?}", texts(&svg));
        }
    }

    #[test]
    fn baseline_run_omits_all_zero_series() {
        let records: Vec<Value> = (1..=30).map(|s| step(s, 1.0, 0.0, 0.0)).collect();
        let svg = render_training_svg(&records, "baseline").unwrap();
        assert!(has_text(
            &svg,
            "Training losses (kd, proto: all zero, not drawn)"
        ));
        assert!(!has_text(&svg, "kd") && !has_text(&svg, "proto"));
        assert!(has_text(&svg, "total") && has_text(&svg, "no validation yet"));
    }

    #[test]
    fn zero_and_one_records() {
        let svg = render_training_svg(&[], "empty").unwrap();
        assert!(has_text(&svg, "no training steps yet") && has_text(&svg, "no validation yet"));
        let svg = render_training_svg(&[step(1, 1.5, 0.2, 0.1)], "one").unwrap();
        assert!(has_text(&svg, "total") && svg.contains("<circle"));
        let svg = render_training_svg(&[val(0, 0.7)], "one val").unwrap();
        assert!(has_text(&svg, "WT") && has_text(&svg, "no training steps yet"));
    }

    #[test]
    fn non_finite_and_malformed_values_are_skipped() {
        let mut records = student_run(20);
        records.push(step(21, f64::NAN, 0.1, 0.1)); // serde_json turns NaN into null
        records.push(json!({"kind": "step", "step": 22, "total": "x", "seg": f64::INFINITY}));
        records.push(json!({"kind": "val", "epoch": 3, "wt": 1.5, "tc": -0.1}));
        records.push(json!({"kind": "other"}));
        records.push(json!("not an object"));
        let lp = loss_panel(&records);
        let total = &lp.series[0];
        assert_eq!(total.0, "total");
        assert_eq!(total.2.len(), 20);
        assert!(lp.series.iter().flat_map(|s| &s.2).all(|p| p.1.is_finite()));
        assert_eq!(dice_series(&records)[0].2.len(), 2);
        render_training_svg(&records, "odd").unwrap();
    }

    #[test]
    fn long_runs_are_thinned() {
        let pts: Points = (0..5001).map(|i| (i as f64, (i % 2) as f64)).collect();
        let d = downsample(pts);
        // ceil(5001 / 2000) = 3 points per run: 1667 runs, the last of 3.
        assert_eq!(d.len(), 1667);
        assert_eq!(d[0], (1.0, 1.0 / 3.0));
        assert_eq!(d[1666], (4999.0, 1.0 / 3.0));
        let svg = render_training_svg(&student_run(6000), "long").unwrap();
        assert!(svg.len() < 2_000_000, "{} bytes", svg.len());
    }

    // Verifies: R-CLI-2
    #[test]
    fn writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.svg");
        write_training_plot(&student_run(30), &path, "run").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<svg"));
        let bad = dir.path().join("missing").join("curves.svg");
        let err = format!("{:#}", write_training_plot(&[], &bad, "run").unwrap_err());
        assert!(err.contains(&bad.display().to_string()), "{err}");
    }
}
