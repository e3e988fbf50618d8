// Verifies (every test in this file): R-DAT-3, R-WFL-1
//! `train`, `evaluate` and `segment` on the authors' preprocessed `.npy` dataset: the same
//! phantoms as NIfTI case folders and as `.npy` arrays written from protokd's own preprocessing
//! (`common/npy.rs`) give the same bits: the same checkpoints (SHA-256), the same step and
//! validation records, the same per-case scores (HD95 in voxels) and the same segmentations.
//! The `.npy` split lists are the split; the missing affine is said once and recorded. The
//! authors'-format fixture (float64, written by `tools/npy/make_dataset.py`) trains and
//! evaluates.

use crate::common::workflow::{self, teacher_args};
use crate::common::{protokd, s, TempDir};
use crate::npy_files::from_nifti;
use protokd::io::hash::sha256_hex;
use protokd::io::nifti::read_image;
use safetensors::SafeTensors;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

/// 4 training cases (batch 2: 2 steps an epoch), 1 validation case, every epoch validated.
const CONFIG: &str = r#"{"n_filters": 4, "batch_size": 2, "patch": [16, 16, 16], "max_epoch": 2,
  "val_start_epoch": 0, "val_patch": [16, 16, 16], "val_stride": [8, 8, 8], "crop": null,
  "seed": 11, "init_seed": 5}"#;

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `metrics.jsonl` as JSON values.
fn records(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The tensors (name, dtype, shape, bytes) and metadata of a run's `last.optim.safetensors`.
type Optim = (
    Vec<(String, String, Vec<usize>, Vec<u8>)>,
    HashMap<String, String>,
);

fn optim(run: &Path) -> Optim {
    let bytes = std::fs::read(run.join("last.optim.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                format!("{:?}", t.dtype()),
                t.shape().to_vec(),
                t.data().to_vec(),
            )
        })
        .collect();
    tensors.sort();
    (tensors, meta.metadata().clone().unwrap_or_default())
}

