// Verifies (every test in this file): R-MTH-10
//! Sliding-window inference (`protokd::infer::sliding_window::sliding_window`) against values computed
//! independently: `tools/sliding/make_fixtures.py` is a NumPy transcription of the authors'
//! `test_single_case` as the method page states it, run with a mock predictor that this test
//! implements too (outputs in `tests/fixtures/sliding/`).
//!
//! The comparison is bit for bit. The mock uses only f32 additions, multiplications and
//! divisions in a fixed order (no `exp`), NumPy's float32 elementwise arithmetic rounds each
//! operation once (IEEE-754), and the averaging is the same f32 additions in the same window
//! order followed by one f32 division on both sides, so any difference in padding, window
//! placement, window order or averaging changes bits.

use protokd::infer::sliding_window::{argmax, sliding_window, window_starts, Window};
use protokd_reference::tensor::Shaped;
use protokd_reference::Tensor;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sliding")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn triple(v: &Value) -> [usize; 3] {
    let a: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    [a[0], a[1], a[2]]
}

/// The mock predictor of `make_fixtures.py` (same operations, same order, f32):
/// `u = ((0 + x_0) + x_1) + ...`, `t_k = u * A_k + ((d * B_k + h * G_k) + w * E_k)`,
/// `w_k = t_k * t_k + 1`, `p_k = w_k / (((w_0 + w_1) + w_2) + w_3)`.
fn mock(x: &Tensor, m: &Value) -> Tensor {
    let consts = |key: &str| -> Vec<f32> {
        m[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let (a, b, g, e) = (consts("A"), consts("B"), consts("G"), consts("E"));
    let [_, c, pd, ph, pw] = x.dims5();
    let v = pd * ph * pw;
    let mut out = vec![0.0f32; 4 * v];
    for d in 0..pd {
        for h in 0..ph {
            for w in 0..pw {
                let i = (d * ph + h) * pw + w;
                let mut u = 0.0f32;
                for ch in 0..c {
                    u += x.data[ch * v + i];
                }
                let (df, hf, wf) = (d as f32, h as f32, w as f32);
                let wk: Vec<f32> = (0..4)
                    .map(|k| {
                        let pos = (df * b[k] + hf * g[k]) + wf * e[k];
                        let t = u * a[k] + pos;
                        t * t + 1.0
                    })
                    .collect();
                let total = ((wk[0] + wk[1]) + wk[2]) + wk[3];
                for k in 0..4 {
                    out[k * v + i] = wk[k] / total;
                }
            }
        }
    }
    Tensor::from_vec(&[1, 4, pd, ph, pw], out)
}

#[test]
fn matches_the_numpy_transcription_bit_for_bit() {
    let manifest: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let cases = manifest["cases"].as_object().unwrap();
    assert!(cases.len() >= 6);
    for (name, case) in cases {
        let channels = case["channels"].as_u64().unwrap() as usize;
        let dims = triple(&case["dims"]);
        let window = Window {
            patch: triple(&case["patch"]),
            stride: triple(&case["stride"]),
        };
        // The window starts the script used, from the formula on the padded size.
        let starts = case["starts"].as_array().unwrap();
        for a in 0..3 {
            let padded = dims[a].max(window.patch[a]);
            let want: Vec<usize> = starts[a]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(
                window_starts(padded, window.patch[a], window.stride[a]),
                want,
                "{name}: axis {a}"
            );
        }
        let image = f32s(&read(case["image"].as_str().unwrap()));
        let want = f32s(&read(case["probabilities"].as_str().unwrap()));
        let want_labels = read(case["labels"].as_str().unwrap());
        let mut calls = 0;
        let got = sliding_window(&image, channels, dims, 4, &window, |x| {
            calls += 1;
            Ok(mock(x, &manifest["mock"]))
        })
        .unwrap();
        assert_eq!(calls, window.count(dims), "{name}: windows");
        assert_eq!(got.len(), want.len(), "{name}");
        let diff = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g.to_bits() != w.to_bits());
        assert!(
            diff.is_none(),
            "{name}: first difference at flat index {}: {} vs NumPy {}",
            diff.unwrap(),
            got[diff.unwrap()],
            want[diff.unwrap()]
        );
        assert_eq!(argmax(&got, 4), want_labels, "{name}: labels");
    }
}

/// The same result for 1 and 3 threads (the accumulation order is fixed).
// Verifies: R-NUM-4
#[test]
fn thread_count_does_not_change_the_bits() {
    let manifest: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let case = &manifest["cases"]["two_channels"];
    let dims = triple(&case["dims"]);
    let window = Window {
        patch: triple(&case["patch"]),
        stride: triple(&case["stride"]),
    };
    let image = f32s(&read(case["image"].as_str().unwrap()));
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                sliding_window(&image, 2, dims, 4, &window, |x| {
                    Ok(mock(x, &manifest["mock"]))
                })
                .unwrap()
            })
    };
    let (one, three) = (run(1), run(3));
    assert!(one
        .iter()
        .zip(&three)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}
