//! Integration tests of the `protokd audit forward` and `protokd audit step` commands: the
//! binary is run on small files made here with the library (VNets with n_filters 2, batches
//! 2 x 4 x 16^3), on the happy paths and on bad input.
//!
//! Bad input must end with exit status 1 and one line `error: ...` on stderr that names the
//! file and the tensor or value and what was expected; never a panic; and the output file is
//! neither created nor overwritten. Each kind of bad input is a table of refusals run by
//! `common::refusal`; run with `--nocapture` to see every error message.

use crate::common::refusal::{file, refusal, refused, Refusal};
use crate::common::{protokd, s, TempDir};
use protokd::io::checkpoint::{self, state_tensors};
use protokd::io::hash::sha256_hex;
use protokd::io::tensorfile::{serialize, write_tensors, OutTensor};
use protokd::modality::Modalities;
use protokd_reference::state::{state_dict_spec, Entry, Role, VNetConfig, VNetState, Value};
use protokd_reference::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const NF: usize = 2;
const CLASSES: usize = 4;
/// Batch size and spatial size of the test batches.
const N: usize = 2;
const DHW: [usize; 3] = [16, 16, 16];
/// `num_batches_tracked` of every BatchNorm in the test checkpoints.
const TRACKED: i64 = 3;

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// Asserts success and returns stdout.
fn ok(args: &[&str]) -> String {
    let o = protokd(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "protokd {args:?} failed ({}): {stderr}",
        o.status
    );
    assert!(
        stderr.is_empty(),
        "protokd {args:?} wrote to stderr: {stderr}"
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Deterministic values in [-2, 2) (xorshift64*).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 bits
            (r as f32 / 16_777_216.0) * 4.0 - 2.0
        })
        .collect()
}

fn image(n: usize, c: usize, dhw: [usize; 3], seed: u64) -> Tensor {
    let shape = [n, c, dhw[0], dhw[1], dhw[2]];
    Tensor::from_vec(&shape, values(shape.iter().product(), seed))
}

/// Labels `[n, 1, D, H, W]`: blocks of 4^3 voxels cycling through the four classes, so every
/// class is present in every sample.
fn labels(n: usize, dhw: [usize; 3]) -> Vec<f64> {
    let mut v = Vec::with_capacity(n * dhw.iter().product::<usize>());
    for i in 0..n {
        for d in 0..dhw[0] {
            for h in 0..dhw[1] {
                for w in 0..dhw[2] {
                    v.push(((i + d / 4 + h / 4 + w / 4) % 4) as f64);
                }
            }
        }
    }
    v
}

/// Little-endian bytes of `values` in `dtype` (I64, I32, U8, F32 or F64).
fn encode(values: &[f64], dtype: Dtype) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| match dtype {
            Dtype::I64 => (v as i64).to_le_bytes().to_vec(),
            Dtype::I32 => (v as i32).to_le_bytes().to_vec(),
            Dtype::U8 => vec![v as u8],
            Dtype::F32 => (v as f32).to_le_bytes().to_vec(),
            Dtype::F64 => v.to_le_bytes().to_vec(),
            other => panic!("encode: {other:?}"),
        })
        .collect()
}

/// The tensors of a file read back: name -> (dtype, shape, little-endian bytes).
type FileTensors = std::collections::BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// Tensors to write with the library.
type Named = Vec<(String, OutTensor)>;

/// A raw tensor for [`raw_bytes`]: name, dtype, shape, little-endian bytes.
type Raw = (String, Dtype, Vec<usize>, Vec<u8>);

fn raw_f32(name: &str, t: &Tensor) -> Raw {
    let data = t.data.iter().map(|&v| v as f64).collect::<Vec<_>>();
    (
        name.into(),
        Dtype::F32,
        t.shape.clone(),
        encode(&data, Dtype::F32),
    )
}

fn raw(name: &str, dtype: Dtype, shape: &[usize], values: &[f64]) -> Raw {
    (name.into(), dtype, shape.to_vec(), encode(values, dtype))
}

