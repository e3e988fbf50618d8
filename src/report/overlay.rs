//! A segmentation drawn over one axial slice of an image, as a PNG picture.
//!
//! The rules, in the order they are applied:
//!
//! * **Slice**: the axial slice (fixed z) with the most voxels whose internal label is not 0;
//!   on a tie the lowest z; with no tumour at all the middle slice `nz / 2`, and the heading
//!   says "(no tumour)".
//! * **Grey**: the window is `[lo, hi]` with `lo` the 0.5th and `hi` the 99.5th percentile of
//!   the whole volume's finite voxels above 0, by nearest rank (the value of rank
//!   `ceil(p * n)`, counted from 1, of the `n` such voxels sorted ascending; computed in
//!   integers as `ceil(5 * n / 1000)` and `ceil(995 * n / 1000)`). A voxel `v` shows
//!   `round(255 * (v - lo) / (hi - lo))`, clamped to 0..255 (computed in f64, halves away from
//!   zero). When `hi == lo`, voxels at or above `hi` are white and the others black. A volume
//!   with no finite voxel above 0 is black, and a non-finite voxel is black.
//! * **Labels** are blended at alpha 0.5 over the grey: each channel is `(grey + colour + 1) /
//!   2` in integers (the mean, halves rounded up), with ET (internal label 1) yellow
//!   `(255, 255, 0)`, NCR/NET (2) red `(255, 0, 0)` and ED (3) green `(0, 255, 0)`.
//! * **Orientation**: array order, no flips: image row `r` shows `y = r` (row 0 at the top),
//!   column `c` shows `x = c`. How the anatomy appears therefore depends on how the file
//!   stores it.
//! * **Size**: each voxel is a square of `s = max(1, ceil(256 / nx))` pixels, so the slice is
//!   at least 256 pixels wide.
//! * **Layout**: on a dark grey `(40, 40, 40)` canvas, the heading (`"<title>, slice z = k"`)
//!   on top, the slice below it, and below the slice a legend of colour swatches ("ET
//!   enhancing", "NCR/NET necrotic core", "ED edema", abbreviation and description in two
//!   columns). Text is drawn with the bundled DejaVu
//!   Sans (no system fonts needed).
//!
//! The picture is an 8-bit RGB PNG encoded in memory (same input, same bytes) and written
//! atomically (temporary file, then rename).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;

use crate::volume::Volume;

/// Colour of each internal label (index 0, background, is never drawn).
pub(crate) const LABEL_COLOURS: [(u8, u8, u8); 4] =
    [(0, 0, 0), (255, 255, 0), (255, 0, 0), (0, 255, 0)];

/// Legend of each tumour label (internal labels 1, 2, 3): abbreviation and description, drawn
/// in two columns (the `ab_glyph` text drawing applies DejaVu's negative kerning of "T" + space,
/// so "ET enhancing" in one text would look like "ETenhancing").
const LEGEND: [(&str, &str); 3] = [
    ("ET", "enhancing"),
    ("NCR/NET", "necrotic core"),
    ("ED", "edema"),
];

/// The slice is drawn at least this many pixels wide.
const MIN_WIDTH: usize = 256;

/// Refuse pictures with more pixels than this (a degenerate volume shape).
const MAX_PIXELS: usize = 1 << 26;

/// Canvas colour.
const BACKGROUND: RGBColor = RGBColor(40, 40, 40);

const MARGIN: usize = 12;
const HEADING_SIZE: u32 = 20;
const HEADING_BAND: usize = 40;
const LEGEND_SIZE: u32 = 16;
const LEGEND_ROW: usize = 24;
const SWATCH: usize = 16;

