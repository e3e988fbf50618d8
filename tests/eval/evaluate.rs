// Verifies (every test in this file): R-WFL-2
//! `protokd evaluate` on tiny phantoms with a tiny seeded model: cases.csv and summary.json
//! agree with `protokd score` on the saved segmentations and with `protokd segment`, and bad
//! input is refused without touching existing files.

use crate::common::refusal::{file, refusal, refused};
use crate::common::workflow::{model, ok, phantoms, SIZE, WINDOW};
use crate::common::{s, TempDir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn evaluate(extra: &[&str]) -> String {
    let mut args = vec!["evaluate"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&WINDOW);
    ok(&args)
}

/// cases.csv as `id -> column -> value` (`None` for an empty cell).
fn read_csv(path: &Path) -> BTreeMap<String, BTreeMap<String, Option<f64>>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    // 1 + 3 regions x (4 protokd metrics + 7 challenge columns).
    assert_eq!(header.len(), 34);
    assert_eq!(header[0], "case");
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), 34, "{l}");
            let row = header[1..]
                .iter()
                .zip(&cells[1..])
                .map(|(h, c)| (h.to_string(), (!c.is_empty()).then(|| c.parse().unwrap())))
                .collect();
            (cells[0].to_string(), row)
        })
        .collect()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (
        mean,
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

// Verifies: R-CLI-6, R-MTH-11
#[test]
fn report_agrees_with_score_and_segment() {
    let tmp = TempDir::new("evaluate");
    let data = tmp.join("data");
    let ids = phantoms(&data, 2, "2018", SIZE);
    let m = tmp.join("t1ce.safetensors");
    model(&m, "t1ce", 7);
    let report = tmp.join("report");
    let out = evaluate(&[
        "--model",
        s(&m),
        "--data",
        s(&data),
        "--out",
        s(&report),
        "--save-segmentations",
    ]);
    assert!(
        out.contains("Dice (%)") && out.contains("HD95 (mm)") && out.contains("[2/2]"),
        "{out}"
    );
    let csv = read_csv(&report.join("cases.csv"));
    assert_eq!(csv.keys().cloned().collect::<Vec<_>>(), ids);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["cases"], 2);
    assert_eq!(summary["hd95_units"], "mm");
    let meta = &summary["meta"];
    assert_eq!(meta["modalities"], "t1ce");
    assert_eq!(meta["model"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(meta["case_ids"], serde_json::json!(ids));
    assert_eq!(meta["window"]["patch"], serde_json::json!([16, 16, 16]));

    // Each case: `protokd score` on the saved segmentation gives the CSV's values.
    for id in &ids {
        let seg = report.join(format!("segmentations/{id}_seg.nii.gz"));
        let label = data.join(format!("{id}/{id}_seg.nii.gz"));
        let json = tmp.join(&format!("{id}.json"));
        ok(&[
            "score",
            "--pred",
            s(&seg),
            "--label",
            s(&label),
            "--json",
            s(&json),
        ]);
        let scored: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        for r in ["WT", "TC", "ET"] {
            for metric in ["dice", "hd95", "sensitivity", "specificity"] {
                // Same computation; compared to 1e-15 relative only because serde_json's
                // default float parser is not always correctly rounded (last-digit slips).
                let want = scored[r][metric].as_f64();
                let got = csv[id][&format!("{r}_{metric}")];
                match (got, want) {
                    (Some(g), Some(w)) => {
                        assert!(
                            (g - w).abs() <= 1e-15 * w.abs().max(1.0),
                            "{id} {r} {metric}"
                        )
                    }
                    _ => assert_eq!(got, want, "{id} {r} {metric}"),
                }
            }
            // The challenge metrics: the same code on the same masks (the phantom ids name no
            // challenge, so both use BraTS-GLI's parameters).
            let brats = &scored["brats_challenge"];
            assert_eq!(brats["challenge"], "BraTS-GLI");
            for metric in [
                "legacy_dice",
                "legacy_hd95",
                "lesionwise_dice",
                "lesionwise_hd95",
                "lesions_tp",
                "lesions_fp",
                "lesions_fn",
            ] {
                let want = brats[r][metric].as_f64().unwrap();
                let got = csv[id][&format!("{r}_{metric}")].unwrap();
                assert!(
                    (got - want).abs() <= 1e-15 * want.abs().max(1.0),
                    "{id} {r} {metric}: {got} vs {want}"
                );
            }
        }
    }
    // The summary: mean and population std of the CSV columns, HD95 over the defined cases.
    let mut region_dice = vec![];
    for r in ["WT", "TC", "ET"] {
        for metric in ["dice", "hd95", "sensitivity", "specificity"] {
            let col: Vec<f64> = csv
                .values()
                .filter_map(|row| row[&format!("{r}_{metric}")])
                .collect();
            let stat = &summary[r][metric];
            assert_eq!(
                stat["n"].as_u64().unwrap() as usize,
                col.len(),
                "{r} {metric}"
            );
            if col.is_empty() {
                assert!(stat["mean"].is_null());
                continue;
            }
            let (mean, std) = mean_std(&col);
            assert!(
                (stat["mean"].as_f64().unwrap() - mean).abs() < 1e-12,
                "{r} {metric}"
            );
            assert!(
                (stat["std"].as_f64().unwrap() - std).abs() < 1e-12,
                "{r} {metric}"
            );
            if metric == "dice" {
                region_dice.push(mean);
            }
        }
    }
    let mean_dice = region_dice.iter().sum::<f64>() / 3.0;
    assert!((summary["mean_dice"].as_f64().unwrap() - mean_dice).abs() < 1e-12);

    // The saved segmentations are those of `protokd segment`.
    let segs = tmp.join("segs");
    let mut args = vec![
        "segment",
        "--model",
        s(&m),
        "--input",
        s(&data),
        "--out",
        s(&segs),
    ];
    args.extend_from_slice(&WINDOW);
    ok(&args);
    for id in &ids {
        let name = format!("{id}_seg.nii.gz");
        assert_eq!(
            std::fs::read(segs.join(&name)).unwrap(),
            std::fs::read(report.join("segmentations").join(&name)).unwrap()
        );
    }

    // A case list of one case, HD95 in voxels, into the existing folder with --force.
    let list = tmp.join("list.txt");
    std::fs::write(&list, format!("# one case\n{}\n", ids[1])).unwrap();
    evaluate(&[
        "--model",
        s(&m),
        "--data",
        s(&data),
        "--cases",
        s(&list),
        "--out",
        s(&report),
        "--voxel-units",
        "--force",
    ]);
    let csv1 = read_csv(&report.join("cases.csv"));
    assert_eq!(csv1.keys().collect::<Vec<_>>(), [&ids[1]]);
    assert_eq!(csv1[&ids[1]]["WT_dice"], csv[&ids[1]]["WT_dice"]);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["hd95_units"], "voxels");
    assert_eq!(summary["meta"]["case_list"], s(&list));
}

// Verifies: R-CLI-1
#[test]
fn bad_input_is_refused_and_leaves_files_alone() {
    let tmp = TempDir::new("evaluate-bad");
    let data = tmp.join("data");
    let ids = phantoms(&data, 2, "2018", SIZE);
    let m = tmp.join("t1ce.safetensors");
    model(&m, "t1ce", 7);
    let (report, r2) = (tmp.join("report"), tmp.join("r2"));
    let args = |data: &Path, report: &Path, extra: &[&str]| -> Vec<String> {
        [
            "evaluate",
            "--model",
            s(&m),
            "--data",
            s(data),
            "--out",
            s(report),
        ]
        .iter()
        .chain(&WINDOW)
        .chain(extra)
        .map(|x| x.to_string())
        .collect()
    };
    // The dataset with the second case's segmentation left out.
    let noseg = tmp.join("noseg");
    let seg = format!("{}_seg.nii.gz", ids[1]);
    let noseg_files = ids
        .iter()
        .flat_map(|id| std::fs::read_dir(data.join(id)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with(&seg))
        .map(|p| {
            let rel = p.strip_prefix(&data).unwrap();
            file(&noseg.join(rel), std::fs::read(&p).unwrap())
        })
        .collect();
    let (empty, list) = (tmp.join("empty"), tmp.join("list.txt"));
    std::fs::create_dir(&empty).unwrap();
    let keep = vec![file(&report.join("cases.csv"), b"keep")];
    let cases = ["--cases", s(&list)];
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        // Named, nothing written.
        refusal("a case without its segmentation", noseg_files, args(&noseg, &report, &[]), 1,
            ["1 case(s) have no segmentation", ids[1].as_str()]),
        // Refused, its files intact.
        refusal("an existing report folder without --force", keep, args(&data, &report, &[]), 1,
            ["report folder", "already exists", "--force"]),
        refusal("an empty data folder", vec![], args(&empty, &r2, &[]), 1,
            ["holds no case folder"]),
        refusal("an unknown case in the list", vec![file(&list, b"nope\n")],
            args(&data, &r2, &cases), 1, ["case `nope` is not in the dataset"]),
        refusal("--modality against the model", vec![],
            args(&data, &r2, &["--modality", "flair"]), 1,
            ["takes 1 channel(s) (t1ce) but --modality gives flair"]),
    ];
    refused(tmp.path(), table);
    assert_eq!(
        std::fs::read_to_string(report.join("cases.csv")).unwrap(),
        "keep"
    );
    assert!(!r2.exists());
}
