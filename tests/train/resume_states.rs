// Verifies (every test in this file): R-DAT-7, R-CLI-1
//! Issue 13: what a run saves and resumes is validated. A resume refuses an optimiser file
//! (`last.optim.safetensors`) with a NaN, infinite or negative `exp_avg_sq`, a NaN `exp_avg`,
//! a negative `model.*` running variance, an Adam step of 2^64-1 or one that is not the run's
//! step count, and another run's file (its recorded `protokd.run.record_sha256` is not the
//! hash of `config.json`); a file without the records (an earlier protokd's) resumes with a
//! warning, to the same bytes as an uninterrupted run. A student's run refuses every bad
//! teacher of `tests/common/bad_models.rs`. A config `lr` that overflows f32 is
//! refused before the run starts; a run whose state turns invalid (weights past 1e6) stops
//! without writing it.
//! Every refusal: exit 1, the file, the tensor (or key) and the problem named, no file changed.

use crate::common::refusal::{file, refusal, refused};
use crate::common::{protokd, s, TempDir};
use protokd::io::tensorfile::{serialize, OutTensor, TensorFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The tiny config of `run.rs`: 2 epochs of 2 steps, n_filters 4.
const TINY: &str = r#"{"n_filters": 4, "batch_size": 2, "patch": [16, 16, 16], "max_epoch": 2,
  "val_start_epoch": 0, "val_patch": [16, 32, 32], "val_stride": [8, 16, 16], "crop": null,
  "val_fraction": 0.125, "test_fraction": 0.25, "seed": 7, "init_seed": 3}"#;

/// `protokd train teacher --data data --config cfg` then `extra`.
fn teacher(data: &Path, cfg: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "teacher", "--data", s(data), "--config", s(cfg)];
    args.extend(extra);
    protokd(&args)
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out
}

/// The files of run folder `run` copied to `to`, with `last.optim.safetensors` replaced by
/// `optim`.
fn run_copy(run: &Path, to: &Path, optim: Vec<u8>) -> Vec<(PathBuf, Vec<u8>)> {
    files(run)
        .into_iter()
        .map(|(rel, bytes)| {
            let bytes = if rel == Path::new("last.optim.safetensors") {
                optim.clone()
            } else {
                bytes
            };
            file(&to.join(rel), bytes)
        })
        .collect()
}

/// A safetensors file's tensors, by name.
type Tensors = Vec<(String, OutTensor)>;

/// The optimiser file `path` rewritten with `edit` applied to its tensors and metadata.
fn edit_optim(path: &Path, edit: &dyn Fn(&mut Tensors, &mut HashMap<String, String>)) -> Vec<u8> {
    let f = TensorFile::open(path).unwrap();
    let mut tensors: Vec<(String, OutTensor)> = f
        .names()
        .into_iter()
        .map(|n| {
            let t = if n.ends_with("num_batches_tracked") {
                OutTensor::I64(f.i64_scalar(&n).unwrap())
            } else {
                OutTensor::F32(f.f32(&n).unwrap())
            };
            (n, t)
        })
        .collect();
    let mut meta = f.metadata().unwrap();
    edit(&mut tensors, &mut meta);
    serialize(&tensors, Some(meta)).unwrap()
}

/// Sets value 0 of f32 tensor `name` to `v`.
fn set0(t: &mut [(String, OutTensor)], name: &str, v: f32) {
    match t.iter_mut().find(|(n, _)| n == name) {
        Some((_, OutTensor::F32(x))) => x.data[0] = v,
        _ => panic!("no f32 tensor {name}"),
    }
}

