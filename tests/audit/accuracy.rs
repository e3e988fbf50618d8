//! Accuracy against float64 (`protokd::audit::accuracy`): the float64 yardstick held to PyTorch
//! float64 on the parity fixtures, the figures measured, the conditioning notes, and
//! `protokd audit forward|step --accuracy`.
//!
//! The yardstick fixtures `tests/fixtures/accuracy/{A,B,C}.yardstick.json` are made by
//! `tools/accuracy/make_fixtures.py` (PyTorch in float64 on the inputs and models of the parity
//! fixtures); each tensor is a sketch (its norm, four random-sign projections and 32 sampled
//! values, or all values when at most 64) so the three files stay under 600 kB.
// Verifies (every test in this file): R-VAL-5

use crate::common::{protokd, s, TempDir};
use protokd::audit::accuracy::{
    forward_accuracy, golden_accuracy, measure, step_accuracy, AccuracyTable, StepInputs, NOISE,
};
use protokd::audit::replay::read_labels;
use protokd::io::checkpoint::{self, read_state};
use protokd::io::tensorfile::{write_tensors, OutTensor, TensorFile};
use protokd::modality::Modalities;
use protokd_reference::adam::AdamState;
use protokd_reference::engine::SpecOf;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::{train_step_on, StepConfig};
use protokd_reference::testutil::random_tensor;
use protokd_reference::vnet::{forward_eval_on, forward_train_on};
use protokd_reference::{LabelMap, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The yardstick must agree with PyTorch float64 to this, relative to each tensor's norm.
const YARDSTICK: f64 = 1e-10;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// SplitMix64, as the fixture script's `splitmix64`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Largest difference between our float64 tensor and PyTorch's sketch of it, relative to the
/// norm of PyTorch's (absolute when that is zero): over the values of a small tensor, else over
/// the norm, the four projections and the sampled values (as the script defines them).
fn sketch_error(ours: &[f64], sketch: &Value) -> f64 {
    let num = |v: &Value| v.as_f64().expect("a number");
    if let Some(values) = sketch.get("values") {
        let want: Vec<f64> = values.as_array().unwrap().iter().map(num).collect();
        assert_eq!(ours.len(), want.len());
        let norm = want.iter().map(|w| w * w).sum::<f64>().sqrt();
        let diff = ours
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        return if norm > 0.0 { diff / norm } else { diff };
    }
    let norm = num(&sketch["norm"]);
    let scale = if norm > 0.0 { norm } else { 1.0 };
    let mut worst = (ours.iter().map(|v| v * v).sum::<f64>().sqrt() - norm).abs() / scale;
    for (k, p) in sketch["projections"].as_array().unwrap().iter().enumerate() {
        let proj: f64 = ours
            .iter()
            .enumerate()
            .map(|(i, &v)| match splitmix64(4 * i as u64 + k as u64) >> 63 {
                0 => v,
                _ => -v,
            })
            .sum();
        worst = worst.max((proj - num(p)).abs() / scale);
    }
    for s in sketch["samples"].as_array().unwrap() {
        let i = s[0].as_u64().unwrap() as usize;
        worst = worst.max((ours[i] - num(&s[1])).abs() / scale);
    }
    worst
}

/// The ProtoKD computation of the fixture script on the spec in float64: name -> values.
fn yardstick_outputs(f: &TensorFile) -> BTreeMap<String, Vec<f64>> {
    let e = SpecOf::<f64>::new();
    let widen = |prefix: &str, in_channels: usize| {
        let w = f.shape(&format!("{prefix}out_conv.weight")).unwrap();
        let cfg = VNetConfig {
            in_channels,
            n_classes: w[0],
            n_filters: f
                .shape(&format!("{prefix}block_one.conv.0.weight"))
                .unwrap()[0],
        };
        read_state(f, prefix, cfg)
            .unwrap()
            .try_map(|_, t| Ok::<_, ()>(t.convert::<f64>()))
            .unwrap()
    };
    let teacher = widen("teacher.", 4);
    let mut student = widen("student.", 1);
    let image: Tensor<f64> = f.f32("image").unwrap().convert();
    let labels = read_labels(f, 4).unwrap();
    let mut out = BTreeMap::new();
    let vals = |t: &Tensor<f64>| t.data.clone();
    let t = forward_eval_on(&e, &teacher, &image).unwrap();
    out.insert("teacher.features".into(), vals(&t.features));
    out.insert("teacher.logits".into(), vals(&t.logits));
    let x = image.select_channels(&[2]);
    let (s, _) = forward_train_on(&e, &mut student.clone(), &x).unwrap();
    out.insert("student.features".into(), vals(&s.features));
    out.insert("student.logits".into(), vals(&s.logits));
    let mut adam = AdamState::for_state(&VNetState::init(student.config, 0))
        .try_map(|t| Ok::<_, ()>(t.convert::<f64>()))
        .unwrap();
    let cfg = StepConfig::default();
    let r = train_step_on(
        &e,
        &mut student,
        &mut adam,
        Some(&teacher),
        &image,
        &labels,
        &[2],
        &cfg,
    )
    .unwrap();
    for (k, v) in r.losses.named() {
        out.insert(format!("loss.{k}"), vec![v]);
    }
    let names: Vec<String> = student.parameters().map(|(n, _)| n.to_string()).collect();
    for (n, g) in names.iter().zip(&r.grads) {
        out.insert(format!("grad.{n}"), vals(g));
    }
    for e in student.entries() {
        if let protokd_reference::state::Value::F32(t) = &e.value {
            out.insert(format!("param.{}", e.name), vals(t));
        }
    }
    out
}

/// A down or up conv's bias feeds a training-mode BatchNorm: its gradient is zero in exact
/// arithmetic and rounding noise in both implementations (and Adam's first step of it moves
/// by the learning rate in the direction of that noise).
fn zero_in_exact_arithmetic(name: &str) -> bool {
    name.ends_with("conv.0.bias") && (name.contains("_dw.") || name.contains("_up."))
}

/// How many times PyTorch float64's own rounding-level sensitivity a tensor may differ by.
const SENSITIVITY_FACTOR: f64 = 4.0;

/// The bound for tensor `k`: [`YARDSTICK`], or [`SENSITIVITY_FACTOR`] times `s` where that is
/// larger. `s` is the fixture's `sensitivity` of `k` (`tools/accuracy/make_fixtures.py`): the
/// largest relative change of PyTorch float64's own result when the image and every model
/// value are moved by at most one float64 ulp each, over three such moves. Two correct float64
/// implementations round differently inside every operation, a change of that size at every
/// operation's inputs, so where `s` is above `1e-10` neither can be held to `1e-10` against
/// the other.
fn bound(sensitivity: &Value, k: &str) -> f64 {
    let s = sensitivity[k]
        .as_f64()
        .unwrap_or_else(|| panic!("no sensitivity for {k}"));
    YARDSTICK.max(SENSITIVITY_FACTOR * s)
}

/// Holds our float64 spec to PyTorch float64 on parity fixture `name`: every tensor within
/// [`YARDSTICK`], or, when `widened`, within its [`bound`] (for a fixture on which float64
/// itself moves by more than `1e-10` under rounding-sized changes). The gradients that are
/// zero in exact arithmetic are held to their own scale in either case.
fn yardstick(name: &str, widened: bool) {
    let read = |p: String| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root().join(p)).unwrap()).unwrap()
    };
    let f = TensorFile::open(&root().join(format!("tests/fixtures/parity/{name}.safetensors")))
        .unwrap();
    let doc = read(format!("tests/fixtures/accuracy/{name}.yardstick.json"));
    let sketches = doc["tensors"].as_object().unwrap();
    let sensitivity = &doc["sensitivity"];
    let ours = yardstick_outputs(&f);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        sketches.keys().collect::<Vec<_>>(),
        "{name}: the same tensors"
    );
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (mut worst, mut over) = ((0.0f64, String::new()), Vec::new());
    let mut failures = Vec::new();
    for (k, v) in &ours {
        let err = sketch_error(v, &sketches[k]);
        let limit = match (zero_in_exact_arithmetic(k), k.split_once('.').unwrap().0) {
            // Noise: held to the scale of the gradient of the BatchNorm shift right after.
            (true, "grad") => {
                let scale = norm(&ours[&k.replace("conv.0.bias", "conv.1.bias")]);
                assert!(
                    norm(v) <= YARDSTICK * scale,
                    "{name} {k}: {:e} vs {scale:e}",
                    norm(v)
                );
                continue;
            }
            // Adam's first step moves each value by at most lr = 1e-3: two runs differ by at
            // most 2e-3 per value.
            (true, _) => {
                assert!(
                    err <= 2e-3 * (v.len() as f64).sqrt() / norm(v),
                    "{name} {k}: {err:e}"
                );
                continue;
            }
            (false, _) if widened => bound(sensitivity, k),
            (false, _) => YARDSTICK,
        };
        if err > YARDSTICK {
            over.push(err / sensitivity[k].as_f64().unwrap());
        } else if err > worst.0 {
            worst = (err, k.clone());
        }
        if err > limit {
            failures.push(format!("{k}: {err:.3e} (bound {limit:.1e})"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} tensors further from PyTorch float64 than their bound:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let beyond = match over.iter().copied().reduce(f64::max) {
        None => "none beyond 1e-10".to_string(),
        Some(ratio) => format!(
            "{} beyond 1e-10, at most {ratio:.2} times PyTorch float64's own change under one-ulp moves of its inputs",
            over.len()
        ),
    };
    println!(
        "{name}: {} tensors; largest relative difference from PyTorch float64 within 1e-10 {:.2e} ({}); {beyond}",
        ours.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn yardstick_agrees_with_pytorch_float64_on_fixture_a() {
    yardstick("A", false);
}

#[test]
fn yardstick_agrees_with_pytorch_float64_on_fixture_b() {
    yardstick("B", true);
}

#[test]
fn yardstick_agrees_with_pytorch_float64_on_fixture_c() {
    yardstick("C", false);
}

#[test]
fn relative_error_and_ulps_as_defined() {
    let one_up = f32::from_bits(1.0f32.to_bits() + 1);
    // Exact widening: no error at all.
    assert_eq!(measure(&[1.0, -2.5, 0.0], &[1.0, -2.5, 0.0]), (0.0, 0));
    // y32 = [1 + 2^-23, 3], y64 = [1, 3 + 2^-30]: the second rounds to 3 (0 ulp), the first is 1
    // ulp up; error = sqrt((2^-46 + 2^-60) / (1 + (3 + 2^-30)^2)).
    let (rel, ulp) = measure(&[one_up, 3.0], &[1.0, 3.0 + 2f64.powi(-30)]);
    let want = ((2f64.powi(-46) + 2f64.powi(-60)) / (1.0 + (3.0 + 2f64.powi(-30)).powi(2))).sqrt();
    assert!((rel - want).abs() <= 1e-15 * want, "{rel} vs {want}");
    assert_eq!(ulp, 1);
    // Across zero: -0.0 and the smallest positive subnormal are 2 apart (+0 between them).
    assert_eq!(measure(&[-0.0], &[f32::from_bits(1) as f64]).1, 2);
    // An all-zero yardstick gives the absolute norm.
    assert_eq!(measure(&[3.0, 4.0], &[0.0, 0.0]).0, 5.0);
}

fn small_state(in_channels: usize, seed: u64) -> VNetState {
    VNetState::init(
        VNetConfig {
            in_channels,
            n_classes: 4,
            n_filters: 4,
        },
        seed,
    )
}

#[test]
fn forward_table_covers_every_unit_and_is_float32_accurate() {
    let state = small_state(4, 3);
    let x = random_tensor(&[1, 4, 16, 16, 16], 5);
    let t = forward_accuracy(&state, &x, false).unwrap();
    // Per unit: conv, batchnorm, relu; four skip additions; out_conv; the probabilities.
    let units = protokd_reference::state::blocks(&state.config)
        .iter()
        .map(|b| b.4)
        .sum::<usize>();
    assert_eq!(t.rows.len(), 3 * units + 4 + 2);
    assert_eq!(t.rows[0].operation, "block_one.conv.0 conv");
    assert_eq!(t.rows[1].operation, "block_one.conv.1 batchnorm");
    assert_eq!(t.rows[2].operation, "relu after block_one.conv.1");
    let last = t.rows.last().unwrap();
    assert_eq!(last.operation, "probabilities (softmax of the logits)");
    assert_eq!(last.elements, 4 * 16 * 16 * 16);
    // Evaluation mode at initialisation (running mean 0, variance 1): every operation is well
    // conditioned, so float32 is within a few ulp of float64 in the norm.
    for r in &t.rows {
        assert!(r.rel_err < 1e-5, "{}: {:e}", r.operation, r.rel_err);
        assert!(
            r.rel_err > 0.0 || r.operation.starts_with("relu"),
            "{}",
            r.operation
        );
    }
    let md = t.markdown();
    assert!(md.contains("| 0 | block_one.conv.0 conv | 16384 |"), "{md}");
}

#[test]
fn step_table_names_the_conditioning_of_fixture_a() {
    let f = TensorFile::open(&root().join("tests/fixtures/parity/A.safetensors")).unwrap();
    let state = |prefix: &str, c: usize| {
        read_state(
            &f,
            prefix,
            VNetConfig {
                in_channels: c,
                n_classes: 4,
                n_filters: 4,
            },
        )
        .unwrap()
    };
    let (teacher, student) = (state("teacher.", 4), state("student.", 1));
    let image = f.f32("image").unwrap();
    let labels: LabelMap = read_labels(&f, 4).unwrap();
    let t = step_accuracy(&StepInputs {
        student: &student,
        teacher: Some(&teacher),
        image: &image,
        labels: &labels,
        channels: &[2],
        config: &StepConfig::default(),
    })
    .unwrap();
    let find = |op: &str| {
        t.rows
            .iter()
            .find(|r| r.operation == op)
            .unwrap_or_else(|| panic!("no row {op}"))
    };
    // A's deepest BatchNorms see 2 values per channel (batch 2, 1^3 voxels at the bottom):
    // the script's README says their variance is far below eps.
    let deep = find("block_five.conv.1 batchnorm");
    assert!(
        deep.notes
            .iter()
            .any(|n| n.contains("batch variance < eps")),
        "{deep:?}"
    );
    let bias = find("gradient block_two_dw.conv.0.bias");
    assert!(
        bias.notes.iter().any(|n| n.contains("exactly zero")),
        "{bias:?}"
    );
    let proto = find("proto gradient (features)");
    assert_eq!(proto.elements, 2 * 4 * 16 * 16 * 16);
    for loss in [
        "loss ce",
        "loss dice",
        "loss kd",
        "loss proto",
        "loss seg",
        "loss total",
    ] {
        assert_eq!(find(loss).elements, 1);
    }
    let params = student.parameters().count();
    assert_eq!(
        t.rows
            .iter()
            .filter(|r| r.operation.starts_with("gradient "))
            .count(),
        params
    );
    assert_eq!(
        t.rows
            .iter()
            .filter(|r| r.operation.starts_with("updated "))
            .count(),
        params
    );
    // The table is what the report embeds: it survives JSON.
    let back: AccuracyTable = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back.rows.len(), t.rows.len());
    for (a, b) in back.rows.iter().zip(&t.rows) {
        assert_eq!(
            (&a.operation, a.max_ulp, &a.notes),
            (&b.operation, b.max_ulp, &b.notes)
        );
        assert!((a.rel_err - b.rel_err).abs() <= 1e-15 * b.rel_err);
    }
}

/// Writes a checkpoint and an input or batch file for the CLI tests.
fn cli_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (student, teacher, batch) = (
        dir.join("s.safetensors"),
        dir.join("t.safetensors"),
        dir.join("b.safetensors"),
    );
    checkpoint::save(
        &student,
        &small_state(1, 2),
        &Modalities::parse("t1ce").unwrap(),
    )
    .unwrap();
    checkpoint::save(&teacher, &small_state(4, 1), &Modalities::all()).unwrap();
    let labels: Vec<f32> = (0..2 * 16 * 16 * 16).map(|i| (i % 7 % 4) as f32).collect();
    write_tensors(
        &batch,
        &[
            (
                "image".into(),
                OutTensor::F32(random_tensor(&[2, 4, 16, 16, 16], 9)),
            ),
            (
                "label".into(),
                OutTensor::F32(Tensor::from_vec(&[2, 1, 16, 16, 16], labels)),
            ),
        ],
        None,
    )
    .unwrap();
    (student, teacher, batch)
}

#[test]
fn audit_forward_and_step_print_the_accuracy_table() {
    let dir = TempDir::new("accuracy-cli");
    let (student, teacher, batch) = cli_files(dir.path());
    let out = dir.path().join("y.safetensors");
    let o = protokd(&[
        "audit",
        "forward",
        "--weights",
        s(&teacher),
        "--input",
        s(&batch),
        "--out",
        s(&out),
        "--accuracy",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("sha256 "), "{stdout}");
    assert!(stdout.contains("### Accuracy against float64"), "{stdout}");
    assert!(stdout.contains("| block_one.conv.0 conv |"), "{stdout}");
    assert!(
        stdout.contains("probabilities (softmax of the logits)"),
        "{stdout}"
    );
    let out = dir.path().join("o.safetensors");
    let o = protokd(&[
        "audit",
        "step",
        "--student",
        s(&student),
        "--teacher",
        s(&teacher),
        "--batch",
        s(&batch),
        "--out",
        s(&out),
        "--accuracy",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for want in [
        "| teacher block_one.conv.0 conv |",
        "| loss proto |",
        "| gradient out_conv.weight |",
        "| updated out_conv.bias |",
        "| parameter gradients |",
    ] {
        assert!(stdout.contains(want), "{want} missing from\n{stdout}");
    }
    // Without the flag, no table.
    let o = protokd(&[
        "audit",
        "forward",
        "--weights",
        s(&teacher),
        "--input",
        s(&batch),
        "--out",
        s(&out),
        "--force",
    ]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("Accuracy"));
}

/// The golden patches as the fixture script reads them (`image`, `label`, `teacher.*`,
/// `student.*`, f32), under `target/accuracy-golden/`. Run before
/// `tools/accuracy/make_fixtures.py golden target/accuracy-golden`.
#[test]
#[ignore = "writes the inputs of the PyTorch golden comparison; see tools/accuracy/README.md"]
fn export_golden_runs() {
    let dir = root().join("target/accuracy-golden");
    std::fs::create_dir_all(&dir).unwrap();
    let dataset = protokd::data::brats::discover(&root().join("golden")).unwrap();
    let (teacher, student) = (small_state(4, 1), small_state(1, 2));
    for case in &dataset.cases {
        let loaded = protokd::data::brats::load_case(case).unwrap();
        let [d, h, w] = loaded.dims();
        let image: Vec<f32> = loaded.images.iter().flat_map(|v| v.data.clone()).collect();
        let labels: Vec<f32> = loaded.labels.unwrap().iter().map(|&l| l as f32).collect();
        let mut t = vec![
            (
                "image".to_string(),
                OutTensor::F32(Tensor::from_vec(&[1, 4, d, h, w], image)),
            ),
            (
                "label".to_string(),
                OutTensor::F32(Tensor::from_vec(&[1, 1, d, h, w], labels)),
            ),
        ];
        t.extend(checkpoint::state_tensors(&teacher, "teacher."));
        t.extend(checkpoint::state_tensors(&student, "student."));
        write_tensors(&dir.join(format!("{}.safetensors", case.id)), &t, None).unwrap();
    }
}

/// `docs/validation/accuracy-golden.json`: the golden patches' tables.
#[test]
#[ignore = "regenerates docs/validation/accuracy-golden.json; see docs/validation/accuracy.md"]
fn regenerate_golden_accuracy() {
    let tables: Vec<AccuracyTable> = golden_accuracy(&root().join("golden"))
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let text = serde_json::to_string_pretty(&tables).unwrap() + "\n";
    protokd::io::files::write_atomic(
        &root().join("docs/validation/accuracy-golden.json"),
        text.as_bytes(),
    )
    .unwrap();
    for t in &tables {
        println!("{}\n{}", t.title, t.summary_markdown());
    }
}

/// `x` moved to its `f32` neighbour below, left alone, or moved to its neighbour above, by
/// `splitmix64(key) % 3` (a one-ulp change, as rounding differently makes).
fn one_ulp_apart(x: f32, key: u64) -> f32 {
    match splitmix64(key) % 3 {
        0 => x.next_down(),
        1 => x,
        _ => x.next_up(),
    }
}

/// A tensor with every value moved by [`one_ulp_apart`], keyed by `seed`, a stream number and
/// the value's index.
fn moved(t: &Tensor, seed: u64, stream: u64) -> Tensor {
    let data = (t.data.iter().enumerate())
        .map(|(i, &x)| one_ulp_apart(x, (seed << 48) ^ (stream << 32) ^ i as u64))
        .collect();
    Tensor::from_vec(&t.shape, data)
}

/// How much the float32 gradients' accuracy on the golden patches is luck: for seed 0 (the
/// golden inputs) and seeds 1 to 8 (the image and every value of both models moved by at most
/// one `f32` ulp each), the median norm-wise relative error of the 89 parameter gradients that
/// are not rounding noise, float32 against float64 on the same moved inputs. Written to
/// `docs/validation/accuracy-spread-protokd.json`; `tools/accuracy/make_fixtures.py spread`
/// does the same for PyTorch.
#[test]
#[ignore]
fn spread_of_golden_gradient_accuracy() {
    let dataset = protokd::data::brats::discover(&root().join("golden")).unwrap();
    let mut doc = serde_json::Map::new();
    for case in &dataset.cases {
        let loaded = protokd::data::brats::load_case(case).unwrap();
        let [d, h, w] = loaded.dims();
        let image = Tensor::from_vec(
            &[1, 4, d, h, w],
            loaded.images.iter().flat_map(|v| v.data.clone()).collect(),
        );
        let labels = LabelMap::new([1, d, h, w], loaded.labels.unwrap());
        let medians: Vec<f64> = (0..9u64)
            .map(|seed| {
                let state = |in_channels, init_seed, stream: u64| {
                    small_state(in_channels, init_seed)
                        .try_map(|_, t| {
                            Ok::<_, ()>(if seed == 0 {
                                t.clone()
                            } else {
                                moved(t, seed, stream)
                            })
                        })
                        .unwrap()
                };
                let (teacher, student) = (state(4, 1, 1), state(1, 2, 2));
                let x = if seed == 0 {
                    image.clone()
                } else {
                    moved(&image, seed, 0)
                };
                let table = step_accuracy(&StepInputs {
                    student: &student,
                    teacher: Some(&teacher),
                    image: &x,
                    labels: &labels,
                    channels: &[2],
                    config: &StepConfig::default(),
                })
                .unwrap();
                let mut errs: Vec<f64> = (table.rows.iter())
                    .filter(|r| {
                        r.operation.starts_with("gradient ") && r.notes.iter().all(|n| n != NOISE)
                    })
                    .map(|r| r.rel_err)
                    .collect();
                assert_eq!(errs.len(), 89, "{}", case.id);
                errs.sort_by(f64::total_cmp);
                errs[errs.len() / 2]
            })
            .collect();
        let shown: Vec<String> = medians.iter().map(|m| format!("{m:.1e}")).collect();
        println!("{}: {}", case.id, shown.join(" "));
        doc.insert(case.id.clone(), serde_json::json!(medians));
    }
    let text = serde_json::to_string_pretty(&Value::Object(doc)).unwrap() + "\n";
    protokd::io::files::write_atomic(
        &root().join("docs/validation/accuracy-spread-protokd.json"),
        text.as_bytes(),
    )
    .unwrap();
}
