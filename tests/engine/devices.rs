// Verifies (every test in this file): R-NUM-5
//! `--engine` (older spelling `--device`): the commands that compute give the same bytes on the
//! fast CPU engine and on the emulated GPU device (protokd-gpu's CUDA C run on the host).
//! (The same comparisons run on a real GPU with `tools/gpu/validate.sh`; the spellings and
//! refusals of the switch are in the `cli` target.)

use crate::common::workflow::{self, ok};
use crate::common::{s, TempDir};
use std::path::Path;

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `sha256 <hash>  <name>` lines a command printed.
fn hashes(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("sha256 "))
        .collect()
}

/// `audit step` (every mode) and `audit forward` (both modes) write the same bytes and print the
/// same hashes on the CPU and on the emulated device.
#[test]
fn audit_outputs_are_the_same_bytes_on_cpu_and_emulated() {
    let dir = TempDir::new("devices-audit");
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit");
    let (stu, tea, batch) = (
        ex.join("student.safetensors"),
        ex.join("teacher.safetensors"),
        ex.join("batch.safetensors"),
    );
    for mode in ["protokd", "baseline", "teacher"] {
        let student = if mode == "teacher" { &tea } else { &stu };
        let mut outs = Vec::new();
        for device in ["cpu", "emulated"] {
            let out = dir.join(&format!("{mode}-{device}.safetensors"));
            let mut args = vec![
                "audit",
                "step",
                "--mode",
                mode,
                "--student",
                s(student),
                "--batch",
                s(&batch),
                "--out",
                s(&out),
                "--engine",
                device,
            ];
            if mode == "protokd" {
                args.extend(["--teacher", s(&tea)]);
            }
            let stdout = ok(&args);
            outs.push((stdout, read(&out)));
        }
        assert!(hashes(&outs[0].0).len() > 100, "{}", outs[0].0);
        assert_eq!(
            hashes(&outs[0].0),
            hashes(&outs[1].0),
            "audit step --mode {mode}"
        );
        assert_eq!(outs[0].1, outs[1].1, "audit step --mode {mode}");
    }
    for train in [false, true] {
        let mut outs = Vec::new();
        for device in ["cpu", "emulated"] {
            let out = dir.join(&format!("forward-{train}-{device}.safetensors"));
            let mut args = vec![
                "audit",
                "forward",
                "--weights",
                s(&tea),
                "--input",
                s(&batch),
                "--out",
                s(&out),
                "--engine",
                device,
            ];
            if train {
                args.push("--train");
            }
            outs.push((ok(&args), read(&out)));
        }
        assert_eq!(hashes(&outs[0].0).len(), 2, "{}", outs[0].0);
        assert_eq!(
            hashes(&outs[0].0),
            hashes(&outs[1].0),
            "audit forward (train {train})"
        );
        assert_eq!(outs[0].1, outs[1].1, "audit forward (train {train})");
    }
}

/// Segmenting a case gives the same label and probability files on both devices.
#[test]
fn segment_writes_the_same_bytes_on_cpu_and_emulated() {
    let dir = TempDir::new("devices-segment");
    let data = dir.join("data");
    let ids = workflow::phantoms(&data, 1, "2018", workflow::SIZE);
    let model = dir.join("m.safetensors");
    workflow::model(&model, "t1ce", 4);
    let case = data.join(&ids[0]);
    let mut files = Vec::new();
    for device in ["cpu", "emulated"] {
        let (seg, prob) = (
            dir.join(&format!("{device}-seg.nii.gz")),
            dir.join(&format!("{device}-prob.nii.gz")),
        );
        let mut args = vec![
            "segment",
            "--model",
            s(&model),
            "--input",
            s(&case),
            "--out",
            s(&seg),
            "--probabilities",
            s(&prob),
            "--engine",
            device,
        ];
        args.extend(workflow::WINDOW);
        ok(&args);
        files.push((read(&seg), read(&prob)));
    }
    assert_eq!(files[0], files[1]);
}
