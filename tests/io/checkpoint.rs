// Verifies (every test in this file): R-DAT-7, R-MTH-3
//! Checkpoint interchange with PyTorch, both directions, on committed fixtures
//! (`tests/fixtures/parity/`, see `tools/parity/README.md`):
//!
//! * protokd -> PyTorch: `protokd_written.safetensors` is what `checkpoint::save` writes today
//!   (checked byte for byte); `tools/parity/make_fixtures.py` loaded it with
//!   `load_state_dict(strict=True)` and wrote PyTorch's eval-mode forward of it to
//!   `protokd_written_torch_out.safetensors`, which our forward must match.
//! * PyTorch -> protokd: `torch_state_dict.safetensors` is the plain `state_dict()` of fixture
//!   A's initial student, saved by `safetensors.torch.save_file` (no metadata).
//!
//! To regenerate after a deliberate change of the checkpoint format:
//!
//! ```sh
//! cargo test --release --test io -- --ignored regenerate_protokd_written
//! python3 tools/parity/make_fixtures.py
//! ```

use crate::common::{rel_err, TempDir};
use protokd::io::checkpoint::{self, read_state};
use protokd::io::tensorfile::TensorFile;
use protokd::modality::Modalities;
use protokd_reference::state::{Entry, Role, VNetConfig, VNetState, Value};
use protokd_reference::vnet::forward_eval;
use protokd_reference::Tensor;
use std::path::{Path, PathBuf};

const REGENERATE: &str = "regenerate it with `cargo test --release --test io -- --ignored \
     regenerate_protokd_written`, then `python3 tools/parity/make_fixtures.py` (see \
     tools/parity/README.md), and commit the changed files";

/// Norm-wise relative error bound of our forward against PyTorch's.
const FORWARD_BOUND: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn open(name: &str) -> TensorFile {
    let p = fixture(name);
    TensorFile::open(&p).unwrap_or_else(|e| panic!("{e:#}; {REGENERATE}"))
}

/// The checkpoint behind `protokd_written.safetensors`: a T1ce student (1 channel, 4 filters,
/// 4 classes) from seed 11, with every BatchNorm's running statistics moved off their defaults
/// (`running_mean[i] = 0.01 i`, `running_var[i] = 1 + 0.02 i`, `num_batches_tracked = 5`) so
/// that PyTorch's eval-mode forward depends on them being read correctly.
fn written_state() -> VNetState {
    let cfg = VNetConfig {
        in_channels: 1,
        n_classes: 4,
        n_filters: 4,
    };
    let ramp = |t: &Tensor, f: &dyn Fn(f32) -> f32| {
        let data = (0..t.numel()).map(|i| f(i as f32)).collect();
        Value::F32(Tensor::from_vec(&t.shape, data))
    };
    let entries = VNetState::init(cfg, 11)
        .entries()
        .iter()
        .map(|e| {
            let value = match (&e.value, e.role) {
                (Value::F32(t), Role::RunningMean) => ramp(t, &|i| 0.01 * i),
                (Value::F32(t), Role::RunningVar) => ramp(t, &|i| 1.0 + 0.02 * i),
                (Value::I64(_), Role::NumBatchesTracked) => Value::I64(5),
                (v, _) => v.clone(),
            };
            Entry { value, ..e.clone() }
        })
        .collect();
    VNetState::from_entries(cfg, entries)
}

fn t1ce() -> Modalities {
    Modalities::parse("t1ce").unwrap()
}

fn save_written(path: &Path) {
    checkpoint::save(path, &written_state(), &t1ce()).unwrap();
}

/// Writes `tests/fixtures/parity/protokd_written.safetensors` (then run
/// `python3 tools/parity/make_fixtures.py` to remake PyTorch's side).
#[test]
#[ignore]
fn regenerate_protokd_written() {
    let p = fixture("protokd_written.safetensors");
    save_written(&p);
    println!(
        "wrote {} ({} bytes); now run python3 tools/parity/make_fixtures.py",
        p.display(),
        std::fs::metadata(&p).unwrap().len()
    );
}

