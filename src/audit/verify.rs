//! `protokd verify`: the golden suite run on the specification (`--engine spec`) and on every
//! other engine, and compared bit for bit: the fast CPU engine (protokd-cpu) and the emulated
//! GPU device always, CUDA where a driver is present (or the engines named by `--engines`).
//!
//! For every golden patch (`golden/`, four 32^3 BraTS-like patches) and seeded n_filters 4
//! weights, each operation below runs on both sides; every output element is compared:
//! identical bits, or the distance in ulps (the number of f32 values between the two) and the
//! absolute difference.
//!
//! | operation | on |
//! |---|---|
//! | `conv3d_forward k3` / `_backward_input` / `_backward_weight` | the patch, 4 -> 4 channels, padding 1 |
//! | `conv3d_forward k2s2` / `_backward_input` / `_backward_weight` | the patch, 4 -> 8 channels (the down convolution) |
//! | `conv_transpose3d_forward k2s2` / `_backward_input` / `_backward_weight` | the patch, 4 -> 4 channels (the up convolution) |
//! | `batchnorm3d train forward` / `backward` | the patch (forward: output and running statistics; backward: dx, dweight, dbias) |
//! | `vnet forward (teacher, eval)` | features and logits of the seeded teacher |
//! | `protokd step` | losses, every gradient and the updated student of one ProtoKD step (T1ce) |
//!
//! Every engine must give the spec's bits (protokd-gpu's docs: no operation has a tolerance),
//! so any difference is a failure (exit status 1).

use crate::data::brats::{discover, load_case};
use crate::engine::Describe;
use crate::engine::{Compute, EngineKind, OnEngine, Resident};
use anyhow::{bail, Result};
use protokd_reference::engine::Spec;
use protokd_reference::layers::conv3d::ConvGeom;
use protokd_reference::tensor::Shaped;
use protokd_reference::{LabelMap, Tensor};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// How the outputs of one operation on one patch compare.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The engine compared with the spec (`cpu`, `emulated`, `cuda`).
    pub engine: String,
    /// Patch name.
    pub patch: String,
    /// Operation name.
    pub operation: String,
    /// Output elements compared.
    pub elements: usize,
    /// Elements whose bits differ.
    pub differing: usize,
    /// Largest distance in ulps.
    pub max_ulp: u64,
    /// Largest absolute difference.
    pub max_abs: f64,
}

/// Position of an f32 on the ordered line of f32 values (so that the ulp distance of `a` and
/// `b` is the difference of their positions; +0 and -0 are one apart).
pub(crate) fn ordered(x: f32) -> i64 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        -((b & 0x7fff_ffff) as i64) - 1
    } else {
        b as i64
    }
}

/// Compares two output lists element by element: the spec's and `engine`'s.
pub fn compare(
    engine: &str,
    patch: &str,
    operation: &str,
    spec: &[f32],
    other: &[f32],
) -> Comparison {
    assert_eq!(
        spec.len(),
        other.len(),
        "{operation}: output lengths differ"
    );
    let mut c = Comparison {
        engine: engine.to_string(),
        patch: patch.to_string(),
        operation: operation.to_string(),
        elements: spec.len(),
        differing: 0,
        max_ulp: 0,
        max_abs: 0.0,
    };
    for (&a, &b) in spec.iter().zip(other) {
        if a.to_bits() != b.to_bits() {
            c.differing += 1;
            c.max_ulp = c.max_ulp.max(ordered(a).abs_diff(ordered(b)));
            c.max_abs = c.max_abs.max((a as f64 - b as f64).abs());
        }
    }
    c
}

