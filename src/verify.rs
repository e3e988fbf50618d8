//! `protokd verify --kernels`: the golden suite run on the spec kernels and on the fast kernels,
//! compared bit for bit.
//!
//! For every golden patch (`golden/`, four 32^3 BraTS-like patches) and seeded n_filters 4
//! weights, each operation below runs once with the spec kernels and once with the fast ones
//! ([`protokd_reference::kernels`]); every output element is compared: identical bits, or the
//! distance in ulps (the number of f32 values between the two) and the absolute difference.
//!
//! | operation | on |
//! |---|---|
//! | `conv3d_forward k3` / `_backward_input` / `_backward_weight` | the patch, 4 -> 4 channels, padding 1 |
//! | `conv3d_forward k2s2` / `_backward_input` / `_backward_weight` | the patch, 4 -> 8 channels (the down convolution) |
//! | `conv_transpose3d_forward k2s2` / `_backward_input` / `_backward_weight` | the patch, 4 -> 4 channels (the up convolution) |
//! | `batchnorm3d train forward` / `backward` | the patch |
//! | `vnet forward (teacher, eval)` | features and logits of the seeded teacher |
//! | `protokd step` | losses, every gradient and the updated student of one ProtoKD step (T1ce) |
//!
//! The fast kernels must give the spec's bits, so any difference is a failure (exit status 1).

use crate::brats::{discover, load_case};
use anyhow::{bail, Result};
use protokd_reference::kernels::{kernels, set_kernels, Kernels};
use protokd_reference::layers::batchnorm3d::{batchnorm3d_backward, batchnorm3d_forward_train};
use protokd_reference::layers::conv3d::{
    conv3d_backward_input, conv3d_backward_weight, conv3d_forward, ConvGeom,
};
use protokd_reference::layers::conv_transpose3d::{
    conv_transpose3d_backward_input, conv_transpose3d_backward_weight, conv_transpose3d_forward,
};
use protokd_reference::{LabelMap, Tensor};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// How the outputs of one operation on one patch compare.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
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
fn ordered(x: f32) -> i64 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        -((b & 0x7fff_ffff) as i64) - 1
    } else {
        b as i64
    }
}