/// The bytes of a safetensors file of any dtypes (no metadata).
fn raw_bytes(tensors: &[Raw]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// Writes a safetensors file of any dtypes (no metadata).
fn write_raw(path: &Path, tensors: &[Raw]) {
    std::fs::write(path, raw_bytes(tensors)).unwrap();
}

/// A seeded VNet state whose BatchNorms have counted `TRACKED` batches.
fn state(in_channels: usize, seed: u64) -> VNetState {
    let cfg = VNetConfig {
        in_channels,
        n_classes: CLASSES,
        n_filters: NF,
    };
    let entries = VNetState::init(cfg, seed)
        .entries()
        .iter()
        .map(|e| Entry {
            value: match e.role {
                Role::NumBatchesTracked => Value::I64(TRACKED),
                _ => e.value.clone(),
            },
            ..e.clone()
        })
        .collect();
    VNetState::from_entries(cfg, entries)
}

/// A protokd checkpoint of [`state`] recording `modalities`.
fn save_checkpoint(path: &Path, in_channels: usize, seed: u64, modalities: &str) {
    checkpoint::save(
        path,
        &state(in_channels, seed),
        &Modalities::parse(modalities).unwrap(),
    )
    .unwrap();
}

/// A batch file: a four-channel `image` and `label` in `label_dtype`.
fn save_batch(path: &Path, n: usize, dhw: [usize; 3], label_dtype: Dtype) {
    let x = image(n, 4, dhw, 100 + n as u64);
    let lshape = [n, 1, dhw[0], dhw[1], dhw[2]];
    write_raw(
        path,
        &[
            raw_f32("image", &x),
            raw("label", label_dtype, &lshape, &labels(n, dhw)),
        ],
    );
}

/// The tensors of a safetensors file: name -> (dtype, shape, bytes).
fn read_all(path: &Path) -> FileTensors {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

/// Checks the `sha256 <hex>  <name>` lines (then `wrote N tensors to <out>`) against the
/// tensors read back from `out`; returns the names in printed order.
fn check_hashes(stdout: &str, out: &Path) -> Vec<String> {
    let lines: Vec<&str> = stdout.lines().collect();
    let (last, hash_lines) = lines.split_last().expect("no output");
    let tensors = read_all(out);
    assert_eq!(
        *last,
        format!("wrote {} tensors to {}", tensors.len(), out.display())
    );
    let mut names = Vec::new();
    for line in hash_lines {
        let rest = line
            .strip_prefix("sha256 ")
            .unwrap_or_else(|| panic!("{line}"));
        let (hex, name) = rest.split_once("  ").unwrap_or_else(|| panic!("{line}"));
        assert_eq!(hex.len(), 64, "{line}");
        let (_, _, bytes) = tensors
            .get(name)
            .unwrap_or_else(|| panic!("printed tensor `{name}` is not in {}", out.display()));
        assert_eq!(hex, sha256_hex(bytes), "hash of `{name}`");
        names.push(name.to_string());
    }
    assert_eq!(names.len(), tensors.len(), "one line per tensor");
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a tensor printed twice");
    names
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

// ------------------------------------------------------------------------------------------
// Happy paths
// ------------------------------------------------------------------------------------------

// Verifies: R-MTH-4, R-CLI-6
#[test]
fn forward_eval_and_train_write_features_and_logits() {
    let dir = TempDir::new("forward");
    let (w, x) = (dir.join("w.safetensors"), dir.join("x.safetensors"));
    save_checkpoint(&w, 1, 1, "t1ce");
    write_raw(&x, &[raw_f32("image", &image(N, 1, DHW, 7))]);
    let mut outputs = Vec::new();
    for (mode, extra) in [("eval", None), ("train", Some("--train"))] {
        let out = dir.join(&format!("{mode}.safetensors"));
        let mut args = vec!["audit", "forward", "--weights", s(&w), "--input", s(&x)];
        args.extend(["--out", s(&out)]);
        args.extend(extra);
        let stdout = ok(&args);
        let names = check_hashes(&stdout, &out);
        assert_eq!(names, ["features", "logits"], "{mode}");
        let t = read_all(&out);
        let (d, shape, bytes) = &t["features"];
        assert_eq!(
            (*d, shape.as_slice()),
            (Dtype::F32, &[N, NF, 16, 16, 16][..])
        );
        assert!(f32_values(bytes).iter().all(|v| v.is_finite()));
        let (d, shape, bytes) = &t["logits"];
        assert_eq!(
            (*d, shape.as_slice()),
            (Dtype::F32, &[N, CLASSES, 16, 16, 16][..])
        );
        assert!(f32_values(bytes).iter().all(|v| v.is_finite()));
        outputs.push(t);
    }
    assert_ne!(
        outputs[0]["logits"], outputs[1]["logits"],
        "training-mode BatchNorm must differ from evaluation mode"
    );

    // Repeat runs and thread counts: the same bytes.
    let eval = std::fs::read(dir.join("eval.safetensors")).unwrap();
    for threads in ["1", "3"] {
        let out = dir.join(&format!("eval-{threads}.safetensors"));
        ok(&[
            "--threads",
            threads,
            "audit",
            "forward",
            "--weights",
            s(&w),
            "--input",
            s(&x),
            "--out",
            s(&out),
        ]);
        assert_eq!(std::fs::read(&out).unwrap(), eval, "--threads {threads}");
    }
}

/// Checks the output of `audit step` (its stdout and the file `out`): names in order, dtypes,
/// shapes, finite values, counts incremented, parameters moved; returns the output tensors.
fn check_step_output(stdout: &str, out: &Path, student: &VNetState) -> FileTensors {
    let names = check_hashes(stdout, out);
    let t = read_all(out);
    let mut expected: Vec<String> = ["total", "seg", "dice", "ce", "kd", "proto"]
        .iter()
        .map(|l| format!("loss.{l}"))
        .collect();
    expected.extend(student.parameters().map(|(n, _)| format!("grad.{n}")));
    expected.extend(
        student
            .entries()
            .iter()
            .map(|e| format!("param.{}", e.name)),
    );
    assert_eq!(names, expected, "output tensors, in order");
    for l in ["total", "seg", "dice", "ce", "kd", "proto"] {
        let (d, shape, bytes) = &t[&format!("loss.{l}")];
        assert_eq!((*d, shape.len()), (Dtype::F32, 0), "loss.{l}");
        assert!(f32_values(bytes)[0].is_finite(), "loss.{l}");
    }
    for (name, p) in student.parameters() {
        let (d, shape, bytes) = &t[&format!("grad.{name}")];
        assert_eq!((*d, shape), (Dtype::F32, &p.shape), "grad.{name}");
        assert!(
            f32_values(bytes).iter().all(|v| v.is_finite()),
            "grad.{name}"
        );
    }
    for spec in state_dict_spec(&student.config) {
        let (d, shape, bytes) = &t[&format!("param.{}", spec.name)];
        assert_eq!(shape, &spec.shape, "param.{}", spec.name);
        if spec.role == Role::NumBatchesTracked {
            assert_eq!(*d, Dtype::I64, "param.{}", spec.name);
            let n = i64::from_le_bytes(bytes[..].try_into().unwrap());
            assert_eq!(n, TRACKED + 1, "param.{}", spec.name);
        } else {
            assert_eq!(*d, Dtype::F32, "param.{}", spec.name);
            let v = f32_values(bytes);
            if spec.role.trainable() {
                assert_ne!(
                    v,
                    student.tensor(&spec.name).data,
                    "Adam moved {}",
                    spec.name
                );
            }
        }
    }
    t
}

fn loss(t: &FileTensors, l: &str) -> f32 {
    f32_values(&t[&format!("loss.{l}")].2)[0]
}

// Verifies: R-MTH-8
#[test]
fn step_in_every_mode_writes_losses_gradients_and_state() {
    let dir = TempDir::new("step-modes");
    let (stu, tea, b) = (
        dir.join("s.safetensors"),
        dir.join("t.safetensors"),
        dir.join("b.safetensors"),
    );
    save_checkpoint(&stu, 1, 1, "t1ce");
    save_checkpoint(&tea, 4, 2, "t1,t2,t1ce,flair");
    save_batch(&b, N, DHW, Dtype::I64);
    // One output, replaced (--force) by the second and third step.
    let out = dir.join("o.safetensors");
    let o = s(&out);

    let stdout = ok(&[
        "audit",
        "step",
        "--student",
        s(&stu),
        "--teacher",
        s(&tea),
        "--batch",
        s(&b),
        "--out",
        o,
    ]);
    let t = check_step_output(&stdout, &out, &state(1, 1));
    assert!(loss(&t, "kd") > 0.0 && loss(&t, "proto") > 0.0);
    assert!(loss(&t, "total") > loss(&t, "seg"));
    assert_eq!(loss(&t, "seg"), loss(&t, "ce") + loss(&t, "dice"));

    let stdout = ok(&[
        "audit",
        "step",
        "--mode",
        "baseline",
        "--student",
        s(&stu),
        "--batch",
        s(&b),
        "--out",
        o,
        "--force",
    ]);
    let t = check_step_output(&stdout, &out, &state(1, 1));
    assert_eq!((loss(&t, "kd"), loss(&t, "proto")), (0.0, 0.0));
    assert_eq!(loss(&t, "total"), loss(&t, "seg"));

    let stdout = ok(&[
        "audit",
        "step",
        "--mode",
        "teacher",
        "--student",
        s(&tea),
        "--batch",
        s(&b),
        "--out",
        o,
        "--force",
    ]);
    let t = check_step_output(&stdout, &out, &state(4, 2));
    assert_eq!((loss(&t, "kd"), loss(&t, "proto")), (0.0, 0.0));
    assert_eq!(loss(&t, "total"), loss(&t, "seg"));
}

// Verifies: R-MTH-1
#[test]
fn two_channel_student_takes_t1ce_and_flair() {
    let dir = TempDir::new("two-channel");
    let (stu, tea, b) = (
        dir.join("s.safetensors"),
        dir.join("t.safetensors"),
        dir.join("b.safetensors"),
    );
    save_checkpoint(&stu, 2, 3, "t1ce,flair");
    save_checkpoint(&tea, 4, 2, "t1,t2,t1ce,flair");
    save_batch(&b, N, DHW, Dtype::I64);
    let out = dir.join("o.safetensors");
    let stdout = ok(&[
        "audit",
        "step",
        "--student",
        s(&stu),
        "--teacher",
        s(&tea),
        "--batch",
        s(&b),
        "--modality",
        "t1ce,flair",
        "--out",
        s(&out),
    ]);
    check_step_output(&stdout, &out, &state(2, 3));
}

// Verifies: R-NUM-4
#[test]
fn label_dtypes_int64_uint8_float32_give_identical_outputs() {
    let dir = TempDir::new("label-dtypes");
    let (stu, tea) = (dir.join("s.safetensors"), dir.join("t.safetensors"));
    save_checkpoint(&stu, 1, 1, "t1ce");
    save_checkpoint(&tea, 4, 2, "t1,t2,t1ce,flair");
    let mut outs = Vec::new();
    for (tag, dtype) in [("i64", Dtype::I64), ("u8", Dtype::U8), ("f32", Dtype::F32)] {
        let b = dir.join(&format!("b-{tag}.safetensors"));
        save_batch(&b, N, DHW, dtype);
        let out = dir.join(&format!("o-{tag}.safetensors"));
        ok(&[
            "audit",
            "step",
            "--student",
            s(&stu),
            "--teacher",
            s(&tea),
            "--batch",
            s(&b),
            "--out",
            s(&out),
        ]);
        outs.push(std::fs::read(&out).unwrap());
    }
    assert!(
        outs[0] == outs[1],
        "uint8 labels give other outputs than int64"
    );
    assert!(
        outs[0] == outs[2],
        "float32 labels give other outputs than int64"
    );
}

// Verifies: R-NUM-4
#[test]
fn step_repeats_and_thread_counts_give_identical_bytes() {
    let dir = TempDir::new("step-threads");
    let (stu, tea, b) = (
        dir.join("s.safetensors"),
        dir.join("t.safetensors"),
        dir.join("b.safetensors"),
    );
    save_checkpoint(&stu, 1, 1, "t1ce");
    save_checkpoint(&tea, 4, 2, "t1,t2,t1ce,flair");
    save_batch(&b, N, DHW, Dtype::I64);
    let mut runs = Vec::new();
    for (i, threads) in ["1", "3", "3"].into_iter().enumerate() {
        let out = dir.join(&format!("o{i}.safetensors"));
        let stdout = ok(&[
            "--threads",
            threads,
            "audit",
            "step",
            "--student",
            s(&stu),
            "--teacher",
            s(&tea),
            "--batch",
            s(&b),
            "--out",
            s(&out),
        ]);
        // The hash lines (everything but the `wrote ... to <path>` line).
        let hashes: Vec<String> = stdout
            .lines()
            .filter(|l| l.starts_with("sha256 "))
            .map(String::from)
            .collect();
        runs.push((std::fs::read(&out).unwrap(), hashes));
    }
    assert!(runs[0] == runs[1], "--threads 1 and --threads 3 differ");
    assert!(runs[1] == runs[2], "two runs with --threads 3 differ");
}

// ------------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------------

// Every row below is refused with one `error: ...` line and leaves the scratch folder as it was
// (see `common::refusal`): the output given, which holds the sentinel, keeps it.

const SENTINEL: &[u8] = b"sentinel: protokd must not touch this file";

/// The output of the refused commands: `<dir>/out.safetensors`, holding the sentinel.
fn sentinel(dir: &TempDir) -> (PathBuf, Vec<u8>) {
    file(&dir.join("out.safetensors"), SENTINEL)
}

/// The arguments of `audit forward` of `weights` on `input` into `out` (`--train` if `train`).
fn forward_args(weights: &Path, input: &Path, out: &Path, train: bool) -> Vec<String> {
    let args = [
        "audit",
        "forward",
        "--weights",
        s(weights),
        "--input",
        s(input),
    ];
    let train: &[&str] = if train { &["--train"] } else { &[] };
    args.iter()
        .chain(&["--out", s(out)])
        .chain(train)
        .map(|a| a.to_string())
        .collect()
}

/// The arguments of `audit forward` of `weights` on `input` into the sentinel output.
fn forward(dir: &TempDir, weights: &Path, input: &Path, train: bool) -> Vec<String> {
    forward_args(weights, input, &dir.join("out.safetensors"), train)
}

/// The arguments of `audit step` into the sentinel output, with `extra`.
fn step(dir: &TempDir, extra: &[&str]) -> Vec<String> {
    let out = dir.join("out.safetensors");
    ["audit", "step", "--out", s(&out)]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
}

/// The sentinel output and the safetensors file `name` in `dir` holding `tensors`.
fn input(dir: &TempDir, name: &str, tensors: &[Raw]) -> Vec<(PathBuf, Vec<u8>)> {
    vec![sentinel(dir), file(&dir.join(name), raw_bytes(tensors))]
}

// Verifies: R-CLI-1
#[test]
fn bad_image_tensor() {
    let dir = TempDir::new("bad-image");
    let w = dir.join("w.safetensors");
    save_checkpoint(&w, 1, 1, "t1ce");
    let shape = [N, 1, 16, 16, 16];
    let good = image(N, 1, DHW, 7);
    let vals: Vec<f64> = good.data.iter().map(|&v| v as f64).collect();
    let ints: Vec<f64> = vals.iter().map(|v| v.round()).collect();
    let rank4 = Tensor::from_vec(&[N, 16, 16, 16], good.data.clone());
    let mut nan = good.clone();
    nan.data[1234] = f32::NAN;
    let c4 = image(N, 4, DHW, 7);
    let d24 = image(N, 1, [16, 16, 24], 7);
    let n1 = image(1, 1, DHW, 7);
    // The file `name` holding `tensors`, and `audit forward` (eval mode) of `w` on it.
    let prepared = |name: &str, tensors: &[Raw]| input(&dir, name, tensors);
    let eval = |name: &str| forward(&dir, &w, &dir.join(name), false);
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("no tensor `image`",
            prepared("noimage.safetensors", &[raw_f32("picture", &good)]),
            eval("noimage.safetensors"), 1,
            ["noimage.safetensors", "no tensor named `image`", "picture"]),
        refusal("an F64 image",
            prepared("f64.safetensors", &[raw("image", Dtype::F64, &shape, &vals)]),
            eval("f64.safetensors"), 1, ["f64.safetensors", "`image`", "F64", "expected F32"]),
        refusal("an I64 image",
            prepared("i64.safetensors", &[raw("image", Dtype::I64, &shape, &ints)]),
            eval("i64.safetensors"), 1, ["i64.safetensors", "`image`", "I64", "expected F32"]),
        refusal("an I32 image",
            prepared("i32.safetensors", &[raw("image", Dtype::I32, &shape, &ints)]),
            eval("i32.safetensors"), 1, ["i32.safetensors", "`image`", "I32"]),
        refusal("an image of rank 4",
            prepared("rank4.safetensors", &[raw_f32("image", &rank4)]),
            eval("rank4.safetensors"), 1,
            ["rank4.safetensors", "`image`", "[2, 16, 16, 16]", "[N, 1, D, H, W]"]),
        refusal("four channels for a one-channel model",
            prepared("c4.safetensors", &[raw_f32("image", &c4)]),
            eval("c4.safetensors"), 1,
            ["c4.safetensors", "`image`", "4 channels", "expected 1",
             "w.safetensors takes 1 input channels"]),
        refusal("a size that is not a multiple of 16",
            prepared("d24.safetensors", &[raw_f32("image", &d24)]),
            eval("d24.safetensors"), 1,
            ["d24.safetensors", "`image`", "[16, 16, 24]", "multiple of 16"]),
        refusal("a NaN in the image",
            prepared("nan.safetensors", &[raw_f32("image", &nan)]),
            eval("nan.safetensors"), 1, ["nan.safetensors", "`image`", "NaN", "1234"]),
        // N = 1 at 16^3: training-mode BatchNorm sees one value per channel at the deepest
        // level.
        refusal("N = 1 in training mode",
            prepared("n1.safetensors", &[raw_f32("image", &n1)]),
            forward(&dir, &w, &dir.join("n1.safetensors"), true), 1,
            ["n1.safetensors", "`image`", "[1, 1, 16, 16, 16]", "BatchNorm",
             "more than one value per channel", "N >= 2"]),
    ];
    refused(dir.path(), table);
    // ... which is fine in evaluation mode.
    let out = dir.join("n1-eval.safetensors");
    ok(&[
        "audit",
        "forward",
        "--weights",
        s(&w),
        "--input",
        s(&dir.join("n1.safetensors")),
        "--out",
        s(&out),
    ]);
}

// Verifies: R-CLI-1, R-DAT-7
#[test]
fn bad_checkpoint() {
    let dir = TempDir::new("bad-checkpoint");
    let x = dir.join("x.safetensors");
    write_raw(&x, &[raw_f32("image", &image(N, 1, DHW, 7))]);
    let st = state(1, 1);
    // The sentinel output and the state_dict of `st` (no metadata, as PyTorch writes it) as
    // `edit` changes it, in `<dir>/<name>`.
    let variant = |name: &str, edit: &dyn Fn(&mut Named)| {
        let mut t = state_tensors(&st, "");
        edit(&mut t);
        let bytes = serialize(&t, None).unwrap();
        vec![sentinel(&dir), file(&dir.join(name), bytes)]
    };
    let set = |t: &mut Named, name: &str, v: OutTensor| {
        let i = t.iter().position(|(n, _)| n == name).unwrap();
        t[i].1 = v;
    };
    let eval = |name: &str| forward(&dir, &dir.join(name), &x, false);

    // The unchanged state_dict loads.
    let good = dir.join("good.safetensors");
    write_tensors(&good, &state_tensors(&st, ""), None).unwrap();
    ok(&[
        "audit",
        "forward",
        "--weights",
        s(&good),
        "--input",
        s(&x),
        "--out",
        s(&dir.join("good-out.safetensors")),
    ]);

    let mut inf = st.tensor("block_two.conv.0.weight").clone();
    inf.data[5] = f32::INFINITY;
    let inf = OutTensor::F32(inf);
    let bias = || OutTensor::F32(Tensor::zeros(&[NF]));
    let five = || OutTensor::F32(Tensor::zeros(&[2 * NF + 1]));
    let nbt_f32 = || OutTensor::F32(Tensor::from_vec(&[], vec![3.0]));
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("an infinite weight",
            variant("inf.safetensors", &|t| set(t, "block_two.conv.0.weight", inf.clone())),
            eval("inf.safetensors"), 1,
            ["inf.safetensors", "`block_two.conv.0.weight`", "inf", "non-finite"]),
        refusal("a missing tensor",
            variant("missing.safetensors",
                &|t| t.retain(|(n, _)| n != "block_three.conv.4.running_var")),
            eval("missing.safetensors"), 1,
            ["missing.safetensors", "no tensor named `block_three.conv.4.running_var`"]),
        refusal("an unexpected tensor",
            variant("extra.safetensors", &|t| t.push(("block_one.conv.0.bias".into(), bias()))),
            eval("extra.safetensors"), 1,
            ["extra.safetensors", "unexpected tensor `block_one.conv.0.bias`"]),
        refusal("a tensor of the wrong shape",
            variant("misshaped.safetensors", &|t| set(t, "block_two.conv.1.weight", five())),
            eval("misshaped.safetensors"), 1,
            ["misshaped.safetensors", "`block_two.conv.1.weight`", "shape [5]", "expected [4]"]),
        refusal("an F32 num_batches_tracked",
            variant("nbt-f32.safetensors",
                &|t| set(t, "block_one.conv.1.num_batches_tracked", nbt_f32())),
            eval("nbt-f32.safetensors"), 1,
            ["nbt-f32.safetensors", "`block_one.conv.1.num_batches_tracked`", "F32",
             "expected an I64 scalar"]),
    ];
    refused(dir.path(), table);
}

// Verifies: R-CLI-1
#[test]
fn bad_files() {
    let dir = TempDir::new("bad-files");
    let (w, x) = (dir.join("w.safetensors"), dir.join("x.safetensors"));
    save_checkpoint(&w, 1, 1, "t1ce");
    write_raw(&x, &[raw_f32("image", &image(N, 1, DHW, 7))]);
    let random: Vec<u8> = values(1000, 9)
        .iter()
        .map(|v| (v.to_bits() >> 7) as u8)
        .collect();
    let (rnd, empty, nowhere) = (
        dir.join("random.safetensors"),
        dir.join("empty.safetensors"),
        dir.join("nonexistent.safetensors"),
    );
    let random_file = || vec![sentinel(&dir), file(&rnd, random.clone())];
    let empty_file = || vec![sentinel(&dir), file(&empty, b"")];
    let random_words = ["random.safetensors", "not a valid safetensors file"];
    let empty_words = ["empty.safetensors", "not a valid safetensors file"];
    let cannot_read = ["cannot read", "nonexistent.safetensors"];
    // A failing command does not create its output file either.
    let absent = dir.join("absent-out.safetensors");
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("random bytes as weights", random_file(), forward(&dir, &rnd, &x, false), 1,
            random_words),
        refusal("random bytes as input", random_file(), forward(&dir, &w, &rnd, false), 1,
            random_words),
        refusal("empty weights", empty_file(), forward(&dir, &empty, &x, false), 1, empty_words),
        refusal("an empty input", empty_file(), forward(&dir, &w, &empty, false), 1, empty_words),
        refusal("no weights file", vec![sentinel(&dir)], forward(&dir, &nowhere, &x, false), 1,
            cannot_read),
        refusal("no input file", vec![sentinel(&dir)], forward(&dir, &w, &nowhere, false), 1,
            cannot_read),
        refusal("no input file, output absent", vec![],
            forward_args(&w, &nowhere, &absent, false), 1, ["nonexistent.safetensors"]),
    ];
    refused(dir.path(), table);
}