/// Draws `labels_internal` (internal labels, one per voxel in `grey`'s order: 0 background,
/// 1 ET, 2 NCR/NET, 3 ED) over the slice of `grey` chosen by the rules in the module docs,
/// with the heading `"<title>, slice z = k"`, and writes the PNG to `path` atomically.
///
/// Errors (nothing is written): a volume with no voxels, or whose data length does not match
/// its dims; `labels_internal` not one label per voxel; a label above 3 (the error gives its
/// value and voxel); a path that cannot be written (the error names it).
pub(crate) fn write_overlay_png(
    grey: &Volume,
    labels_internal: &[u8],
    path: &Path,
    title: &str,
) -> Result<()> {
    let png = render_overlay_png(grey, labels_internal, title)
        .with_context(|| format!("cannot draw the overlay {}", path.display()))?;
    crate::io::files::write_atomic(path, &png)
        .with_context(|| format!("cannot write the overlay {}", path.display()))
}

/// Checks the inputs (see [`write_overlay_png`]).
fn check(grey: &Volume, labels: &[u8]) -> Result<()> {
    let [nz, ny, nx] = grey.dims;
    let n = nz
        .checked_mul(ny)
        .and_then(|v| v.checked_mul(nx))
        .ok_or_else(|| anyhow!("volume dims {:?} overflow", grey.dims))?;
    if n == 0 {
        bail!("empty volume (dims z, y, x = {nz}, {ny}, {nx}): nothing to draw");
    }
    if grey.data.len() != n {
        bail!(
            "volume dims z, y, x = {nz}, {ny}, {nx} ({n} voxels) but {} values",
            grey.data.len()
        );
    }
    if labels.len() != n {
        bail!(
            "{} labels for a volume of {n} voxels (z, y, x = {nz}, {ny}, {nx})",
            labels.len()
        );
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l > 3) {
        let (z, y, x) = (i / (ny * nx), i / nx % ny, i % nx);
        bail!(
            "label {l} at voxel (z, y, x) = ({z}, {y}, {x}) is not an internal label 0, 1, 2 or 3"
        );
    }
    Ok(())
}

/// The axial slice with the most tumour voxels (label != 0), the lowest z on a tie; `None`
/// when there is no tumour. `labels` must hold `dims` voxels.
pub(crate) fn choose_slice(dims: [usize; 3], labels: &[u8]) -> Option<usize> {
    let plane = dims[1] * dims[2];
    let mut best: Option<(usize, usize)> = None;
    for (z, slice) in labels.chunks(plane.max(1)).take(dims[0]).enumerate() {
        let count = slice.iter().filter(|&&l| l != 0).count();
        if count > 0 && best.is_none_or(|(_, c)| count > c) {
            best = Some((z, count));
        }
    }
    best.map(|(z, _)| z)
}

/// Value of rank `ceil(per_mille * n / 1000)` (from 1, at least 1) of `values` sorted
/// ascending (nearest rank); reorders `values`. `values` must not be empty.
fn nearest_rank(values: &mut [f32], per_mille: u64) -> f32 {
    let n = values.len() as u64;
    let rank = (per_mille * n).div_ceil(1000).max(1);
    let (_, v, _) = values.select_nth_unstable_by((rank - 1) as usize, f32::total_cmp);
    *v
}

/// The grey window `(lo, hi)`: the 0.5th and 99.5th nearest-rank percentiles of the finite
/// voxels above 0; `None` when there are none.
pub(crate) fn window(data: &[f32]) -> Option<(f32, f32)> {
    let mut positive: Vec<f32> = data
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    if positive.is_empty() {
        return None;
    }
    let lo = nearest_rank(&mut positive, 5);
    let hi = nearest_rank(&mut positive, 995);
    Some((lo, hi))
}

/// Grey level of voxel value `v` in `window` (rules in the module docs).
pub(crate) fn grey_level(v: f32, window: Option<(f32, f32)>) -> u8 {
    let Some((lo, hi)) = window else { return 0 };
    if !v.is_finite() {
        return 0;
    }
    if hi > lo {
        let t = (f64::from(v) - f64::from(lo)) / (f64::from(hi) - f64::from(lo)) * 255.0;
        t.round().clamp(0.0, 255.0) as u8
    } else if v >= hi {
        255
    } else {
        0
    }
}

