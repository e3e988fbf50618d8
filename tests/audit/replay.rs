//! Integration tests of the `protokd audit forward` and `protokd audit step` commands: the
//! binary is run on small files made here with the library (VNets with n_filters 2, batches
//! 2 x 4 x 16^3), on the happy paths and on bad input.
//!
//! Bad input must end with exit status 1 and one line `error: ...` on stderr that names the
//! file and the tensor or value and what was expected; never a panic; and the output file is
//! neither created nor overwritten. Run with `--nocapture` to see every error message.

use crate::common::{protokd, s, TempDir};
use protokd::io::checkpoint::{self, state_tensors};
use protokd::io::hash::sha256_hex;
use protokd::io::tensorfile::{write_tensors, OutTensor};
use protokd::modality::Modalities;
use protokd_reference::state::{state_dict_spec, Entry, Role, VNetConfig, VNetState, Value};
use protokd_reference::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::BTreeSet;
use std::path::Path;

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

/// A raw tensor for [`write_raw`]: name, dtype, shape, little-endian bytes.
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

/// Writes a safetensors file of any dtypes (no metadata).
fn write_raw(path: &Path, tensors: &[Raw]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
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
    ]);
    let t = check_step_output(&stdout, &out, &state(4, 2));
    assert_eq!((loss(&t, "kd"), loss(&t, "proto")), (0.0, 0.0));
    assert_eq!(loss(&t, "total"), loss(&t, "seg"));
}

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

const SENTINEL: &[u8] = b"sentinel: protokd must not touch this file";

/// Runs a command that must fail: writes the sentinel to `out` first (unless the name of `out`
/// contains `absent`: then `out` must not be created), then checks the exit status, that stderr is one `error: ...` line holding every
/// string of `must`, no panic, and `out` unchanged (or still absent). Returns the message.
fn fails(args: &[&str], out: &Path, must: &[&str]) -> String {
    let create_sentinel = !out.to_string_lossy().contains("absent");
    if create_sentinel {
        std::fs::write(out, SENTINEL).unwrap();
    }
    let o = protokd(args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    println!("{stderr}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "protokd {args:?} must fail with status 1; stderr: {stderr}"
    );
    assert!(
        o.stdout.is_empty(),
        "stdout of a failing command: {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    for bad in ["panicked", "RUST_BACKTRACE", "internal error"] {
        assert!(!stderr.contains(bad), "protokd {args:?} panicked: {stderr}");
    }
    let line = stderr.strip_suffix('\n').unwrap_or(&stderr);
    assert!(!line.contains('\n'), "more than one line: {stderr}");
    assert!(line.starts_with("error: "), "{stderr}");
    for m in must {
        assert!(line.contains(m), "`{m}` missing from: {stderr}");
    }
    if create_sentinel {
        assert_eq!(
            std::fs::read(out).unwrap(),
            SENTINEL,
            "{} was overwritten",
            out.display()
        );
    } else {
        assert!(!out.exists(), "{} was created", out.display());
    }
    // No temporary file left behind either.
    let dir = out.parent().unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "temporary file {name} left behind");
    }
    line.to_string()
}

/// `audit forward` of `weights` on `input` (to `<dir>/out.safetensors`) must fail.
fn forward_fails(
    dir: &TempDir,
    weights: &Path,
    input: &Path,
    train: bool,
    must: &[&str],
) -> String {
    let out = dir.join("out.safetensors");
    let mut args = vec![
        "audit",
        "forward",
        "--weights",
        s(weights),
        "--input",
        s(input),
    ];
    args.extend(["--out", s(&out)]);
    if train {
        args.push("--train");
    }
    fails(&args, &out, must)
}

