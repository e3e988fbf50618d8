// Verifies (every test in this file): R-CLI-3, R-CLI-2
//! `protokd train --force` replaces only the files a run writes, and only once the new run's
//! inputs have loaded (a failing new run leaves the old run as it was); a run never writes over
//! its inputs; and a resume removes the temporary files of a save that was killed.

use crate::common::refusal::{refusal, refused};
use crate::common::workflow::{phantoms, teacher_args};
use crate::common::{protokd, s, temporary_files, TempDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// 2 epochs of 2 steps on 32 x 32 x 16 phantoms (the tiny config of `train::run`).
const TINY: &str = r#"{"n_filters": 4, "batch_size": 2, "patch": [16, 16, 16], "max_epoch": 2,
  "val_start_epoch": 0, "val_patch": [16, 32, 32], "val_stride": [8, 16, 16], "crop": null,
  "val_fraction": 0.125, "test_fraction": 0.25, "seed": 7, "init_seed": 3}"#;

/// Eight phantoms in `dir/data` and the tiny config `dir/tiny.json`.
fn cohort(dir: &TempDir) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    phantoms(&data, 8, "2018", "32,32,16");
    let cfg = dir.join("tiny.json");
    std::fs::write(&cfg, TINY).unwrap();
    (data, cfg)
}

/// Runs `protokd train teacher --data data --config cfg --out out` with `extra`.
fn teacher(data: &Path, cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = teacher_args(data, cfg, out);
    args.extend_from_slice(extra);
    protokd(&args)
}

fn ok(o: Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every file under `dir` by relative path, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            for (rel, bytes) in files(&p) {
                out.insert(Path::new(p.file_name().unwrap()).join(rel), bytes);
            }
        } else {
            out.insert(
                PathBuf::from(p.file_name().unwrap()),
                std::fs::read(&p).unwrap(),
            );
        }
    }
    out
}

#[test]
fn force_keeps_the_users_files_and_a_failing_run_keeps_the_old_one() {
    let tmp = TempDir::new("train-force");
    let (data, cfg) = cohort(&tmp);
    let run = tmp.join("run");
    ok(teacher(&data, &cfg, &run, &["--stop-after", "1"]));
    std::fs::write(run.join("notes.txt"), b"the user's notes").unwrap();
    std::fs::write(run.join("split").join("mine.txt"), b"the user's list").unwrap();
    let before = files(&run);
    // A dataset whose FLAIR files are broken: the cases fail to load.
    let broken = tmp.join("broken");
    for id in std::fs::read_dir(&data).unwrap() {
        let case = id.unwrap().path();
        let copy = broken.join(case.file_name().unwrap());
        std::fs::create_dir_all(&copy).unwrap();
        for f in std::fs::read_dir(&case).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap();
            let bytes = if s(&f).ends_with("_flair.nii.gz") {
                b"not a NIfTI file".to_vec()
            } else {
                std::fs::read(&f).unwrap()
            };
            std::fs::write(copy.join(name), bytes).unwrap();
        }
    }
    let o = teacher(&broken, &cfg, &run, &["--force"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("flair"));
    assert_eq!(
        files(&run),
        before,
        "the failing run changed the old run's folder"
    );
    // A new run over the old one: the run files are new, the user's files are as they were.
    ok(teacher(&data, &cfg, &run, &["--force"]));
    let after = files(&run);
    for user in ["notes.txt", "split/mine.txt"] {
        assert_eq!(after[Path::new(user)], before[Path::new(user)], "{user}");
    }
    assert!(after.contains_key(Path::new("best.safetensors")));
    assert_ne!(
        after[Path::new("last.safetensors")],
        before[Path::new("last.safetensors")]
    );
}