/// `grey` with `label`'s colour blended over it at alpha 0.5 (label 0: `grey` itself).
pub(crate) fn blend(grey: u8, label: u8) -> [u8; 3] {
    if label == 0 {
        return [grey; 3];
    }
    let (r, g, b) = LABEL_COLOURS[usize::from(label)];
    let mix = |c: u8| (u16::from(grey) + u16::from(c)).div_ceil(2) as u8;
    [mix(r), mix(g), mix(b)]
}

/// Where things go in the picture (pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Pixels per voxel side.
    pub scale: usize,
    /// Top-left corner of the slice.
    pub image_x: usize,
    pub image_y: usize,
    /// Left edge of the legend's descriptions.
    pub description_x: usize,
    /// Picture size.
    pub width: usize,
    pub height: usize,
}

/// Text size in pixels (width, height) in the bundled font.
fn text_width(text: &str, size: u32) -> Result<usize> {
    let (w, _) = ("sans-serif", size)
        .into_font()
        .box_size(text)
        .map_err(|e| anyhow!("cannot lay out text `{text}`: {e:?}"))?;
    Ok(w as usize)
}

/// The layout for a slice of `ny` by `nx` voxels under `heading`.
pub(crate) fn layout(ny: usize, nx: usize, heading: &str) -> Result<Layout> {
    let scale = MIN_WIDTH.div_ceil(nx).max(1);
    let (w, h) = (nx.saturating_mul(scale), ny.saturating_mul(scale));
    if w.saturating_mul(h) > MAX_PIXELS {
        bail!("a slice of {ny} x {nx} voxels is too large to draw");
    }
    let mut abbreviations = 0;
    let mut descriptions = 0;
    for (a, d) in LEGEND {
        abbreviations = abbreviations.max(text_width(a, LEGEND_SIZE)?);
        descriptions = descriptions.max(text_width(d, LEGEND_SIZE)?);
    }
    let description_x = SWATCH + 8 + abbreviations + 10;
    let widest = w
        .max(text_width(heading, HEADING_SIZE)?)
        .max(description_x + descriptions);
    Ok(Layout {
        scale,
        description_x: MARGIN + description_x,
        image_x: MARGIN,
        image_y: HEADING_BAND,
        width: widest + 2 * MARGIN,
        height: HEADING_BAND + h + MARGIN + LEGEND.len() * LEGEND_ROW + MARGIN,
    })
}