#[test]
fn bad_image_tensor() {
    let dir = TempDir::new("bad-image");
    let w = dir.join("w.safetensors");
    save_checkpoint(&w, 1, 1, "t1ce");
    let x = |name: &str| dir.join(name);
    let shape = [N, 1, 16, 16, 16];
    let good = image(N, 1, DHW, 7);
    let vals: Vec<f64> = good.data.iter().map(|&v| v as f64).collect();

    write_raw(&x("noimage.safetensors"), &[raw_f32("picture", &good)]);
    forward_fails(
        &dir,
        &w,
        &x("noimage.safetensors"),
        false,
        &["noimage.safetensors", "no tensor named `image`", "picture"],
    );

    write_raw(
        &x("f64.safetensors"),
        &[raw("image", Dtype::F64, &shape, &vals)],
    );
    forward_fails(
        &dir,
        &w,
        &x("f64.safetensors"),
        false,
        &["f64.safetensors", "`image`", "F64", "expected F32"],
    );

    let ints: Vec<f64> = vals.iter().map(|v| v.round()).collect();
    write_raw(
        &x("i64.safetensors"),
        &[raw("image", Dtype::I64, &shape, &ints)],
    );
    forward_fails(
        &dir,
        &w,
        &x("i64.safetensors"),
        false,
        &["i64.safetensors", "`image`", "I64", "expected F32"],
    );
    write_raw(
        &x("i32.safetensors"),
        &[raw("image", Dtype::I32, &shape, &ints)],
    );
    forward_fails(
        &dir,
        &w,
        &x("i32.safetensors"),
        false,
        &["i32.safetensors", "`image`", "I32"],
    );

    let rank4 = Tensor::from_vec(&[N, 16, 16, 16], good.data.clone());
    write_raw(&x("rank4.safetensors"), &[raw_f32("image", &rank4)]);
    forward_fails(
        &dir,
        &w,
        &x("rank4.safetensors"),
        false,
        &[
            "rank4.safetensors",
            "`image`",
            "[2, 16, 16, 16]",
            "[N, 1, D, H, W]",
        ],
    );

    write_raw(
        &x("c4.safetensors"),
        &[raw_f32("image", &image(N, 4, DHW, 7))],
    );
    forward_fails(
        &dir,
        &w,
        &x("c4.safetensors"),
        false,
        &[
            "c4.safetensors",
            "`image`",
            "4 channels",
            "expected 1",
            "w.safetensors takes 1 input channels",
        ],
    );

    write_raw(
        &x("d24.safetensors"),
        &[raw_f32("image", &image(N, 1, [16, 16, 24], 7))],
    );
    forward_fails(
        &dir,
        &w,
        &x("d24.safetensors"),
        false,
        &[
            "d24.safetensors",
            "`image`",
            "[16, 16, 24]",
            "multiple of 16",
        ],
    );

    let mut nan = good.clone();
    nan.data[1234] = f32::NAN;
    write_raw(&x("nan.safetensors"), &[raw_f32("image", &nan)]);
    forward_fails(
        &dir,
        &w,
        &x("nan.safetensors"),
        false,
        &["nan.safetensors", "`image`", "NaN", "1234"],
    );

    // N = 1 at 16^3: training-mode BatchNorm sees one value per channel at the deepest level.
    write_raw(
        &x("n1.safetensors"),
        &[raw_f32("image", &image(1, 1, DHW, 7))],
    );
    forward_fails(
        &dir,
        &w,
        &x("n1.safetensors"),
        true,
        &[
            "n1.safetensors",
            "`image`",
            "[1, 1, 16, 16, 16]",
            "BatchNorm",
            "more than one value per channel",
            "N >= 2",
        ],
    );
    // ... which is fine in evaluation mode.
    let out = dir.join("n1-eval.safetensors");
    ok(&[
        "audit",
        "forward",
        "--weights",
        s(&w),
        "--input",
        s(&x("n1.safetensors")),
        "--out",
        s(&out),
    ]);
}

#[test]
fn bad_checkpoint() {
    let dir = TempDir::new("bad-checkpoint");
    let x = dir.join("x.safetensors");
    write_raw(&x, &[raw_f32("image", &image(N, 1, DHW, 7))]);
    let st = state(1, 1);
    let variant = |file: &str, edit: &dyn Fn(&mut Named)| {
        let mut t = state_tensors(&st, "");
        edit(&mut t);
        let p = dir.join(file);
        write_tensors(&p, &t, None).unwrap();
        p
    };
    let set = |t: &mut Named, name: &str, v: OutTensor| {
        let i = t.iter().position(|(n, _)| n == name).unwrap();
        t[i].1 = v;
    };

    // The unchanged state_dict (no metadata, as PyTorch writes it) loads.
    let good = variant("good.safetensors", &|_| {});
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

    let w = variant("inf.safetensors", &|t| {
        let mut v = st.tensor("block_two.conv.0.weight").clone();
        v.data[5] = f32::INFINITY;
        set(t, "block_two.conv.0.weight", OutTensor::F32(v));
    });
    forward_fails(
        &dir,
        &w,
        &x,
        false,
        &[
            "inf.safetensors",
            "`block_two.conv.0.weight`",
            "inf",
            "non-finite",
        ],
    );

    let w = variant("missing.safetensors", &|t| {
        t.retain(|(n, _)| n != "block_three.conv.4.running_var")
    });
    forward_fails(
        &dir,
        &w,
        &x,
        false,
        &[
            "missing.safetensors",
            "no tensor named `block_three.conv.4.running_var`",
        ],
    );

    let w = variant("extra.safetensors", &|t| {
        t.push((
            "block_one.conv.0.bias".into(),
            OutTensor::F32(Tensor::zeros(&[NF])),
        ))
    });
    forward_fails(
        &dir,
        &w,
        &x,
        false,
        &[
            "extra.safetensors",
            "unexpected tensor `block_one.conv.0.bias`",
        ],
    );

    let w = variant("misshaped.safetensors", &|t| {
        set(
            t,
            "block_two.conv.1.weight",
            OutTensor::F32(Tensor::zeros(&[2 * NF + 1])),
        )
    });
    forward_fails(
        &dir,
        &w,
        &x,
        false,
        &[
            "misshaped.safetensors",
            "`block_two.conv.1.weight`",
            "shape [5]",
            "expected [4]",
        ],
    );

    let w = variant("nbt-f32.safetensors", &|t| {
        set(
            t,
            "block_one.conv.1.num_batches_tracked",
            OutTensor::F32(Tensor::from_vec(&[], vec![3.0])),
        )
    });
    forward_fails(
        &dir,
        &w,
        &x,
        false,
        &[
            "nbt-f32.safetensors",
            "`block_one.conv.1.num_batches_tracked`",
            "F32",
            "expected an I64 scalar",
        ],
    );
}