/// (a) The committed file that PyTorch loaded is exactly what `checkpoint::save` writes today.
#[test]
fn save_writes_the_committed_protokd_written_bytes() {
    let committed_path = fixture("protokd_written.safetensors");
    let committed = std::fs::read(&committed_path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; {REGENERATE}",
            committed_path.display()
        )
    });
    let dir = TempDir::new("interchange");
    let tmp = dir.join("written.safetensors");
    save_written(&tmp);
    let ours = std::fs::read(&tmp).unwrap();
    // A second save gives the same bytes too (metadata order included).
    save_written(&tmp);
    let again = std::fs::read(&tmp).unwrap();
    assert!(ours == again, "two saves of one checkpoint differ");
    assert!(
        ours == committed,
        "checkpoint::save no longer writes the committed {} ({} bytes now, {} committed): the \
         checkpoint format or the seeded initialisation changed. If that is intended, {REGENERATE}",
        committed_path.display(),
        ours.len(),
        committed.len()
    );
}

/// (b) PyTorch's eval-mode forward of the loaded checkpoint equals ours: PyTorch read every
/// entry as we meant it.
#[test]
fn pytorch_forward_of_the_protokd_written_checkpoint_matches() {
    let ckpt = checkpoint::load(&fixture("protokd_written.safetensors")).unwrap();
    assert_eq!(ckpt.state, written_state(), "load(save(state)) != state");
    assert_eq!(ckpt.modalities, Some(t1ce()));
    let torch = open("protokd_written_torch_out.safetensors");
    let image = torch.f32("image").unwrap();
    assert_eq!(image.shape, [1, 1, 16, 16, 16]);
    let y = forward_eval(&ckpt.state, &image).unwrap();
    for (name, ours) in [("features", &y.features), ("logits", &y.logits)] {
        let theirs = torch.f32(name).unwrap();
        let e = rel_err(ours, &theirs);
        println!("{name}: relative error {e:.3e}");
        assert!(
            e <= FORWARD_BOUND,
            "{name}: relative error {e:.3e} > {FORWARD_BOUND:.0e} against PyTorch"
        );
    }
}

/// (c) A state_dict saved by PyTorch (no metadata) loads: the config is inferred from the
/// shapes and every tensor is fixture A's initial student, bit for bit.
#[test]
fn pytorch_written_state_dict_loads() {
    let path = fixture("torch_state_dict.safetensors");
    let file = open("torch_state_dict.safetensors");
    assert!(
        file.metadata().unwrap_or_default().is_empty(),
        "{} should be a plain state_dict without metadata",
        path.display()
    );
    let ckpt = checkpoint::load(&path).unwrap();
    let cfg = VNetConfig {
        in_channels: 1,
        n_classes: 4,
        n_filters: 4,
    };
    assert_eq!(ckpt.state.config, cfg);
    assert_eq!(ckpt.modalities, None);
    let a = open("A.safetensors");
    let expected = read_state(&a, "student.", cfg).unwrap();
    assert_eq!(ckpt.state.entries().len(), expected.entries().len());
    for (got, want) in ckpt.state.entries().iter().zip(expected.entries()) {
        assert_eq!(got.name, want.name);
        match (&got.value, &want.value) {
            (Value::F32(g), Value::F32(w)) => {
                assert_eq!(g.shape, w.shape, "{}", got.name);
                let gb: Vec<u32> = g.data.iter().map(|v| v.to_bits()).collect();
                let wb: Vec<u32> = w.data.iter().map(|v| v.to_bits()).collect();
                assert!(
                    gb == wb,
                    "{} differs from A's student.{}",
                    got.name,
                    got.name
                );
            }
            (Value::I64(g), Value::I64(w)) => assert_eq!(g, w, "{}", got.name),
            _ => panic!("{}: value kinds differ", got.name),
        }
    }
    // Fixture A moved the BatchNorm statistics off their defaults (num_batches_tracked 7).
    assert!(ckpt
        .state
        .entries()
        .iter()
        .any(|e| e.value == Value::I64(7)));
}