fn sha(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

#[test]
fn npy_dataset_trains_evaluates_and_segments_as_its_nifti_cases() {
    let tmp = TempDir::new("npy-workflow");
    let nifti = tmp.join("nifti");
    let ids = workflow::phantoms(&nifti, 6, "2018", "32,32,16");
    // The authors' layout: the arrays in data/brats2018/, the lists beside them in data/.
    let data = tmp.join("data");
    let arrays = data.join("brats2018");
    from_nifti(&nifti, &arrays);
    let lists = [&ids[..4], &ids[4..5], &ids[5..]];
    for (name, part) in ["train_list.txt", "val_list.txt", "test_list.txt"]
        .iter()
        .zip(lists)
    {
        std::fs::write(data.join(name), part.join("\n") + "\n").unwrap();
    }
    let cfg = tmp.join("config.json");
    std::fs::write(&cfg, CONFIG).unwrap();

    let (run_nifti, run_npy) = (tmp.join("run_nifti"), tmp.join("run_npy"));
    let train = |d: &Path, out: &Path, split: &[&str]| {
        let mut args = vec!["train", "teacher", "--data", s(d), "--config", s(&cfg)];
        args.extend(["--out", s(out)]);
        args.extend(split);
        ok(protokd(&args))
    };
    train(&nifti, &run_nifti, &["--split-dir", s(&data)]);
    let said = train(&arrays, &run_npy, &[]);
    // The note, once: how the arrays are used, the split lists found, the assumed geometry.
    assert_eq!(said.matches("1 mm isotropic").count(), 1, "{said}");
    assert!(said.contains("6 .npy case(s)"), "{said}");
    assert!(
        said.contains(&format!("split folder {}", data.display())),
        "{said}"
    );

    for f in ["last.safetensors", "best.safetensors"] {
        assert_eq!(sha(&run_nifti.join(f)), sha(&run_npy.join(f)), "{f}");
    }
    // The optimiser files differ only in the hash of their run's config.json, which records
    // the data folder and where the split came from.
    let (x, y) = (optim(&run_nifti), optim(&run_npy));
    assert_eq!(x.0, y.0, "tensors of last.optim.safetensors");
    assert_eq!(x.1.len(), y.1.len());
    for (k, v) in &x.1 {
        if k != "protokd.run.record_sha256" {
            assert_eq!(Some(v), y.1.get(k), "metadata {k}");
        }
    }
    let (a, b) = (records(&run_nifti), records(&run_npy));
    assert_eq!(a.len(), 6, "4 steps and 2 validations");
    assert_eq!(a, b);
    let split = |run: &Path| -> Value {
        let record: Value =
            serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
        let mut split = record["split"].clone();
        split.as_object_mut().unwrap().remove("source");
        split
    };
    assert_eq!(split(&run_nifti), split(&run_npy));

    // evaluate: the same scores per case (HD95 in voxels: the arrays hold no voxel size).
    let model = run_npy.join("best.safetensors");
    let test_list = data.join("test_list.txt");
    let evaluate = |d: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec!["evaluate", "--model", s(&model), "--data", s(d)];
        args.extend(["--cases", s(&test_list), "--out", s(out)]);
        args.extend(workflow::WINDOW);
        args.extend(extra);
        ok(protokd(&args))
    };
    let (ev_nifti, ev_npy) = (tmp.join("ev_nifti"), tmp.join("ev_npy"));
    evaluate(&nifti, &ev_nifti, &["--voxel-units"]);
    evaluate(&arrays, &ev_npy, &["--voxel-units"]);
    let csv = |d: &Path| std::fs::read_to_string(d.join("cases.csv")).unwrap();
    assert_eq!(csv(&ev_nifti), csv(&ev_npy));
    let ev_mm = tmp.join("ev_mm");
    let said = evaluate(&arrays, &ev_mm, &[]);
    assert_eq!(said.matches("1 mm isotropic").count(), 1, "{said}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(ev_mm.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["meta"]["hd95_spacing"]
            .as_str()
            .unwrap()
            .contains("1 mm isotropic"),
        "{summary}"
    );

    // segment: a folder of arrays, and one array, give the NIfTI cases' labels.
    let (seg_nifti, seg_npy) = (tmp.join("seg_nifti"), tmp.join("seg_npy"));
    let segment = |input: &Path, out: &Path| {
        let mut args = vec!["segment", "--model", s(&model), "--input", s(input)];
        args.extend(["--out", s(out)]);
        args.extend(workflow::WINDOW);
        ok(protokd(&args))
    };
    segment(&nifti, &seg_nifti);
    let said = segment(&arrays, &seg_npy);
    assert_eq!(said.matches("1 mm isotropic").count(), 1, "{said}");
    let provenance: Value =
        serde_json::from_slice(&std::fs::read(seg_npy.join("provenance.json")).unwrap()).unwrap();
    assert!(provenance["geometry"].as_str().unwrap().contains("1 mm"));
    let one = tmp.join("one_seg.nii.gz");
    segment(&arrays.join(format!("{}.npy", ids[0])), &one);
    for id in &ids {
        let name = format!("{id}_seg.nii.gz");
        let want = read_image(&seg_nifti.join(&name)).unwrap().volume;
        let got = read_image(&seg_npy.join(&name)).unwrap();
        assert_eq!(got.volume, want, "{id}");
        assert_eq!(got.geometry.spacing, [1.0; 3]);
        if id == &ids[0] {
            assert_eq!(read_image(&one).unwrap().volume, want);
        }
    }
}

/// The committed fixture, written by `tools/npy/make_dataset.py` with the authors' arithmetic
/// (float64, as their preprocess.py writes), twice under two case ids (a batch of 2: BatchNorm
/// needs more than one value per channel at the 1^3 bottleneck of a 16^3 patch): a teacher
/// trains on it and is evaluated on it.
#[test]
fn the_authors_float64_fixture_trains_and_evaluates() {
    let tmp = TempDir::new("npy-authors-fixture");
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let name = "Phantom_3_000.npy";
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/npy");
    std::fs::copy(fixture.join(name), data.join(name)).unwrap();
    std::fs::copy(fixture.join(name), data.join("copy.npy")).unwrap();
    let cfg = tmp.join("config.json");
    std::fs::write(
        &cfg,
        r#"{"n_filters": 4, "batch_size": 2, "patch": [16, 16, 16], "max_epoch": 2,
  "val_start_epoch": 0, "val_patch": [16, 16, 16], "val_stride": [8, 8, 8], "crop": null,
  "val_fraction": 0.0, "test_fraction": 0.0}"#,
    )
    .unwrap();
    let run = tmp.join("run");
    let said = ok(protokd(&teacher_args(&data, &cfg, &run)));
    assert!(said.contains("2 .npy case(s)"), "{said}");
    assert_eq!(records(&run).len(), 2, "one step in each of 2 epochs");
    let report = tmp.join("report");
    let model = run.join("last.safetensors");
    let mut args = vec!["evaluate", "--model", s(&model), "--data", s(&data)];
    args.extend(["--out", s(&report)]);
    args.extend(workflow::WINDOW);
    ok(protokd(&args));
    let csv = std::fs::read_to_string(report.join("cases.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[0].starts_with("Phantom_3_000,"), "{csv}");
    // The same array under two names scores the same.
    assert_eq!(
        rows[0].split_once(',').unwrap().1,
        rows[1].split_once(',').unwrap().1
    );
}
