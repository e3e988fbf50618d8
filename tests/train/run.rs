// Verifies (every test in this file): R-WFL-1
//! Tests of `protokd train teacher|student`: run folders, the resume-equality promise (a run
//! stopped after any step and resumed ends with the same bytes as an uninterrupted run), Ctrl-C,
//! every student method, and bad input. Tiny configs: phantoms of 32 x 32 x 16 voxels,
//! n_filters 4, 16^3 patches.

use crate::common::refusal::{file, refusal, refused};
use crate::common::workflow;
use crate::common::{fails_midway, protokd, protokd_command, s, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// The tiny config of these tests: 2 epochs of 2 steps (5 training cases, batch 2), validation
/// from epoch 0 on 1 case.
const TINY: &str = r#"{"n_filters": 4, "batch_size": 2, "patch": [16, 16, 16], "max_epoch": 2,
  "val_start_epoch": 0, "val_patch": [16, 32, 32], "val_stride": [8, 16, 16], "crop": null,
  "val_fraction": 0.125, "test_fraction": 0.25, "seed": 7, "init_seed": 3}"#;

/// A cohort of 8 phantoms (5 train, 1 validation, 2 test) and the tiny config file, made once.
fn cohort() -> &'static (TempDir, PathBuf, PathBuf) {
    static C: OnceLock<(TempDir, PathBuf, PathBuf)> = OnceLock::new();
    C.get_or_init(|| {
        let dir = TempDir::new("train-cohort");
        let data = dir.join("data");
        let out = protokd(&[
            "phantom",
            "--out",
            s(&data),
            "--cases",
            "8",
            "--seed",
            "5",
            "--size",
            "32,32,16",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = dir.join("tiny.json");
        std::fs::write(&cfg, TINY).unwrap();
        (dir, data, cfg)
    })
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `protokd train teacher` with the tiny config and `extra` arguments.
fn teacher(run: &Path, extra: &[&str]) -> Output {
    teacher_with(&cohort().2, run, extra)
}

/// `protokd train teacher --config cfg` into `run` (given as --out unless `extra` resumes).
fn teacher_with(cfg: &Path, run: &Path, extra: &[&str]) -> Output {
    teacher_command(cfg, run, extra).output().unwrap()
}

/// The arguments of `protokd train teacher --data <cohort> --config cfg` into `run` (given as
/// --out unless `extra` resumes), then `extra`: [`workflow::teacher_args`], less its `--out`
/// when resuming (a resume names its run folder through `--resume`).
fn teacher_args(cfg: &Path, run: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = workflow::teacher_args(&cohort().1, cfg, run);
    if extra.contains(&"--resume") {
        args.truncate(args.len() - 2);
    }
    args.iter().chain(extra).map(|a| a.to_string()).collect()
}

/// The command of [`teacher_args`].
fn teacher_command(cfg: &Path, run: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = protokd_command();
    c.args(teacher_args(cfg, run, extra));
    c
}

/// The arguments of `protokd train student --modality t1ce` with the tiny config into `run`,
/// then `extra`.
fn student_args(run: &Path, extra: &[&str]) -> Vec<String> {
    let (_, data, cfg) = cohort();
    ["train", "student", "--data", s(data), "--config", s(cfg)]
        .iter()
        .chain(&["--out", s(run), "--modality", "t1ce"])
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
}

/// Runs [`student_args`].
fn student(run: &Path, extra: &[&str]) -> Output {
    protokd_command()
        .args(student_args(run, extra))
        .output()
        .unwrap()
}

/// A finished tiny teacher (shared by the student tests).
fn trained_teacher() -> &'static PathBuf {
    static T: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &T.get_or_init(|| {
        let dir = TempDir::new("train-teacher");
        let run = dir.join("run");
        ok(teacher(&run, &[]));
        (dir, run)
    })
    .1
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn records(run: &Path) -> Vec<Value> {
    String::from_utf8(read(&run.join("metrics.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// Verifies: R-CLI-6
#[test]
fn teacher_run_folder_holds_every_file() {
    let run = trained_teacher();
    for f in [
        "config.json",
        "metrics.jsonl",
        "curves.svg",
        "last.safetensors",
        "last.optim.safetensors",
        "best.safetensors",
        "best.optim.safetensors",
        "split/train_list.txt",
        "split/val_list.txt",
        "split/test_list.txt",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let record: Value = serde_json::from_slice(&read(&run.join("config.json"))).unwrap();
    assert_eq!(record["config"]["method"], "teacher");
    assert_eq!(record["config"]["n_filters"], 4);
    assert_eq!(record["config"]["lr_schedule"], "poly");
    assert_eq!(record["split"]["train"].as_array().unwrap().len(), 5);
    let recs = records(run);
    let steps: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "step").collect();
    let vals: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "val").collect();
    assert_eq!(steps.len(), 4);
    assert_eq!(vals.len(), 2);
    // The poly schedule: epoch 1 of 2 runs at 1e-3 * 0.5^0.9.
    let lr1 = steps[2]["lr"].as_f64().unwrap();
    assert!((lr1 - 1e-3 * 0.5f64.powf(0.9)).abs() < 1e-9, "{lr1}");
    assert_eq!(steps[0]["lr"].as_f64(), Some(1e-3));
    for r in &steps {
        assert_eq!(r["kd"].as_f64(), Some(0.0));
        let seg = r["seg"].as_f64().unwrap();
        let sum = r["dice"].as_f64().unwrap() + r["ce"].as_f64().unwrap();
        assert!((seg - sum).abs() < 1e-5, "{seg} vs {sum}");
    }
    // best.* is the epoch with the highest validation mean.
    let best = vals
        .iter()
        .max_by(|a, b| a["mean"].as_f64().partial_cmp(&b["mean"].as_f64()).unwrap())
        .unwrap();
    assert_eq!(best["best"], true);
    let ck = protokd::io::checkpoint::load(&run.join("best.safetensors")).unwrap();
    assert_eq!(ck.state.config.in_channels, 4);
    assert_eq!(ck.modalities.unwrap().to_string(), "t1,t2,t1ce,flair");
}

// Verifies: R-NUM-4
#[test]
fn stopped_and_resumed_runs_end_bit_identical() {
    let reference = trained_teacher();
    // Stop mid-epoch (after 1 and 3 steps) and at an epoch's end before its validation (2).
    for stop in ["1", "2", "3"] {
        let dir = TempDir::new("train-resume");
        let run = dir.join("run");
        let out = ok(teacher(&run, &["--stop-after", stop]));
        assert!(out.contains("--resume"), "{out}");
        let resumed = ok(teacher(&run, &["--resume", s(&run)]));
        assert!(resumed.contains("resuming teacher"), "{resumed}");
        for f in [
            "last.safetensors",
            "best.safetensors",
            "last.optim.safetensors",
        ] {
            assert!(
                read(&run.join(f)) == read(&reference.join(f)),
                "stop after {stop}: {f} differs from the uninterrupted run's"
            );
        }
        assert_eq!(records(&run), records(reference), "stop after {stop}");
    }
}

// Verifies: R-CLI-2
#[test]
fn ctrl_c_saves_and_exits_130() {
    let dir = TempDir::new("train-ctrlc");
    let run = dir.join("run");
    let cfg = dir.join("slow.json");
    // Many epochs so that the signal arrives mid-run.
    std::fs::write(&cfg, TINY.replace("\"max_epoch\": 2", "\"max_epoch\": 200")).unwrap();
    let child = teacher_command(&cfg, &run, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = run.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |t| t.lines().count() < 3) {
        assert!(t0.elapsed().as_secs() < 60, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted: saved"));
    let recs = records(&run);
    let last_step = recs.iter().filter(|r| r["kind"] == "step").count();
    let f = protokd::io::tensorfile::TensorFile::open(&run.join("last.optim.safetensors")).unwrap();
    let meta = f.metadata().unwrap();
    assert_eq!(meta["protokd.run.global_step"], last_step.to_string());
    assert!(last_step < 400, "the run should have stopped early");
}

// Verifies: R-MTH-8
#[test]
fn every_student_method_trains() {
    let teacher = trained_teacher().join("best.safetensors");
    for method in ["protokd", "kd", "baseline"] {
        let dir = TempDir::new("train-student");
        let run = dir.join("run");
        let mut extra = vec!["--method", method];
        if method != "baseline" {
            extra.extend(["--teacher", s(&teacher)]);
        }
        ok(student(&run, &extra));
        let recs = records(&run);
        let steps: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "step").collect();
        assert_eq!(steps.len(), 4, "{method}");
        let kd = steps[0]["kd"].as_f64().unwrap();
        let proto = steps[0]["proto"].as_f64().unwrap();
        let seg = steps[0]["seg"].as_f64().unwrap();
        let total = steps[0]["total"].as_f64().unwrap();
        match method {
            "baseline" => assert_eq!((kd, proto, total), (0.0, 0.0, seg)),
            "kd" => assert!(kd > 0.0 && (total - (seg + 10.0 * kd)).abs() < 1e-4),
            _ => assert!(
                kd > 0.0 && proto > 0.0 && (total - (seg + 10.0 * kd + 0.1 * proto)).abs() < 1e-4
            ),
        }
        // Students keep lr 1e-3 (the authors' trainer never applies the schedule).
        assert!(steps.iter().all(|r| r["lr"].as_f64() == Some(1e-3)));
        let ck = protokd::io::checkpoint::load(&run.join("last.safetensors")).unwrap();
        assert_eq!(ck.state.config.in_channels, 1);
        assert_eq!(ck.modalities.unwrap().to_string(), "t1ce");
    }
}

/// A ProtoKD student trained on the emulated GPU device (protokd-gpu's CUDA C on the host) ends
/// with the same bytes as on the CPU: checkpoints, optimiser state and the metrics log; and so
/// does a run stopped after one step on the emulated device and resumed on the CPU.
// Verifies: R-NUM-5
#[test]
fn student_runs_are_the_same_bytes_on_cpu_and_emulated() {
    let teacher = trained_teacher().join("best.safetensors");
    let dir = TempDir::new("train-devices");
    let files: Vec<_> = ["cpu", "emulated", "emulated-then-cpu"]
        .iter()
        .map(|&how| {
            let run = dir.join(how);
            let t = ["--teacher", s(&teacher)];
            match how {
                "emulated-then-cpu" => {
                    let first = [&t[..], &["--device", "emulated", "--stop-after", "1"]].concat();
                    ok(student(&run, &first));
                    ok(student(&run, &[&t[..], &["--resume", s(&run)]].concat()));
                }
                device => {
                    ok(student(&run, &[&t[..], &["--device", device]].concat()));
                }
            }
            [
                "last.safetensors",
                "last.optim.safetensors",
                "best.safetensors",
                "metrics.jsonl",
            ]
            .map(|f| read(&run.join(f)))
        })
        .collect();
    assert_eq!(files[0], files[1]);
    assert_eq!(files[0], files[2]);
}

// Verifies: R-CLI-1, R-CLI-2
#[test]
fn bad_input_is_refused_and_leaves_files_intact() {
    let cfg = &cohort().2;
    let dir = TempDir::new("train-bad");
    let run = dir.join("s");
    // A one-channel model to give as teacher.
    let one = dir.join("one.safetensors");
    workflow::model(&one, "t1", 1);
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    // An existing run folder, stopped after one step.
    let existing = dir.join("existing");
    ok(teacher(&existing, &["--stop-after", "1"]));
    let before = read(&existing.join("last.safetensors"));
    let (bad_cfg, other) = (dir.join("bad.json"), dir.join("other.json"));
    let empty_data = [
        "train",
        "teacher",
        "--data",
        s(&empty),
        "--config",
        s(cfg),
        "--out",
        s(&run),
    ];
    let bad_cfg_file = vec![file(&bad_cfg, r#"{"epochs": 3}"#)];
    let other_file = vec![file(&other, TINY.replace("\"seed\": 7", "\"seed\": 8"))];
    let resume = ["--resume", s(&existing)];
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("a student given no teacher", vec![], student_args(&run, &[]), 1,
            ["--teacher"]),
        refusal("a one-channel model given as teacher", vec![],
            student_args(&run, &["--teacher", s(&one)]), 1,
            ["a teacher takes all four modalities"]),
        refusal("a data folder with no cases", vec![], empty_data, 1, [s(&empty)]),
        refusal("an unknown config key", bad_cfg_file, teacher_args(&bad_cfg, &run, &[]), 1,
            ["unknown key `epochs`"]),
        refusal("an existing run folder, without --force or --resume", vec![],
            teacher_args(cfg, &existing, &[]), 1, ["--force"]),
        // The message lists every setting that differs, one a line.
        refusal("resuming with another config", other_file,
            teacher_args(&other, &existing, &resume), 1,
            ["config `seed`: 7 in the run folder, 8 now"]).several_lines(),
    ];
    refused(dir.path(), table);
    assert_eq!(read(&existing.join("last.safetensors")), before);
    // A write that fails midway: the error is clear, no temporary file is left, the saved
    // state still loads, and the run still resumes to the uninterrupted result.
    fails_midway(
        teacher_command(cfg, &existing, &resume),
        "last.optim",
        &existing,
    );
    ok(teacher(&existing, &["--resume", s(&existing)]));
    assert_eq!(
        read(&existing.join("last.safetensors")),
        read(&trained_teacher().join("last.safetensors"))
    );
}