// Verifies: R-CLI-1
#[test]
fn bad_labels() {
    let dir = TempDir::new("bad-labels");
    let (stu, tea) = (dir.join("s.safetensors"), dir.join("t.safetensors"));
    save_checkpoint(&stu, 1, 1, "t1ce");
    save_checkpoint(&tea, 4, 2, "t1,t2,t1ce,flair");
    let x = image(N, 4, DHW, 5);
    let lshape = [N, 1, 16, 16, 16];
    let lab = labels(N, DHW);
    // `audit step` of the student and teacher on the batch `name`.
    let batch = |name: &str| {
        let b = dir.join(name);
        step(
            &dir,
            &["--student", s(&stu), "--teacher", s(&tea), "--batch", s(&b)],
        )
    };
    // A label value outside 0..=3 at flat index 777: (case, file, dtype, value, as shown).
    let values = [
        ("label 4 as uint8", "l4.safetensors", Dtype::U8, 4.0, "4"),
        ("label 4 as int64", "l4i.safetensors", Dtype::I64, 4.0, "4"),
        ("label -1", "lneg.safetensors", Dtype::I64, -1.0, "-1"),
        ("label 1.5", "lhalf.safetensors", Dtype::F32, 1.5, "1.5"),
    ];
    let mut table: Vec<Refusal> = values
        .iter()
        .map(|&(case, name, dtype, value, shown)| {
            let mut bad = lab.clone();
            bad[777] = value;
            let tensors = [raw_f32("image", &x), raw("label", dtype, &lshape, &bad)];
            let shown = format!("holds {shown} at flat index 777");
            let words = [name, "`label`", &shown, "integers in 0..=3"];
            refusal(case, input(&dir, name, &tensors), batch(name), 1, words)
        })
        .collect();
    let big = raw(
        "label",
        Dtype::I64,
        &[N, 1, 16, 16, 32],
        &labels(N, [16, 16, 32]),
    );
    let mut lab1 = lab.clone();
    lab1[777] = 1.0;
    let rank4 = raw("label", Dtype::I64, &[N, 16, 16, 16], &lab1);
    let image = || raw_f32("image", &x);
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    table.extend([
        refusal("labels of another shape than the image",
            input(&dir, "lshape.safetensors", &[image(), big]),
            batch("lshape.safetensors"), 1,
            ["lshape.safetensors", "`label` has shape [2, 1, 16, 16, 32]",
             "`image` has shape [2, 4, 16, 16, 16]", "expected label shape [2, 1, 16, 16, 16]"]),
        refusal("labels of rank 4",
            input(&dir, "lrank.safetensors", &[image(), rank4]),
            batch("lrank.safetensors"), 1,
            ["lrank.safetensors", "`label`", "[2, 16, 16, 16]", "[N, 1, D, H, W]"]),
        refusal("no labels",
            input(&dir, "nolabel.safetensors", &[image()]),
            batch("nolabel.safetensors"), 1,
            ["nolabel.safetensors", "no tensor named `label`"]),
    ]);
    refused(dir.path(), table);
}