/// The manifest lists exactly the files a stopped run wrote (`best.*` not yet), so `--force`
/// refuses a user's `best.safetensors` put there afterwards, and a user's file in a folder
/// without a manifest, and a manifest naming another file: each exit 1, nothing changed.
#[test]
fn force_replaces_only_what_the_manifest_lists() {
    let tmp = TempDir::new("train-manifest");
    let (data, cfg) = cohort(&tmp);
    let run = tmp.join("run");
    ok(teacher(&data, &cfg, &run, &["--stop-after", "1"]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("protokd-files.json")).unwrap()).unwrap();
    let mut listed: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    listed.sort();
    let mut on_disk: Vec<String> = files(&run)
        .keys()
        .map(|p| p.display().to_string())
        .collect();
    on_disk.sort();
    assert_eq!(
        listed, on_disk,
        "the manifest lists the files the run wrote"
    );
    assert!(!listed.contains(&"best.safetensors"));
    let force = |out: &Path| -> Vec<String> {
        let mut args = teacher_args(&data, &cfg, out);
        args.push("--force");
        args.into_iter().map(String::from).collect()
    };
    let users = tmp.join("users");
    std::fs::create_dir_all(&users).unwrap();
    let mine = run.join("best.safetensors");
    let table = vec![
        refusal(
            "a user's best.safetensors beside a run",
            vec![(mine.clone(), b"the user's model".to_vec())],
            force(&run),
            1,
            vec![
                s(&mine),
                "not written by a protokd run",
                "protokd-files.json",
            ],
        ),
        refusal(
            "a folder without a manifest",
            vec![(users.join("metrics.jsonl"), b"{}".to_vec())],
            force(&users),
            1,
            vec!["metrics.jsonl", "not written by a protokd run"],
        ),
        refusal(
            "a manifest naming another file",
            vec![(
                users.join("protokd-files.json"),
                br#"{"files": ["../data/important.txt"]}"#.to_vec(),
            )],
            force(&users),
            1,
            vec![
                "protokd-files.json",
                "../data/important.txt",
                "not a file a run writes",
            ],
        ),
    ];
    refused(tmp.path(), table);
}

#[test]
fn a_run_never_writes_over_its_inputs() {
    let tmp = TempDir::new("train-inputs");
    let (data, cfg) = cohort(&tmp);
    let run = tmp.join("run");
    ok(teacher(&data, &cfg, &run, &["--stop-after", "1"]));
    let split = run.join("split");
    let last = run.join("last.safetensors");
    let student = |extra: &[&str]| -> Vec<String> {
        [
            "train",
            "student",
            "--data",
            s(&data),
            "--config",
            s(&cfg),
            "--modality",
            "t1ce",
        ]
        .iter()
        .chain(&["--out", s(&run), "--force"])
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
    };
    let input = "is one of the inputs";
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("--teacher is the run's own checkpoint", vec![], student(&["--teacher", s(&last)]), 1,
            [s(&last), "--teacher", input]),
        refusal("--split-dir is the run's split folder", vec![],
            student(&["--teacher", s(&last), "--split-dir", s(&split)]), 1,
            [s(&split), "--split-dir", input]),
        refusal("--out is --data", vec![],
            ["train", "teacher", "--data", s(&data), "--config", s(&cfg), "--out", s(&data), "--force"], 1,
            [s(&data), "--data", input]),
    ];
    refused(tmp.path(), table);
}

#[test]
fn a_resume_removes_what_a_killed_save_left() {
    let tmp = TempDir::new("train-stale");
    let (data, cfg) = cohort(&tmp);
    let run = tmp.join("run");
    ok(teacher(&data, &cfg, &run, &["--stop-after", "1"]));
    // What `kill -9` during a save leaves: a temporary file named after a process that is gone
    // (no process id reaches 999999999); and one of a process still running (this test).
    let dead = run.join(".last.optim.safetensors.tmp999999999");
    let live = run.join(format!(".metrics.jsonl.tmp{}", std::process::id()));
    let split_dead = run.join("split").join(".train_list.txt.tmp999999998");
    for p in [&dead, &live, &split_dead] {
        std::fs::write(p, b"half a save").unwrap();
    }
    ok(teacher(&data, &cfg, &run, &["--resume", s(&run)]));
    assert!(
        !dead.exists() && !split_dead.exists(),
        "stale temporary files stayed"
    );
    assert!(
        live.exists(),
        "the temporary file of a running process was removed"
    );
    std::fs::remove_file(&live).unwrap();
    assert_eq!(temporary_files(&run), Vec::<String>::new());
}