/// Compares two output lists element by element.
pub fn compare(patch: &str, operation: &str, spec: &[f32], fast: &[f32]) -> Comparison {
    assert_eq!(spec.len(), fast.len(), "{operation}: output lengths differ");
    let mut c = Comparison {
        patch: patch.to_string(),
        operation: operation.to_string(),
        elements: spec.len(),
        differing: 0,
        max_ulp: 0,
        max_abs: 0.0,
    };
    for (&a, &b) in spec.iter().zip(fast) {
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
    crate::bench::uniform(shape, seed, scale)
}

/// Every operation's outputs on one patch, in the kernels currently selected.
fn outputs(image: &Tensor, labels: &LabelMap) -> Result<Vec<(String, Vec<f32>)>> {
    let [_, c, d, h, w] = image.dims5();
    let k3 = ConvGeom::cubic(3, 1, 1);
    let k2 = ConvGeom::cubic(2, 2, 0);
    let mut out: Vec<(String, Vec<f32>)> = Vec::new();
    let mut put = |name: &str, t: &Tensor| out.push((name.to_string(), t.data.clone()));

    let w3 = seeded(&[c, c, 3, 3, 3], 31, 0.2);
    let y3 = conv3d_forward(image, &w3, None, &k3);
    let dy3 = seeded(&y3.shape, 32, 1.0);
    put("conv3d_forward k3", &y3);
    put(
        "conv3d_backward_input k3",
        &conv3d_backward_input(&dy3, &w3, &k3, [d, h, w]),
    );
    put(
        "conv3d_backward_weight k3",
        &conv3d_backward_weight(image, &dy3, &k3),
    );

    let w2 = seeded(&[2 * c, c, 2, 2, 2], 33, 0.3);
    let b2 = seeded(&[2 * c], 34, 0.3);
    let y2 = conv3d_forward(image, &w2, Some(&b2), &k2);
    let dy2 = seeded(&y2.shape, 35, 1.0);
    put("conv3d_forward k2s2", &y2);
    put(
        "conv3d_backward_input k2s2",
        &conv3d_backward_input(&dy2, &w2, &k2, [d, h, w]),
    );
    put(
        "conv3d_backward_weight k2s2",
        &conv3d_backward_weight(image, &dy2, &k2),
    );

    let wt = seeded(&[c, c, 2, 2, 2], 36, 0.3);
    let bt = seeded(&[c], 37, 0.3);
    let yt = conv_transpose3d_forward(image, &wt, Some(&bt), &k2);
    let dyt = seeded(&yt.shape, 38, 1.0);
    put("conv_transpose3d_forward k2s2", &yt);
    put(
        "conv_transpose3d_backward_input k2s2",
        &conv_transpose3d_backward_input(&dyt, &wt, &k2),
    );
    put(
        "conv_transpose3d_backward_weight k2s2",
        &conv_transpose3d_backward_weight(image, &dyt, &k2),
    );

    let (gamma, beta) = (seeded(&[c], 39, 1.0), seeded(&[c], 40, 1.0));
    let (mut rm, mut rv, mut nbt) = (Tensor::zeros(&[c]), Tensor::from_vec(&[c], vec![1.0; c]), 0);
    let (yb, cache) = batchnorm3d_forward_train(image, &gamma, &beta, &mut rm, &mut rv, &mut nbt)?;
    put("batchnorm3d train forward", &yb);
    let (dxb, dg, db) = batchnorm3d_backward(&dy3, &gamma, &cache);
    let mut bwd = dxb.data;
    bwd.extend(&dg.data);
    bwd.extend(&db.data);
    out.push(("batchnorm3d backward".to_string(), bwd));

    let (y, r, student) = crate::golden::seeded_run(image, labels)?;
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

/// Runs the suite on the spec and the fast kernels and compares (the kernels selected before
/// are restored).
pub fn verify_kernels(golden: &Path) -> Result<Vec<Comparison>> {
    let dataset = discover(golden)?;
    let before = kernels();
    let mut all = Vec::new();
    for case in &dataset.cases {
        let loaded = load_case(case)?;
        let [d, h, w] = loaded.dims();
        let data: Vec<f32> = loaded
            .images
            .iter()
            .flat_map(|v| v.data.iter().copied())
            .collect();
        let image = Tensor::from_vec(&[1, 4, d, h, w], data);
        let Some(l) = loaded.labels else {
            bail!("golden patch {} has no segmentation", case.id);
        };
        let labels = LabelMap::new([1, d, h, w], l);
        set_kernels(Kernels::Spec);
        let spec = outputs(&image, &labels);
        set_kernels(Kernels::Fast);
        let fast = outputs(&image, &labels);
        set_kernels(before);
        for ((name, s), (_, f)) in spec?.iter().zip(fast?.iter()) {
            all.push(compare(&case.id, name, s, f));
        }
    }
    Ok(all)
}

/// The report: `{"mode": "kernels", "golden": .., "operations": [..], "identical": bool}`.
pub fn report_json(golden: &Path, results: &[Comparison]) -> Value {
    json!({
        "tool": format!("protokd {}", env!("CARGO_PKG_VERSION")),
        "mode": "kernels: spec vs fast",
        "golden": golden.display().to_string(),
        "identical": results.iter().all(|c| c.differing == 0),
        "operations": results.iter().map(|c| json!({
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
            "identical  {:<17} {:<40} {} values",
            c.patch, c.operation, c.elements
        )
    } else {
        format!(
            "DIFFERENT  {:<17} {:<40} {} of {} values, max {} ulp, max |diff| {:e}",
            c.patch, c.operation, c.differing, c.elements, c.max_ulp, c.max_abs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulp_distance_and_comparison() {
        assert_eq!(ordered(0.0) - ordered(-0.0), 1);
        let one = 1.0f32;
        let next = f32::from_bits(one.to_bits() + 3);
        let c = compare("p", "op", &[one, 2.0, -1.0], &[next, 2.0, -1.0]);
        assert_eq!((c.differing, c.max_ulp), (1, 3));
        assert!((c.max_abs - (next - one) as f64).abs() < 1e-12);
        let c = compare(
            "p",
            "op",
            &[-1.0],
            &[f32::from_bits((-1.0f32).to_bits() + 2)],
        );
        assert_eq!(c.max_ulp, 2);
        let c = compare("p", "op", &[f32::MIN_POSITIVE], &[-f32::MIN_POSITIVE]);
        assert_eq!(c.max_ulp, 2 * f32::MIN_POSITIVE.to_bits() as u64 + 1);
    }
}
