// Verifies (every test in this file): R-DAT-7, R-CLI-1
//! PyTorch checkpoints on the command line: bad `.pth` files refused wherever a checkpoint is
//! taken (one line naming the file, no panic, nothing written), the zip bomb under the memory
//! cap and the clock of `bounded`, and `protokd convert`. Fixtures: `tests/fixtures/torch/`
//! (`tools/torch/make_fixtures.py`).

use crate::bounded::refused_within;
use crate::common::refusal::{file, refusal, refused};
use crate::common::{protokd, protokd_command, s, workflow, TempDir};
use protokd::io::checkpoint;
use protokd::io::tensorfile::TensorFile;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

/// The first half of fixture `name`'s bytes.
fn truncated(name: &str) -> Vec<u8> {
    let b = std::fs::read(fixture(name)).unwrap();
    b[..b.len() / 2].to_vec()
}

#[test]
fn bad_pth_files_are_refused_wherever_a_checkpoint_is_taken() {
    let dir = TempDir::new("bad-pth");
    let data = dir.join("data");
    workflow::phantoms(&data, 2, "2018", "32,32,16");
    let (x, y) = (dir.join("x.safetensors"), dir.join("y.safetensors"));
    let small = dir.join("batch1.json");
    let forward = |w: &str| {
        vec![
            "audit".to_string(),
            "forward".into(),
            "--weights".into(),
            w.into(),
            "--input".into(),
            s(&x).into(),
            "--out".into(),
            s(&y).into(),
        ]
    };
    let f = |name: &str| s(&fixture(name)).to_string();
    let missing = f("bad_missing.pth");
    let (trunc_zip, trunc_legacy) = (dir.join("truncated.pth"), dir.join("truncated_legacy.pth"));
    let table = vec![
        refusal(
            "a pickle of a plain dict",
            vec![],
            forward(&f("not_a_checkpoint.pkl")),
            1,
            [
                "not_a_checkpoint.pkl",
                "not a VNet checkpoint",
                "no tensors",
            ],
        ),
        refusal(
            "a pickle that would call os.system",
            vec![],
            forward(&f("os_system.pkl")),
            1,
            [
                "os_system.pkl",
                "not a readable PyTorch checkpoint",
                "posix.system",
            ],
        ),
        refusal(
            "a missing tensor",
            vec![],
            forward(&missing),
            1,
            ["bad_missing.pth", "no tensor named `out_conv.bias`"],
        ),
        refusal(
            "an extra tensor",
            vec![],
            forward(&f("bad_extra.pth")),
            1,
            ["bad_extra.pth", "unexpected tensor `extra.weight`"],
        ),
        refusal(
            "a zip bomb",
            vec![],
            forward(&f("bad_bomb.pth")),
            1,
            ["bad_bomb.pth", "declare 268586308 bytes", "zip bomb"],
        ),
        refusal(
            "a truncated zip",
            vec![file(&trunc_zip, truncated("state_dict.pth"))],
            forward(s(&trunc_zip)),
            1,
            ["truncated.pth", "not a readable PyTorch checkpoint"],
        ),
        refusal(
            "a truncated legacy file",
            vec![file(&trunc_legacy, truncated("legacy.pth"))],
            forward(s(&trunc_legacy)),
            1,
            [
                "truncated_legacy.pth",
                "not a readable PyTorch checkpoint",
                "beyond the end",
            ],
        ),
        refusal(
            "segment --model",
            vec![],
            [
                "segment",
                "--model",
                &missing,
                "--input",
                s(&data),
                "--out",
                s(&dir.join("seg")),
            ],
            1,
            ["bad_missing.pth", "out_conv.bias"],
        ),
        refusal(
            "evaluate --model",
            vec![],
            [
                "evaluate",
                "--model",
                &missing,
                "--data",
                s(&data),
                "--out",
                s(&dir.join("rep")),
            ],
            1,
            ["bad_missing.pth", "out_conv.bias"],
        ),
        refusal(
            "train student --teacher",
            vec![file(&small, r#"{"batch_size": 1}"#)],
            [
                "train",
                "student",
                "--modality",
                "t1ce",
                "--teacher",
                &missing,
                "--data",
                s(&data),
                "--config",
                s(&small),
                "--out",
                s(&dir.join("run")),
            ],
            1,
            ["bad_missing.pth", "out_conv.bias"],
        ),
        refusal(
            "convert of a bad file",
            vec![],
            [
                "convert",
                &f("bad_extra.pth"),
                s(&dir.join("c.safetensors")),
            ],
            1,
            ["bad_extra.pth", "extra.weight"],
        ),
    ];
    refused(dir.path(), table);
}

#[test]
fn a_zip_bomb_in_a_pth_is_refused_before_it_is_inflated() {
    let dir = TempDir::new("pth-bomb");
    let out = dir.join("c.safetensors");
    let bomb = fixture("bad_bomb.pth");
    refused_within(
        &["convert", s(&bomb), s(&out)],
        &["bad_bomb.pth", "zip bomb"],
    );
}

#[test]
fn a_pickle_is_never_run() {
    let dir = TempDir::new("pth-pickle");
    let out = protokd_command()
        .current_dir(dir.path())
        .args(["convert", s(&fixture("os_system.pkl")), "c.safetensors"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.join("pwned").exists(), "the pickle's os.system ran");
}

// Verifies: R-CLI-6
#[test]
fn convert_writes_the_model_and_the_optimiser_file_with_their_provenance() {
    let dir = TempDir::new("pth-convert");
    for (pth, st, format, place) in [
        (
            "state_dict.pth",
            "state_dict.safetensors",
            "pytorch-zip",
            "top level",
        ),
        (
            "legacy.pth",
            "state_dict.safetensors",
            "pytorch-legacy",
            "top level",
        ),
        (
            "resumable.pth",
            "resumable.safetensors",
            "pytorch-zip",
            "state_dict",
        ),
    ] {
        let out = dir.join(&format!("{pth}.safetensors"));
        let o = protokd(&["convert", s(&fixture(pth)), s(&out)]);
        assert!(
            o.status.success(),
            "{pth}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let ck = checkpoint::load(&out).unwrap();
        assert_eq!(
            ck.state,
            checkpoint::load(&fixture(st)).unwrap().state,
            "{pth}"
        );
        let meta = TensorFile::open(&out).unwrap().metadata().unwrap();
        let sha = protokd::io::hash::sha256_hex(&std::fs::read(fixture(pth)).unwrap());
        for (key, want) in [
            ("protokd.source.file", pth),
            ("protokd.source.sha256", &sha),
            ("protokd.source.format", format),
            ("protokd.source.state_dict", place),
            ("protokd.modalities", "t1,t2,t1ce,flair"),
        ] {
            assert_eq!(meta[key], want, "{pth}: {key}");
        }
        let optim = dir.join(&format!("{pth}.optim.safetensors"));
        assert_eq!(optim.exists(), pth == "resumable.pth", "{pth}");
    }

    // The optimiser file holds the .pth's Adam state under a run's optimiser-file names.
    let optim = TensorFile::open(&dir.join("resumable.pth.optim.safetensors")).unwrap();
    let src = TensorFile::open(&fixture("resumable.pth")).unwrap();
    let state = checkpoint::load(&fixture("resumable.pth")).unwrap().state;
    let adam = src.torch().unwrap().adam(&state).unwrap().unwrap();
    for (i, (name, _)) in state.parameters().enumerate() {
        assert_eq!(
            optim.f32(&format!("adam.exp_avg.{name}")).unwrap(),
            adam.state.exp_avg[i]
        );
        assert_eq!(
            optim.f32(&format!("adam.exp_avg_sq.{name}")).unwrap(),
            adam.state.exp_avg_sq[i]
        );
    }
    let meta = optim.metadata().unwrap();
    assert_eq!(meta["protokd.adam.step"], "2");
    assert_eq!(meta["protokd.adam.weight_decay"], "0.00001");
    let model = std::fs::read(dir.join("resumable.pth.safetensors")).unwrap();
    assert_eq!(
        meta["protokd.model.sha256"],
        protokd::io::hash::sha256_hex(&model)
    );

    // Never over an existing output without --force, never over the input.
    let existing = dir.join("state_dict.pth.safetensors");
    let input = dir.join("copy.pth");
    std::fs::copy(fixture("state_dict.pth"), &input).unwrap();
    let table = vec![
        refusal(
            "an existing output",
            vec![],
            ["convert", s(&fixture("state_dict.pth")), s(&existing)],
            1,
            [s(&existing), "already exists", "--force"],
        ),
        refusal(
            "the input as output",
            vec![],
            ["convert", s(&input), s(&input), "--force"],
            1,
            [s(&input), "one of the inputs"],
        ),
        refusal(
            "a safetensors input",
            vec![],
            ["convert", s(&existing), s(&dir.join("n.safetensors"))],
            1,
            ["not a PyTorch checkpoint"],
        ),
    ];
    refused(dir.path(), table);
}