/// The golden folder: `explicit`, else `golden` here, else in the source tree.
pub fn find_golden(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            PathBuf::from("golden"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("golden"),
        ],
    };
    match candidates
        .iter()
        .find(|p| p.join("manifest.json").is_file())
    {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "cannot find the golden patches (a folder with manifest.json): looked in {}",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn seeded(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    crate::audit::bench::uniform(shape, seed, scale)
}

/// Every operation's outputs on one patch, on engine `e` (the layer operations) and `compute`
/// (the seeded forward and step; the same engine).
fn outputs<E: Resident + ?Sized>(
    e: &E,
    compute: &Compute,
    image: &Tensor,
    labels: &LabelMap,
) -> Result<Vec<(String, Vec<f32>)>> {
    let [_, c, d, h, w] = image.dims5();
    let k3 = ConvGeom::cubic(3, 1, 1);
    let k2 = ConvGeom::cubic(2, 2, 0);
    let x = e.upload(image)?.into_owned();
    let seeded = |shape: &[usize], seed: u64, scale: f32| {
        e.upload(&seeded(shape, seed, scale)).map(Cow::into_owned)
    };
    let mut out: Vec<(String, Vec<f32>)> = Vec::new();
    let mut put = |name: &str, parts: &[&E::T]| -> Result<()> {
        let mut values = Vec::new();
        for t in parts {
            values.extend(&e.download(t)?.data);
        }
        out.push((name.to_string(), values));
        Ok(())
    };

    // The convolution, its input gradient and its weight gradient on geometry `name`; returns
    // the output gradient it used.
    let mut conv = |name: &str, weight: &E::T, bias, g: &ConvGeom, dy_seed| -> Result<E::T> {
        let y = e.conv3d_forward(&x, weight, bias, g)?;
        let dy = seeded(y.shape(), dy_seed, 1.0)?;
        put(&format!("conv3d_forward {name}"), &[&y])?;
        let t = e.conv3d_backward_input(&dy, weight, g, [d, h, w])?;
        put(&format!("conv3d_backward_input {name}"), &[&t])?;
        let t = e.conv3d_backward_weight(&x, &dy, g)?;
        put(&format!("conv3d_backward_weight {name}"), &[&t])?;
        Ok(dy)
    };
    let dy3 = conv("k3", &seeded(&[c, c, 3, 3, 3], 31, 0.2)?, None, &k3, 32)?;
    let w2 = seeded(&[2 * c, c, 2, 2, 2], 33, 0.3)?;
    let b2 = seeded(&[2 * c], 34, 0.3)?;
    conv("k2s2", &w2, Some(&b2), &k2, 35)?;

    let wt = seeded(&[c, c, 2, 2, 2], 36, 0.3)?;
    let bt = seeded(&[c], 37, 0.3)?;
    let yt = e.conv_transpose3d_forward(&x, &wt, Some(&bt), &k2)?;
    let dyt = seeded(yt.shape(), 38, 1.0)?;
    put("conv_transpose3d_forward k2s2", &[&yt])?;
    let t = e.conv_transpose3d_backward_input(&dyt, &wt, &k2)?;
    put("conv_transpose3d_backward_input k2s2", &[&t])?;
    let t = e.conv_transpose3d_backward_weight(&x, &dyt, &k2)?;
    put("conv_transpose3d_backward_weight k2s2", &[&t])?;

    let (gamma, beta) = (seeded(&[c], 39, 1.0)?, seeded(&[c], 40, 1.0)?);
    let mut rm = e.upload(&Tensor::zeros(&[c]))?.into_owned();
    let mut rv = e
        .upload(&Tensor::from_vec(&[c], vec![1.0; c]))?
        .into_owned();
    let (yb, cache) = e.batchnorm3d_forward_train(&x, &gamma, &beta, &mut rm, &mut rv, &mut 0)?;
    put("batchnorm3d train forward", &[&yb, &rm, &rv])?;
    let (dxb, dg, db) = e.batchnorm3d_backward(&dy3, &gamma, &cache)?;
    put("batchnorm3d backward", &[&dxb, &dg, &db])?;

    let (y, r, student) = crate::audit::golden::seeded_run(compute, image, labels)?;
    let mut fwd = y.features.data;
    fwd.extend(&y.logits.data);
    out.push(("vnet forward (teacher, eval)".to_string(), fwd));
    let l = r.losses;
    let mut step = vec![l.total, l.seg, l.dice, l.ce, l.kd, l.proto];
    for g in &r.grads {
        step.extend(&g.data);
    }
    for (_, t) in student.parameters() {
        step.extend(&t.data);
    }
    out.push(("protokd step".to_string(), step));
    Ok(out)
}

/// The golden patches: `(id, image [1, 4, D, H, W], labels)`.
pub(crate) fn patches(golden: &Path) -> Result<Vec<(String, Tensor, LabelMap)>> {
    discover(golden)?
        .cases
        .iter()
        .map(|case| {
            let loaded = load_case(case)?;
            let [d, h, w] = loaded.dims();
            let data: Vec<f32> = loaded
                .images
                .iter()
                .flat_map(|v| v.data.iter().copied())
                .collect();
            let Some(l) = loaded.labels else {
                bail!("golden patch {} has no segmentation", case.id);
            };
            Ok((
                case.id.clone(),
                Tensor::from_vec(&[1, 4, d, h, w], data),
                LabelMap::new([1, d, h, w], l),
            ))
        })
        .collect()
}

/// [`outputs`] on whichever engine `compute` is.
fn engine_outputs(
    compute: &Compute,
    image: &Tensor,
    labels: &LabelMap,
) -> Result<Vec<(String, Vec<f32>)>> {
    struct Outputs<'a>(&'a Compute, &'a Tensor, &'a LabelMap);
    impl OnEngine<'_> for Outputs<'_> {
        type Output = Result<Vec<(String, Vec<f32>)>>;
        fn run<E: Resident + ?Sized>(self, e: &E) -> Self::Output {
            outputs(e, self.0, self.1, self.2)
        }
    }
    compute.run(Outputs(compute, image, labels))
}

