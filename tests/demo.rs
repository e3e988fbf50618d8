// Verifies (every test in this file): R-WFL-3
//! Tests of `protokd demo` on a tiny plan (phantoms of 32 x 32 x 16 voxels, n_filters 4, two
//! epochs): every stage's files, `results.json`'s shape, agreement of its numbers with
//! `protokd evaluate` run separately on the same checkpoints, and the refusal of an existing
//! output folder. The default plan's timing is in the README (a real run's output).

mod common;
use common::refusal::{refusal, refused};
use common::{protokd, s, TempDir};
use protokd::demo::{run, DemoOptions, Plan};
use protokd::engine::EngineKind;
use protokd::modality::Modalities;
use serde_json::{json, Value};

fn tiny_plan() -> Plan {
    Plan {
        size: [32, 32, 16],
        cases: 8,
        seed: 5,
        overrides: json!({
            "n_filters": 4, "batch_size": 2, "patch": [16, 16, 16], "max_epoch": 2,
            "val_start_epoch": 0, "val_patch": [16, 32, 32], "val_stride": [8, 16, 16],
            "crop": null, "val_fraction": 0.125, "test_fraction": 0.25,
        }),
    }
}

#[test]
fn demo_runs_every_stage_and_agrees_with_evaluate() {
    let dir = TempDir::new("demo");
    let out = dir.join("demo");
    let opts = DemoOptions {
        out: out.clone(),
        modality: Modalities::parse("t2").unwrap(),
        all_modalities: false,
        plan: tiny_plan(),
        force: false,
        templates: None,
        compute: EngineKind::Cpu.open().unwrap(),
    };
    let mut lines = Vec::new();
    let rows = run(&opts, &mut |l| lines.push(l.to_string())).unwrap();
    let text = lines.join("\n");
    assert!(text.contains("Dice (%) on 2 held-out phantoms"), "{text}");

    let results: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let jr = results["rows"].as_array().unwrap();
    let models: Vec<&str> = jr.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["teacher", "unimodal", "protokd"]);
    assert_eq!(jr[0]["modality"], "t1,t2,t1ce,flair");
    assert_eq!(jr[2]["modality"], "t2");
    for (r, row) in jr.iter().zip(&rows) {
        let d: Vec<f64> = ["wt", "tc", "et"]
            .iter()
            .map(|k| r[k].as_f64().unwrap())
            .collect();
        assert!(d.iter().all(|v| (0.0..=1.0).contains(v)), "{r}");
        assert_eq!(r["mean"].as_f64().unwrap(), (d[0] + d[1] + d[2]) / 3.0);
        assert_eq!(row.dice[..3], d[..]);
    }
    for f in [
        "runs/teacher/best.safetensors",
        "runs/t2-unimodal/curves.svg",
        "runs/t2-protokd/metrics.jsonl",
        "eval/teacher/cases.csv",
        "eval/t2-protokd/summary.json",
        "overlays/reference.png",
        "overlays/teacher.png",
        "overlays/t2-unimodal.png",
        "overlays/t2-protokd.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    // The same numbers from `protokd evaluate` on the demo's test split and checkpoint.
    let test_list = out.join("runs/teacher/split/test_list.txt");
    let report = dir.join("report");
    let e = protokd(&[
        "evaluate",
        "--model",
        jr[2]["checkpoint"].as_str().unwrap(),
        "--data",
        s(&out.join("data")),
        "--cases",
        s(&test_list),
        "--patch",
        "16,32,32",
        "--stride",
        "8,16,16",
        "--out",
        s(&report),
    ]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(report.join("summary.json")).unwrap()).unwrap();
    for (k, region) in ["wt", "tc", "et"].iter().zip(["WT", "TC", "ET"]) {
        assert_eq!(summary[region]["dice"]["mean"], jr[2][*k], "{region}");
    }

    // An existing output folder is refused without --force, and left as it was.
    let before = std::fs::read(out.join("results.json")).unwrap();
    refused(
        &out,
        vec![refusal(
            "an existing output folder without --force",
            vec![],
            ["demo", "--out", s(&out)],
            1,
            ["already exists", "--force"],
        )],
    );
    assert_eq!(std::fs::read(out.join("results.json")).unwrap(), before);
}

#[test]
fn both_plans_give_valid_configs() {
    use protokd::train::config::Method;
    for plan in [Plan::small(), Plan::full()] {
        for method in [Method::Protokd, Method::Baseline] {
            for m in ["t1", "t2", "t1ce", "flair"] {
                plan.config(method, &Modalities::parse(m).unwrap()).unwrap();
            }
        }
        let t = plan.config(Method::Teacher, &Modalities::all()).unwrap();
        assert_eq!(t.method, Method::Teacher);
    }
    // --full is the paper's configuration, unchanged.
    let full = Plan::full()
        .config(Method::Protokd, &Modalities::parse("t1ce").unwrap())
        .unwrap();
    let paper = protokd::train::config::effective(
        Method::Protokd,
        &Modalities::parse("t1ce").unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(full, paper);
}

#[test]
fn all_modalities_trains_two_students_per_modality() {
    let dir = TempDir::new("demo-all");
    let out = dir.join("demo");
    let opts = DemoOptions {
        out: out.clone(),
        modality: Modalities::parse("t1ce").unwrap(),
        all_modalities: true,
        plan: tiny_plan(),
        force: false,
        templates: None,
        compute: EngineKind::Cpu.open().unwrap(),
    };
    let rows = run(&opts, &mut |_| {}).unwrap();
    let got: Vec<(String, &str)> = rows.iter().map(|r| (r.modality.clone(), r.model)).collect();
    let mut want = vec![("t1,t2,t1ce,flair".to_string(), "teacher")];
    for m in ["t1", "t2", "t1ce", "flair"] {
        want.push((m.to_string(), "unimodal"));
        want.push((m.to_string(), "protokd"));
    }
    assert_eq!(got, want);
    // --force reruns into the same folder; the bits do not change.
    let first = std::fs::read(out.join("runs/flair-protokd/last.safetensors")).unwrap();
    let again = DemoOptions {
        force: true,
        ..opts
    };
    run(&again, &mut |_| {}).unwrap();
    assert_eq!(
        std::fs::read(out.join("runs/flair-protokd/last.safetensors")).unwrap(),
        first
    );
}
