// Verifies (every test in this file): R-DAT-7
//! PyTorch checkpoints (`.pth`) read without Python, on fixtures written by real PyTorch
//! (`tools/torch/make_fixtures.py`, see `tools/torch/README.md`): each loads to exactly the
//! state of the safetensors file written from the same tensors, and `audit forward` on it
//! writes the same bytes.

use crate::common::{protokd, s, TempDir};
use protokd::io::checkpoint;
use protokd::io::tensorfile::{write_tensors, OutTensor, TensorFile};
use protokd_reference::Tensor;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

/// Each `.pth` with the safetensors file of the same tensors, its container and where its
/// model is.
const PAIRS: [(&str, &str, &str, &str); 4] = [
    ("state_dict.pth", "state_dict.safetensors", "zip", ""),
    ("legacy.pth", "state_dict.safetensors", "legacy", ""),
    ("model_key.pth", "state_dict.safetensors", "zip", "model"),
    (
        "resumable.pth",
        "resumable.safetensors",
        "zip",
        "state_dict",
    ),
];

#[test]
fn every_torch_save_layout_loads_to_the_safetensors_state() {
    for (pth, st, format, place) in PAIRS {
        let ours = checkpoint::load(&fixture(pth)).unwrap();
        let want = checkpoint::load(&fixture(st)).unwrap();
        assert_eq!(ours, want, "{pth} against {st}");
        assert_eq!(
            ours.modalities, None,
            "{pth}: a PyTorch file records no modalities"
        );
        let file = TensorFile::open(&fixture(pth)).unwrap();
        let bytes = std::fs::read(fixture(pth)).unwrap();
        assert_eq!(
            file.sha256(),
            protokd::io::hash::sha256_hex(&bytes),
            "{pth}"
        );
        let torch = file.torch().expect("read as a PyTorch checkpoint");
        assert_eq!((torch.format(), torch.place()), (format, place), "{pth}");
    }
}

// Verifies: R-NUM-4
#[test]
fn audit_forward_on_a_pth_writes_the_bytes_it_writes_on_the_safetensors_file() {
    let dir = TempDir::new("pth-forward");
    let x = Tensor::from_vec(
        &[1, 4, 16, 16, 16],
        (0..4 * 16 * 16 * 16)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect(),
    );
    let input = dir.join("x.safetensors");
    write_tensors(&input, &[("image".into(), OutTensor::F32(x))], None).unwrap();
    for (pth, st, _, _) in PAIRS {
        let mut outputs = Vec::new();
        for (i, weights) in [pth, st].into_iter().enumerate() {
            let out = dir.join(&format!("{pth}.{i}.safetensors"));
            let w = fixture(weights);
            let o = protokd(&[
                "audit",
                "forward",
                "--weights",
                s(&w),
                "--input",
                s(&input),
                "--out",
                s(&out),
            ]);
            assert!(
                o.status.success(),
                "{weights}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            outputs.push(std::fs::read(&out).unwrap());
        }
        assert!(outputs[0] == outputs[1], "{pth}: other bytes than on {st}");
    }
}