/// The PNG bytes of the overlay.
fn render_overlay_png(grey: &Volume, labels: &[u8], title: &str) -> Result<Vec<u8>> {
    check(grey, labels)?;
    crate::report::plot::register_bundled_font()?;
    let [nz, ny, nx] = grey.dims;
    let chosen = choose_slice(grey.dims, labels);
    let z = chosen.unwrap_or(nz / 2);
    let mut heading = if title.is_empty() {
        format!("slice z = {z}")
    } else {
        format!("{title}, slice z = {z}")
    };
    if chosen.is_none() {
        heading += " (no tumour)";
    }
    let at = layout(ny, nx, &heading)?;
    let win = window(&grey.data);

    let mut buf: Vec<u8> = [BACKGROUND.0, BACKGROUND.1, BACKGROUND.2].repeat(at.width * at.height);
    let plane = ny * nx;
    for y in 0..ny {
        for x in 0..nx {
            let i = z * plane + y * nx + x;
            let rgb = blend(grey_level(grey.data[i], win), labels[i]);
            for py in 0..at.scale {
                let row = at.image_y + y * at.scale + py;
                let start = (row * at.width + at.image_x + x * at.scale) * 3;
                for px in buf[start..start + at.scale * 3].chunks_exact_mut(3) {
                    px.copy_from_slice(&rgb);
                }
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (at.width as u32, at.height as u32))
            .into_drawing_area();
        let draw_err = |e| anyhow!("{e:?}");
        root.draw(&Text::new(
            heading,
            (MARGIN as i32, 12),
            ("sans-serif", HEADING_SIZE).into_font().color(&WHITE),
        ))
        .map_err(draw_err)?;
        let legend_top = at.image_y + ny * at.scale + MARGIN;
        for (k, (abbreviation, description)) in LEGEND.iter().enumerate() {
            let (r, g, b) = LABEL_COLOURS[k + 1];
            let (x, y) = (MARGIN as i32, (legend_top + k * LEGEND_ROW) as i32);
            let s = SWATCH as i32;
            root.draw(&Rectangle::new(
                [(x, y), (x + s - 1, y + s - 1)],
                RGBColor(r, g, b).filled(),
            ))
            .map_err(draw_err)?;
            let font = ("sans-serif", LEGEND_SIZE).into_font().color(&WHITE);
            root.draw(&Text::new(*abbreviation, (x + s + 8, y + 3), font.clone()))
                .map_err(draw_err)?;
            root.draw(&Text::new(
                *description,
                (at.description_x as i32, y + 3),
                font,
            ))
            .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }

    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, at.width as u32, at.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&buf)?;
    writer.finish()?;
    Ok(png)
}

// Verifies (every test in this file): R-WFL-2
#[cfg(test)]
mod tests {
    use super::*;

    const DIMS: [usize; 3] = [6, 20, 24];

    /// A synthetic case: a brain box with a ramp of intensities, and a tumour whose ED ring is
    /// biggest at z = 3 with an ET core there; z = 1 has a few NCR voxels.
    fn case() -> (Volume, Vec<u8>) {
        let [nz, ny, nx] = DIMS;
        let mut data = vec![0.0f32; nz * ny * nx];
        let mut labels = vec![0u8; nz * ny * nx];
        let v = Volume::new(DIMS, data.clone());
        for z in 0..nz {
            for y in 2..ny - 2 {
                for x in 2..nx - 2 {
                    data[v.index(z, y, x)] = (10 + x + y) as f32;
                }
            }
        }
        for (z, r) in [(2usize, 2usize), (3, 4), (4, 3)] {
            for y in 10 - r..10 + r {
                for x in 12 - r..12 + r {
                    labels[v.index(z, y, x)] = 3;
                }
            }
        }
        labels[v.index(3, 10, 12)] = 1;
        labels[v.index(1, 5, 5)] = 2;
        labels[v.index(1, 5, 6)] = 2;
        (Volume::new(DIMS, data), labels)
    }

    fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let decoder = png::Decoder::new(bytes);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        (info.width as usize, info.height as usize, buf)
    }

    #[test]
    fn slice_choice() {
        let (_, labels) = case();
        assert_eq!(choose_slice(DIMS, &labels), Some(3));
        // A tie goes to the lower z.
        let mut tie = vec![0u8; labels.len()];
        let plane = DIMS[1] * DIMS[2];
        tie[4 * plane] = 3;
        tie[2 * plane + 7] = 1;
        assert_eq!(choose_slice(DIMS, &tie), Some(2));
        assert_eq!(choose_slice(DIMS, &vec![0; labels.len()]), None);
    }

    #[test]
    fn window_is_nearest_rank() {
        let mut data: Vec<f32> = (1..=1000).map(|v| v as f32).collect();
        data.extend([0.0, -5.0, f32::NAN, f32::INFINITY]);
        assert_eq!(window(&data), Some((5.0, 995.0)));
        assert_eq!(window(&[3.0]), Some((3.0, 3.0)));
        assert_eq!(window(&[0.0, 0.0]), None);
        let w = Some((5.0, 995.0));
        assert_eq!(grey_level(5.0, w), 0);
        assert_eq!(grey_level(995.0, w), 255);
        assert_eq!(grey_level(500.0, w), 128); // 495 / 990 * 255 = 127.5
        assert_eq!(grey_level(2000.0, w), 255);
        assert_eq!(grey_level(f32::NAN, w), 0);
        assert_eq!(grey_level(3.0, Some((3.0, 3.0))), 255);
        assert_eq!(grey_level(2.0, Some((3.0, 3.0))), 0);
        assert_eq!(grey_level(7.0, None), 0);
        assert_eq!(blend(100, 3), [50, 178, 50]);
        assert_eq!(blend(100, 1), [178, 178, 50]);
        assert_eq!(blend(255, 2), [255, 128, 128]);
    }

    #[test]
    fn png_shows_the_labels() {
        let (grey, labels) = case();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.png");
        write_overlay_png(&grey, &labels, &path, "case 7").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (w, h, img) = decode(&bytes);
        let at = layout(DIMS[1], DIMS[2], "case 7, slice z = 3").unwrap();
        assert_eq!((w, h), (at.width, at.height));
        assert!(at.scale * DIMS[2] >= 256);
        let win = window(&grey.data);
        // Every pixel of a voxel's square, for an ED, an ET and a background voxel of z = 3.
        for (y, x) in [(8, 9), (10, 12), (0, 0), (15, 3)] {
            let i = grey.index(3, y, x);
            let want = blend(grey_level(grey.data[i], win), labels[i]);
            for py in 0..at.scale {
                for px in 0..at.scale {
                    let (r, c) = (
                        at.image_y + y * at.scale + py,
                        at.image_x + x * at.scale + px,
                    );
                    let p = (r * w + c) * 3;
                    assert_eq!(img[p..p + 3], want, "voxel ({y}, {x}) pixel ({r}, {c})");
                }
            }
        }
        let ed = blend(grey_level(grey.data[grey.index(3, 8, 9)], win), 3);
        assert!(ed[1] > ed[0] && ed[1] > ed[2], "ED is green: {ed:?}");
        let et = blend(grey_level(grey.data[grey.index(3, 10, 12)], win), 1);
        assert!(et[0] == et[1] && et[1] > et[2], "ET is yellow: {et:?}");
        // Same input, same bytes.
        let again = dir.path().join("again.png");
        write_overlay_png(&grey, &labels, &again, "case 7").unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), bytes);
    }

    #[test]
    fn no_tumour_and_all_zero_volume() {
        let zero = Volume::new(DIMS, vec![0.0; DIMS.iter().product()]);
        let labels = vec![0u8; zero.data.len()];
        let png = render_overlay_png(&zero, &labels, "empty").unwrap();
        let (w, _, img) = decode(&png);
        let at = layout(DIMS[1], DIMS[2], "empty, slice z = 3 (no tumour)").unwrap();
        assert_eq!(w, at.width);
        let p = (at.image_y * w + at.image_x) * 3;
        assert_eq!(img[p..p + 3], [0, 0, 0]);
    }

    // Verifies: R-CLI-1
    #[test]
    fn bad_input_is_refused() {
        let (grey, labels) = case();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.png");
        let err = |g: &Volume, l: &[u8], p: &Path| {
            format!("{:#}", write_overlay_png(g, l, p, "t").unwrap_err())
        };
        let e = err(&grey, &labels[1..], &path);
        assert!(e.contains("2879 labels for a volume of 2880 voxels"), "{e}");
        let mut bad = labels.clone();
        bad[grey.index(2, 3, 4)] = 4;
        let e = err(&grey, &bad, &path);
        assert!(e.contains("label 4 at voxel (z, y, x) = (2, 3, 4)"), "{e}");
        let empty = Volume::new([0, 20, 24], vec![]);
        assert!(err(&empty, &[], &path).contains("empty volume"));
        let short = Volume {
            dims: DIMS,
            data: vec![1.0; 10],
        };
        assert!(err(&short, &labels, &path).contains("but 10 values"));
        assert!(!path.exists());
        let missing = dir.path().join("no such folder").join("o.png");
        let e = err(&grey, &labels, &missing);
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }
}