/// The engines `protokd verify` compares with the spec when none are named: the fast CPU
/// engine and the emulated device always, CUDA where a driver, NVRTC and a device are found.
/// Returns them with one line per engine left out, saying why.
pub fn available_engines() -> (Vec<Compute>, Vec<String>) {
    let mut engines = Vec::new();
    let mut skipped = Vec::new();
    for kind in [EngineKind::Cpu, EngineKind::Emulated, EngineKind::Cuda] {
        match kind.open() {
            Ok(c) => engines.push(c),
            Err(e) => skipped.push(format!("{}: not available ({e:#})", kind.name())),
        }
    }
    (engines, skipped)
}

/// Runs the suite on the spec and on each of `engines`, and compares each with the spec: one
/// [`Comparison`] per engine, patch and operation.
pub fn verify_engines(golden: &Path, engines: &[Compute]) -> Result<Vec<Comparison>> {
    let spec = EngineKind::Spec.open()?;
    let mut all = Vec::new();
    for (id, image, labels) in patches(golden)? {
        let spec = engine_outputs(&spec, &image, &labels)?;
        for compute in engines {
            let other = engine_outputs(compute, &image, &labels)?;
            for ((name, s), (_, o)) in spec.iter().zip(&other) {
                all.push(compare(compute.kind(), &id, name, s, o));
            }
        }
    }
    Ok(all)
}

/// The report: `{"engines": [..], "golden": .., "operations": [..], "identical": bool}`;
/// `engines` describes each engine compared with the spec, `skipped` those not available.
pub fn report_json(
    engines: &[Compute],
    skipped: &[String],
    golden: &Path,
    results: &[Comparison],
) -> Value {
    json!({
        "tool": format!("protokd {}", env!("CARGO_PKG_VERSION")),
        "reference": Describe::describe(&Spec),
        "engines": engines.iter().map(|e| json!({"engine": e.kind(), "description": e.describe()})).collect::<Vec<_>>(),
        "skipped": skipped,
        "golden": golden.display().to_string(),
        "identical": results.iter().all(|c| c.differing == 0),
        "operations": results.iter().map(|c| json!({
            "engine": c.engine,
            "patch": c.patch,
            "operation": c.operation,
            "elements": c.elements,
            "differing": c.differing,
            "max_ulp": c.max_ulp,
            "max_abs": c.max_abs,
        })).collect::<Vec<_>>(),
    })
}

/// One line per comparison.
pub fn line(c: &Comparison) -> String {
    if c.differing == 0 {
        format!(
            "identical  {:<8} {:<17} {:<40} {} values",
            c.engine, c.patch, c.operation, c.elements
        )
    } else {
        format!(
            "DIFFERENT  {:<8} {:<17} {:<40} {} of {} values, max {} ulp, max |diff| {:e}",
            c.engine, c.patch, c.operation, c.differing, c.elements, c.max_ulp, c.max_abs
        )
    }
}

// Verifies (every test in this file): R-NUM-5
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulp_distance_and_comparison() {
        assert_eq!(ordered(0.0) - ordered(-0.0), 1);
        let one = 1.0f32;
        let next = f32::from_bits(one.to_bits() + 3);
        let c = compare("cpu", "p", "op", &[one, 2.0, -1.0], &[next, 2.0, -1.0]);
        assert_eq!((c.differing, c.max_ulp), (1, 3));
        assert!((c.max_abs - (next - one) as f64).abs() < 1e-12);
        let c = compare(
            "cpu",
            "p",
            "op",
            &[-1.0],
            &[f32::from_bits((-1.0f32).to_bits() + 2)],
        );
        assert_eq!(c.max_ulp, 2);
        let c = compare(
            "cpu",
            "p",
            "op",
            &[f32::MIN_POSITIVE],
            &[-f32::MIN_POSITIVE],
        );
        assert_eq!(c.max_ulp, 2 * f32::MIN_POSITIVE.to_bits() as u64 + 1);
    }
}