#[test]
fn invalid_states_are_refused_on_resume_and_never_saved() {
    let dir = TempDir::new("train-states");
    let data = dir.join("data");
    ok(protokd(&[
        "phantom",
        "--out",
        s(&data),
        "--cases",
        "8",
        "--seed",
        "5",
        "--size",
        "32,32,16",
    ]));
    let cfg = dir.join("tiny.json");
    std::fs::write(&cfg, TINY).unwrap();
    // An uninterrupted run, and one stopped after its first step (resumed below).
    let full = dir.join("full");
    ok(teacher(&data, &cfg, &["--out", s(&full)]));
    let base = dir.join("base");
    ok(teacher(
        &data,
        &cfg,
        &["--out", s(&base), "--stop-after", "1"],
    ));
    let optim = base.join("last.optim.safetensors");

    let sq = "adam.exp_avg_sq.block_one.conv.0.weight";
    let avg = "adam.exp_avg.block_one.conv.0.weight";
    let var = "model.block_two.conv.1.running_var";
    type Edit = Box<dyn Fn(&mut Tensors, &mut HashMap<String, String>)>;
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "nan-sq",
            Box::new(move |t: &mut Vec<_>, _: &mut HashMap<_, _>| set0(t, sq, f32::NAN)) as Edit,
            vec![sq, "NaN", "non-finite"],
        ),
        (
            "neg-sq",
            Box::new(move |t: &mut Vec<_>, _: &mut HashMap<_, _>| set0(t, sq, -1e-3)),
            vec![sq, "-0.001", "negative"],
        ),
        (
            "inf-sq",
            Box::new(move |t: &mut Vec<_>, _: &mut HashMap<_, _>| set0(t, sq, f32::INFINITY)),
            vec![sq, "inf", "non-finite"],
        ),
        (
            "nan-avg",
            Box::new(move |t: &mut Vec<_>, _: &mut HashMap<_, _>| set0(t, avg, f32::NAN)),
            vec![avg, "NaN", "non-finite"],
        ),
        (
            "neg-var",
            Box::new(move |t: &mut Vec<_>, _: &mut HashMap<_, _>| set0(t, var, -0.5)),
            vec![var, "-0.5", "negative"],
        ),
        (
            "step-max",
            Box::new(|_: &mut Vec<_>, m: &mut HashMap<String, String>| {
                m.insert("protokd.adam.step".into(), u64::MAX.to_string());
            }),
            vec!["`protokd.adam.step`", "18446744073709551615", "2^53"],
        ),
        (
            "step-off",
            Box::new(|_: &mut Vec<_>, m: &mut HashMap<String, String>| {
                m.insert("protokd.adam.step".into(), "2".into());
            }),
            vec!["`protokd.adam.step` = 2", "`protokd.run.global_step` = 1"],
        ),
    ]
    .into_iter()
    .map(|(name, e, words)| (name, edit_optim(&optim, &*e), words))
    .collect();
    let mut table = Vec::new();
    for (name, bytes, mut words) in cases {
        let run = dir.join(name);
        let mut args = vec!["train", "teacher", "--data", s(&data), "--config", s(&cfg)];
        args.extend(["--resume", s(&run)]);
        words.push("last.optim.safetensors");
        table.push(refusal(name, run_copy(&base, &run, bytes), args, 1, words));
    }
    // Another run's optimiser file (a run of the same network, init_seed 4, stopped at the
    // same step) in the stopped run's folder.
    let cfg4 = dir.join("init4.json");
    std::fs::write(&cfg4, TINY.replace("\"init_seed\": 3", "\"init_seed\": 4")).unwrap();
    let run4 = dir.join("run4");
    ok(teacher(
        &data,
        &cfg4,
        &["--out", s(&run4), "--stop-after", "1"],
    ));
    let other = dir.join("other");
    let mut args = vec!["train", "teacher", "--data", s(&data), "--config", s(&cfg)];
    args.extend(["--resume", s(&other)]);
    table.push(refusal(
        "another run's optimiser file",
        run_copy(
            &base,
            &other,
            std::fs::read(run4.join("last.optim.safetensors")).unwrap(),
        ),
        args,
        1,
        [
            format!("{}", other.join("last.optim.safetensors").display()),
            format!("{}", other.join("config.json").display()),
            "another run's".into(),
        ],
    ));
    // `lr` finite in f64 but infinite in f32: refused before the run folder is made.
    let lr_cfg = dir.join("lr.json");
    let huge = TINY.replace("\"seed\": 7", "\"seed\": 7, \"lr\": 1e39");
    let mut args = vec![
        "train",
        "teacher",
        "--data",
        s(&data),
        "--config",
        s(&lr_cfg),
    ];
    let lr_run = dir.join("lr-run");
    args.extend(["--out", s(&lr_run)]);
    table.push(refusal(
        "lr 1e39",
        vec![file(&lr_cfg, huge)],
        args,
        1,
        ["config `lr` = 1e39", "not finite as f32"],
    ));
    // A teacher with a negative running variance (and every other bad model): refused when
    // the student's run loads it, before the run folder is made.
    for (path, bytes, words) in crate::bad_models::bad_models(dir.path()) {
        let out = dir.join("student-run");
        let mut args = vec!["train", "student", "--data", s(&data), "--config", s(&cfg)];
        args.extend([
            "--out",
            s(&out),
            "--modality",
            "t1ce",
            "--method",
            "protokd",
        ]);
        args.extend(["--teacher", s(&path)]);
        // The teacher's own class check words the 2- and 5-class models.
        let words = if words.contains(&"need 4") {
            vec![path.to_str().unwrap(), "classes"]
        } else {
            words
        };
        table.push(refusal(
            &format!("teacher {}", path.display()),
            vec![file(&path, bytes)],
            args,
            1,
            words,
        ));
    }
    refused(dir.path(), table);
    assert!(!lr_run.exists());

    // An earlier protokd's file (no `protokd.model.sha256`): resumed with a warning, to the
    // uninterrupted run's bytes.
    let legacy = edit_optim(&optim, &|_, m| {
        m.remove("protokd.model.sha256");
        m.remove("protokd.run.record_sha256");
    });
    std::fs::write(&optim, legacy).unwrap();
    let out = ok(teacher(&data, &cfg, &["--resume", s(&base)]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning:") && err.contains("`protokd.model.sha256`"),
        "{err}"
    );
    for f in [
        "last.safetensors",
        "best.safetensors",
        "last.optim.safetensors",
    ] {
        assert_eq!(
            std::fs::read(base.join(f)).unwrap(),
            std::fs::read(full.join(f)).unwrap(),
            "{f}"
        );
    }

    // A run whose state turns invalid with a finite loss (lr 1e7: Adam's first update moves
    // every weight by about 1e7, past the bound of 1e6; BatchNorm keeps the loss finite) stops
    // at its save after step 1 without writing the state. (A NaN loss was refused before.)
    let div_cfg = dir.join("diverge.json");
    std::fs::write(
        &div_cfg,
        TINY.replace("\"seed\": 7", "\"seed\": 7, \"lr\": 1e7"),
    )
    .unwrap();
    let div = dir.join("diverge");
    let out = teacher(&data, &div_cfg, &["--out", s(&div), "--stop-after", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for w in [
        "training diverged: after step 1 (0 epoch(s) finished), tensor `",
        "magnitudes above 1e6",
        "last.safetensors was not written",
    ] {
        assert!(err.contains(w), "{w} not in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    for f in [
        "last.safetensors",
        "last.optim.safetensors",
        "best.safetensors",
    ] {
        assert!(!div.join(f).exists(), "{f} written");
    }
}