#[test]
fn bad_files() {
    let dir = TempDir::new("bad-files");
    let (w, x) = (dir.join("w.safetensors"), dir.join("x.safetensors"));
    save_checkpoint(&w, 1, 1, "t1ce");
    write_raw(&x, &[raw_f32("image", &image(N, 1, DHW, 7))]);

    let random = dir.join("random.safetensors");
    let bytes: Vec<u8> = values(1000, 9)
        .iter()
        .map(|v| (v.to_bits() >> 7) as u8)
        .collect();
    std::fs::write(&random, bytes).unwrap();
    forward_fails(
        &dir,
        &random,
        &x,
        false,
        &["random.safetensors", "not a valid safetensors file"],
    );
    forward_fails(
        &dir,
        &w,
        &random,
        false,
        &["random.safetensors", "not a valid safetensors file"],
    );

    let empty = dir.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    forward_fails(
        &dir,
        &empty,
        &x,
        false,
        &["empty.safetensors", "not a valid safetensors file"],
    );
    forward_fails(
        &dir,
        &w,
        &empty,
        false,
        &["empty.safetensors", "not a valid safetensors file"],
    );

    let nowhere = dir.join("nonexistent.safetensors");
    forward_fails(
        &dir,
        &nowhere,
        &x,
        false,
        &["cannot read", "nonexistent.safetensors"],
    );
    forward_fails(
        &dir,
        &w,
        &nowhere,
        false,
        &["cannot read", "nonexistent.safetensors"],
    );

    // A failing command does not create its output file.
    let absent = dir.join("absent-out.safetensors");
    fails(
        &[
            "audit",
            "forward",
            "--weights",
            s(&w),
            "--input",
            s(&nowhere),
            "--out",
            s(&absent),
        ],
        &absent,
        &["nonexistent.safetensors"],
    );
}

/// `audit step` with `extra` arguments must fail.
fn step_fails(dir: &TempDir, extra: &[&str], must: &[&str]) -> String {
    let out = dir.join("out.safetensors");
    let mut args = vec!["audit", "step", "--out", s(&out)];
    args.extend(extra);
    fails(&args, &out, must)
}