// Verifies: R-CLI-1
#[test]
fn bad_step_options_and_batches() {
    let dir = TempDir::new("bad-step");
    let (stu, tea, b) = (
        dir.join("s.safetensors"),
        dir.join("t.safetensors"),
        dir.join("b.safetensors"),
    );
    save_checkpoint(&stu, 1, 1, "t1ce");
    save_checkpoint(&tea, 4, 2, "t1,t2,t1ce,flair");
    save_batch(&b, N, DHW, Dtype::I64);
    // A one-channel teacher; a two-channel student with and without recorded modalities (the
    // latter as PyTorch writes it); a batch of N = 1 at 16^3.
    let (tea1, stu2, stu2_plain, bn1) = (
        dir.join("t1.safetensors"),
        dir.join("s2.safetensors"),
        dir.join("s2-plain.safetensors"),
        dir.join("b-n1.safetensors"),
    );
    save_checkpoint(&tea1, 1, 2, "t1");
    save_checkpoint(&stu2, 2, 3, "t1ce,flair");
    write_tensors(&stu2_plain, &state_tensors(&state(2, 3), ""), None).unwrap();
    save_batch(&bn1, 1, DHW, Dtype::I64);
    let (stu, tea, b) = (s(&stu), s(&tea), s(&b));
    let (tea1, stu2, stu2_plain) = (s(&tea1), s(&stu2), s(&stu2_plain));
    let lab = labels(N, DHW);
    let mut nan = image(N, 4, DHW, 5);
    nan.data[99] = f32::NAN;
    // The sentinel output and a batch file `name` of `image` and the labels.
    let with_image = |name: &str, image: &Tensor| {
        let label = raw("label", Dtype::I64, &[N, 1, 16, 16, 16], &lab);
        input(&dir, name, &[raw_f32("image", image), label])
    };
    // `audit step` of the student and the teacher on the batch `b`.
    let batch = |b: &Path| step(&dir, &["--student", stu, "--teacher", tea, "--batch", s(b)]);
    let t1ce = ["--modality", "t1ce"];
    let out = || vec![sentinel(&dir)];
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("--mode protokd without a teacher", out(),
            step(&dir, &["--student", stu, "--batch", b]), 1, ["--mode protokd", "--teacher"]),
        refusal("a one-channel teacher", out(),
            step(&dir, &["--student", stu, "--teacher", tea1, "--batch", b]), 1,
            ["t1.safetensors", "1 channels", "expected 4 channels"]),
        refusal("an unknown modality", out(),
            step(&dir, &["--student", stu, "--teacher", tea, "--batch", b, "--modality", "t7"]),
            1, ["unknown modality `t7`", "t1, t2, t1ce, flair"]),
        refusal("--modality against the recorded modalities", out(),
            step(&dir, &[&["--student", stu2, "--teacher", tea, "--batch", b][..], &t1ce].concat()),
            1, ["s2.safetensors", "t1ce", "t1ce,flair"]),
        // The same without the recorded modalities (a PyTorch-written student).
        refusal("--modality against the channels of a plain state_dict", out(),
            step(&dir, &[&["--student", stu2_plain, "--teacher", tea, "--batch", b][..], &t1ce]
                .concat()),
            1, ["s2-plain.safetensors", "2 input channels", "1 (t1ce)"]),
        refusal("a plain two-channel state_dict without --modality", out(),
            step(&dir, &["--student", stu2_plain, "--teacher", tea, "--batch", b]), 1,
            ["s2-plain.safetensors", "does not record its modalities", "--modality"]),
        // The batch must hold all four channels.
        refusal("a one-channel batch", with_image("b-1ch.safetensors", &image(N, 1, DHW, 5)),
            batch(&dir.join("b-1ch.safetensors")), 1,
            ["b-1ch.safetensors", "`image` has 1 channels", "expected 4", "all four modalities"]),
        refusal("a batch of N = 1 at 16^3", out(), batch(&bn1), 1,
            ["b-n1.safetensors", "`image`", "[1, 4, 16, 16, 16]", "BatchNorm",
             "more than one value per channel", "N >= 2"]),
        refusal("a NaN in the batch's image", with_image("b-nan.safetensors", &nan),
            batch(&dir.join("b-nan.safetensors")), 1,
            ["b-nan.safetensors", "`image`", "NaN", "99"]),
    ];
    refused(dir.path(), table);
}
