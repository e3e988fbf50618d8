// Verifies (every test in this file): R-NUM-4, R-NUM-5, R-NUM-6
//! Bit-reproducibility: a whole ProtoKD training step (student forward and backward, teacher
//! forward, every loss, Adam) gives the same bits with 1, 2 and 7 threads and on a repeat run,
//! on the spec and on the fast CPU engine with each SIMD copy this CPU can run (the portable
//! one: as on a CPU without FMA hardware), and those bits are the recorded ones, so an
//! unintended change of arithmetic fails here. Engines are passed by value; no test changes
//! process state.
//!
//! The inputs are the committed example files in `examples/audit/` (made by the ignored test
//! `regenerate_examples` below from seeded initialisation and fixture A's batch).

use protokd::audit::replay::read_labels;
use protokd::engine::HostEngine;
use protokd::io::checkpoint;
use protokd::io::hash::sha256_hex;
use protokd::io::tensorfile::TensorFile;
use protokd::modality::Modalities;
use protokd_cpu::{Cpu, Isa};
use protokd_reference::adam::AdamState;
use protokd_reference::engine::Spec;
use protokd_reference::state::{VNetConfig, VNetState, Value};
use protokd_reference::step::{train_step_on, StepConfig};
use protokd_reference::vnet::forward_eval_on;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// SHA-256 over every output of the example step, in a fixed order: the six losses, every
/// gradient, every entry of the updated student state (f32 little-endian bytes; counts as i64).
/// Recorded from `cargo test --release --test engine reproducibility` on x86-64 (AVX-512 machine).
const STEP_HASH: &str = "ff2ca2debb8c7eae975a3c127deac22d398c0c3494ac5e3ace25d32ce1bbf13b";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/audit")
}

/// Every engine on host tensors: the spec, and the fast CPU engine on each SIMD copy this CPU
/// can run.
fn host_engines() -> Vec<(String, Box<dyn HostEngine>)> {
    let mut v: Vec<(String, Box<dyn HostEngine>)> = vec![("spec".into(), Box::new(Spec))];
    for isa in Isa::usable() {
        let cpu = Cpu::with_isa(isa).unwrap();
        v.push((format!("cpu ({})", isa.name()), Box::new(cpu)));
    }
    v
}

fn step_hash(e: &dyn HostEngine, dir: &Path) -> String {
    let student0 = checkpoint::load(&dir.join("student.safetensors"))
        .unwrap()
        .state;
    let teacher = checkpoint::load(&dir.join("teacher.safetensors"))
        .unwrap()
        .state;
    let batch = TensorFile::open(&dir.join("batch.safetensors")).unwrap();
    let image = batch.f32("image").unwrap();
    let labels = read_labels(&batch, 4).unwrap();
    let mut student = student0.clone();
    let mut adam = AdamState::for_state(&student);
    let r = train_step_on(
        e,
        &mut student,
        &mut adam,
        Some(&teacher),
        &image,
        &labels,
        &[2],
        &StepConfig::default(),
    )
    .unwrap();
    let mut h = Sha256::new();
    let l = r.losses;
    for v in [l.total, l.seg, l.dice, l.ce, l.kd, l.proto] {
        h.update(v.to_le_bytes());
    }
    for g in &r.grads {
        g.data.iter().for_each(|v| h.update(v.to_le_bytes()));
    }
    for e in student.entries() {
        match &e.value {
            Value::F32(t) => t.data.iter().for_each(|v| h.update(v.to_le_bytes())),
            Value::I64(n) => h.update(n.to_le_bytes()),
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn protokd_step_is_identical_on_every_engine_and_thread_count_and_matches_the_record() {
    let dir = examples();
    for (name, e) in host_engines() {
        let hashes: Vec<String> = [1, 2, 7, 2]
            .iter()
            .map(|&t| in_pool(t, || step_hash(&*e, &dir)))
            .collect();
        assert!(
            hashes.iter().all(|h| *h == STEP_HASH),
            "{name}: the step's bits changed or differ between thread counts or runs (if \
             intended, record the new hash and say why in the commit): {hashes:?}"
        );
    }
}

#[test]
fn forward_is_identical_for_1_2_and_7_threads() {
    let dir = examples();
    let teacher = checkpoint::load(&dir.join("teacher.safetensors"))
        .unwrap()
        .state;
    let image = TensorFile::open(&dir.join("batch.safetensors"))
        .unwrap()
        .f32("image")
        .unwrap();
    let hashes: Vec<String> = [1, 2, 7]
        .iter()
        .map(|&t| {
            in_pool(t, || {
                let y = forward_eval_on(&Cpu::new(), &teacher, &image).unwrap();
                let bytes: Vec<u8> = y
                    .features
                    .data
                    .iter()
                    .chain(&y.logits.data)
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                sha256_hex(&bytes)
            })
        })
        .collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

/// Writes `examples/audit/{student,teacher,batch}.safetensors`: a T1ce student (n_filters 4,
/// seed 1), a teacher (n_filters 4, seed 2), and fixture A's batch (2 x 4 x 16^3).
// Verifies: R-DAT-7
#[test]
#[ignore]
fn regenerate_examples() {
    let dir = examples();
    std::fs::create_dir_all(&dir).unwrap();
    let student = VNetState::init(
        VNetConfig {
            in_channels: 1,
            n_classes: 4,
            n_filters: 4,
        },
        1,
    );
    let teacher = VNetState::init(
        VNetConfig {
            in_channels: 4,
            n_classes: 4,
            n_filters: 4,
        },
        2,
    );
    checkpoint::save(
        &dir.join("student.safetensors"),
        &student,
        &Modalities::parse("t1ce").unwrap(),
    )
    .unwrap();
    checkpoint::save(
        &dir.join("teacher.safetensors"),
        &teacher,
        &Modalities::all(),
    )
    .unwrap();
    let a = TensorFile::open(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/A.safetensors"),
    )
    .unwrap();
    let (shape, values) = a.numeric("label").unwrap();
    let label =
        protokd_reference::Tensor::from_vec(&shape, values.iter().map(|&v| v as f32).collect());
    protokd::io::tensorfile::write_tensors(
        &dir.join("batch.safetensors"),
        &[
            (
                "image".into(),
                protokd::io::tensorfile::OutTensor::F32(a.f32("image").unwrap()),
            ),
            (
                "label".into(),
                protokd::io::tensorfile::OutTensor::F32(label),
            ),
        ],
        None,
    )
    .unwrap();
}
