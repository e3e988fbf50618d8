//! The CPU-vs-GPU chart: median seconds of a forward and a step per engine, as bars on a
//! logarithmic axis (the spec is some hundred times slower than the fast engines); an engine
//! that is absent (no device) gets no bars and the word "absent".

use crate::report::plot::register_bundled_font;
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// Picture size (SVG user units).
const SIZE: (u32, u32) = (800, 360);
/// Bar colours: forward, step.
const COLOURS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14)];

/// The chart of `rows` (`(engine, Some((forward s, step s)))`, `None` when absent) as SVG text.
pub fn timings_svg(rows: &[(String, Option<(f64, f64)>)]) -> Result<String> {
    register_bundled_font()?;
    let times: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.1)
        .flat_map(|(f, s)| [f, s])
        .filter(|t| *t > 0.0)
        .collect();
    let lo = times.iter().copied().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let hi = times.iter().copied().fold(0.0, f64::max).max(lo * 4.0) * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| anyhow!("cannot draw the timing chart: {e}");
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let n = rows.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n, (lo..hi).log_scale())
            .map_err(|x| e(&x))?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rows.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("median seconds (log)")
            .draw()
            .map_err(|x| e(&x))?;
        for (i, (_, t)) in rows.iter().enumerate() {
            let x = i as f64;
            match t {
                Some((f, s)) => {
                    for (k, v) in [*f, *s].into_iter().enumerate() {
                        let x0 = x + 0.15 + 0.35 * k as f64;
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                [(x0, lo), (x0 + 0.3, v.max(lo))],
                                COLOURS[k].filled(),
                            )))
                            .map_err(|x| e(&x))?;
                    }
                }
                None => {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            "absent",
                            (x + 0.3, lo * 2.0),
                            ("sans-serif", 14).into_font(),
                        )))
                        .map_err(|x| e(&x))?;
                }
            }
        }
        for (k, label) in ["forward", "step"].into_iter().enumerate() {
            let c = COLOURS[k];
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(|x| e(&x))?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}