#[test]
fn bad_labels() {
    let dir = TempDir::new("bad-labels");
    let (stu, tea) = (dir.join("s.safetensors"), dir.join("t.safetensors"));
    save_checkpoint(&stu, 1, 1, "t1ce");
    save_checkpoint(&tea, 4, 2, "t1,t2,t1ce,flair");
    let x = image(N, 4, DHW, 5);
    let lshape = [N, 1, 16, 16, 16];
    let mut lab = labels(N, DHW);
    for (file, dtype, value, shown) in [
        ("l4.safetensors", Dtype::U8, 4.0, "4"),
        ("l4i.safetensors", Dtype::I64, 4.0, "4"),
        ("lneg.safetensors", Dtype::I64, -1.0, "-1"),
        ("lhalf.safetensors", Dtype::F32, 1.5, "1.5"),
    ] {
        lab[777] = value;
        let b = dir.join(file);
        write_raw(
            &b,
            &[raw_f32("image", &x), raw("label", dtype, &lshape, &lab)],
        );
        let args = ["--student", s(&stu), "--teacher", s(&tea), "--batch", s(&b)];
        step_fails(
            &dir,
            &args,
            &[
                file,
                "`label`",
                &format!("holds {shown} at flat index 777"),
                "integers in 0..=3",
            ],
        );
    }
    lab[777] = 1.0;

    let b = dir.join("lshape.safetensors");
    let big = labels(N, [16, 16, 32]);
    write_raw(
        &b,
        &[
            raw_f32("image", &x),
            raw("label", Dtype::I64, &[N, 1, 16, 16, 32], &big),
        ],
    );
    step_fails(
        &dir,
        &["--student", s(&stu), "--teacher", s(&tea), "--batch", s(&b)],
        &[
            "lshape.safetensors",
            "`label` has shape [2, 1, 16, 16, 32]",
            "`image` has shape [2, 4, 16, 16, 16]",
            "expected label shape [2, 1, 16, 16, 16]",
        ],
    );

    let b = dir.join("lrank.safetensors");
    write_raw(
        &b,
        &[
            raw_f32("image", &x),
            raw("label", Dtype::I64, &[N, 16, 16, 16], &lab),
        ],
    );
    step_fails(
        &dir,
        &["--student", s(&stu), "--teacher", s(&tea), "--batch", s(&b)],
        &[
            "lrank.safetensors",
            "`label`",
            "[2, 16, 16, 16]",
            "[N, 1, D, H, W]",
        ],
    );

    let b = dir.join("nolabel.safetensors");
    write_raw(&b, &[raw_f32("image", &x)]);
    step_fails(
        &dir,
        &["--student", s(&stu), "--teacher", s(&tea), "--batch", s(&b)],
        &["nolabel.safetensors", "no tensor named `label`"],
    );
}

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
    let (stu, tea, b) = (s(&stu), s(&tea), s(&b));

    step_fails(
        &dir,
        &["--student", stu, "--batch", b],
        &["--mode protokd", "--teacher"],
    );

    let tea1 = dir.join("t1.safetensors");
    save_checkpoint(&tea1, 1, 2, "t1");
    step_fails(
        &dir,
        &["--student", stu, "--teacher", s(&tea1), "--batch", b],
        &["t1.safetensors", "1 channels", "expected 4 channels"],
    );

    step_fails(
        &dir,
        &[
            "--student",
            stu,
            "--teacher",
            tea,
            "--batch",
            b,
            "--modality",
            "t7",
        ],
        &["unknown modality `t7`", "t1, t2, t1ce, flair"],
    );

    let stu2 = dir.join("s2.safetensors");
    save_checkpoint(&stu2, 2, 3, "t1ce,flair");
    step_fails(
        &dir,
        &[
            "--student",
            s(&stu2),
            "--teacher",
            tea,
            "--batch",
            b,
            "--modality",
            "t1ce",
        ],
        &["s2.safetensors", "t1ce", "t1ce,flair"],
    );
    // The same without the recorded modalities (a PyTorch-written student).
    let stu2_plain = dir.join("s2-plain.safetensors");
    write_tensors(&stu2_plain, &state_tensors(&state(2, 3), ""), None).unwrap();
    step_fails(
        &dir,
        &[
            "--student",
            s(&stu2_plain),
            "--teacher",
            tea,
            "--batch",
            b,
            "--modality",
            "t1ce",
        ],
        &["s2-plain.safetensors", "2 input channels", "1 (t1ce)"],
    );
    step_fails(
        &dir,
        &["--student", s(&stu2_plain), "--teacher", tea, "--batch", b],
        &[
            "s2-plain.safetensors",
            "does not record its modalities",
            "--modality",
        ],
    );

    // The batch must hold all four channels.
    let b1 = dir.join("b-1ch.safetensors");
    let lab = labels(N, DHW);
    write_raw(
        &b1,
        &[
            raw_f32("image", &image(N, 1, DHW, 5)),
            raw("label", Dtype::I64, &[N, 1, 16, 16, 16], &lab),
        ],
    );
    step_fails(
        &dir,
        &["--student", stu, "--teacher", tea, "--batch", s(&b1)],
        &[
            "b-1ch.safetensors",
            "`image` has 1 channels",
            "expected 4",
            "all four modalities",
        ],
    );

    // N = 1 at 16^3.
    let bn1 = dir.join("b-n1.safetensors");
    save_batch(&bn1, 1, DHW, Dtype::I64);
    step_fails(
        &dir,
        &["--student", stu, "--teacher", tea, "--batch", s(&bn1)],
        &[
            "b-n1.safetensors",
            "`image`",
            "[1, 4, 16, 16, 16]",
            "BatchNorm",
            "more than one value per channel",
            "N >= 2",
        ],
    );

    // NaN in the batch's image.
    let bnan = dir.join("b-nan.safetensors");
    let mut x = image(N, 4, DHW, 5);
    x.data[99] = f32::NAN;
    write_raw(
        &bnan,
        &[
            raw_f32("image", &x),
            raw("label", Dtype::I64, &[N, 1, 16, 16, 16], &lab),
        ],
    );
    step_fails(
        &dir,
        &["--student", stu, "--teacher", tea, "--batch", s(&bnan)],
        &["b-nan.safetensors", "`image`", "NaN", "99"],
    );
}
