// Verifies (every test in this file): R-WFL-2
//! `protokd segment` on tiny phantoms with a tiny seeded model (n_filters 4, 16^3 window):
//! geometry and label set of the output, probabilities, the three kinds of input, determinism,
//! and bad input. Run `cargo test --release --test infer -- --ignored --nocapture` for the
//! timing of one full-size case at the paper's window.

use crate::common::refusal::{file, refusal, refused};
use crate::common::workflow::{self, model, ok, phantoms, pytorch_model, SIZE, WINDOW};
use crate::common::{fails_midway, protokd, protokd_command, s, TempDir};
use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
use protokd::io::nifti::read_image;
use protokd::volume::Image;
use std::path::Path;

fn segment(extra: &[&str]) -> String {
    let mut args = vec!["segment"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&WINDOW);
    ok(&args)
}

fn same_grid(a: &Image, b: &Image) {
    assert_eq!(a.volume.dims, b.volume.dims);
    assert_eq!(a.geometry.affine, b.geometry.affine);
    assert_eq!(a.geometry.spacing, b.geometry.spacing);
}

/// The seg's values as u8.
fn labels(img: &Image) -> Vec<u8> {
    img.volume.data.iter().map(|&v| v as u8).collect()
}

/// Checks a 4-D probability file (read with the `nifti` crate, not our reader) against the
/// segmentation: shape (x, y, z, 4), each voxel's probabilities sum to 1 within 1e-5, and the
/// raw label of their argmax (first maximum) is the segmentation's label.
fn check_probabilities(path: &Path, seg: &Image, internal_to_raw: [u8; 4]) {
    let obj = ReaderOptions::new().read_file(path).unwrap();
    let h = obj.header();
    let [nz, ny, nx] = seg.volume.dims;
    assert_eq!(h.dim[..5], [4, nx as u16, ny as u16, nz as u16, 4]);
    assert_eq!(h.datatype, 16);
    assert_eq!(h.srow_x, seg.geometry.header.srow_x);
    let p = obj.into_volume().into_ndarray::<f32>().unwrap();
    assert_eq!(p.shape(), &[nx, ny, nz, 4]);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let col: Vec<f32> = (0..4).map(|k| p[[x, y, z, k]]).collect();
                let sum: f32 = col.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "sum {sum} at {x},{y},{z}");
                let best = (1..4).fold(0, |b, k| if col[k] > col[b] { k } else { b });
                let got = seg.volume.data[(z * ny + y) * nx + x] as u8;
                assert_eq!(got, internal_to_raw[best], "at {x},{y},{z}");
            }
        }
    }
}

// Verifies: R-MTH-10, R-CLI-6
#[test]
fn case_folder_files_and_dataset_give_the_same_segmentation() {
    let tmp = TempDir::new("segment");
    let data = tmp.join("data");
    let ids = phantoms(&data, 2, "2018", SIZE);
    let m = tmp.join("t1ce.safetensors");
    model(&m, "t1ce", 7);
    let case = data.join(&ids[0]);
    let (seg, prob, png) = (
        tmp.join("seg.nii.gz"),
        tmp.join("p.nii.gz"),
        tmp.join("o.png"),
    );
    let out = segment(&[
        "--model",
        s(&m),
        "--input",
        s(&case),
        "--out",
        s(&seg),
        "--probabilities",
        s(&prob),
        "--png",
        s(&png),
    ]);
    assert!(
        out.contains("32 windows") && out.contains("voxels per label 0: "),
        "{out}"
    );
    assert!(out.contains("sha256") && out.contains("wrote"), "{out}");
    let input = read_image(&case.join(format!("{}_t1ce.nii.gz", ids[0]))).unwrap();
    let written = read_image(&seg).unwrap();
    same_grid(&written, &input);
    assert!(labels(&written).iter().all(|l| [0, 1, 2, 4].contains(l)));
    check_probabilities(&prob, &written, [0, 4, 1, 2]);
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    // The provenance record: the model's and the input's SHA-256, the files written.
    let prov: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.join("seg.provenance.json")).unwrap()).unwrap();
    let sha = |p: &Path| protokd::io::hash::sha256_hex(&std::fs::read(p).unwrap());
    assert_eq!(prov["model"]["sha256"], sha(&m));
    assert_eq!(prov["model"]["modalities"], "t1ce");
    let t1ce_file = case.join(format!("{}_t1ce.nii.gz", ids[0]));
    assert_eq!(prov["cases"][0]["inputs"][0]["path"], s(&t1ce_file));
    assert_eq!(prov["cases"][0]["inputs"][0]["sha256"], sha(&t1ce_file));
    assert_eq!(prov["cases"][0]["outputs"].as_array().unwrap().len(), 3);

    // The same case as a bare file (comma list syntax for one file), on one thread: same bytes.
    let seg2 = tmp.join("seg2.nii");
    let t1ce = case.join(format!("{}_t1ce.nii.gz", ids[0]));
    ok(&[
        "--threads",
        "1",
        "segment",
        "--model",
        s(&m),
        "--input",
        s(&t1ce),
        "--out",
        s(&seg2),
        "--patch",
        "16,16,16",
        "--stride",
        "8,8,8",
    ]);
    assert_eq!(read_image(&seg2).unwrap().volume, written.volume);

    // The dataset: one <id>_seg.nii.gz per case, the first identical to the single run.
    let out_dir = tmp.join("segs");
    let out = segment(&["--model", s(&m), "--input", s(&data), "--out", s(&out_dir)]);
    assert!(out.contains("[2/2]"), "{out}");
    for id in &ids {
        assert!(out_dir.join(format!("{id}_seg.nii.gz")).is_file());
    }
    assert!(out_dir.join("provenance.json").is_file());
    assert_eq!(
        std::fs::read(out_dir.join(format!("{}_seg.nii.gz", ids[0]))).unwrap(),
        std::fs::read(&seg).unwrap()
    );
}

// Verifies: R-DAT-2, R-DAT-7
#[test]
fn release_2023_names_and_labels_and_a_four_channel_pytorch_model() {
    let tmp = TempDir::new("segment23");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2023", SIZE);
    // A plain PyTorch state_dict with 4 channels takes all four modalities.
    let m = tmp.join("teacher.safetensors");
    pytorch_model(&m, 4, 3);
    let (out_dir, prob_dir) = (tmp.join("segs"), tmp.join("probs"));
    let out = segment(&[
        "--model",
        s(&m),
        "--input",
        s(&data),
        "--out",
        s(&out_dir),
        "--probabilities",
        s(&prob_dir),
    ]);
    assert!(out.contains("t1,t2,t1ce,flair"), "{out}");
    let seg = read_image(&out_dir.join(format!("{}-seg.nii.gz", ids[0]))).unwrap();
    assert!(labels(&seg).iter().all(|l| [0, 1, 2, 3].contains(l)));
    check_probabilities(
        &prob_dir.join(format!("{}_probabilities.nii.gz", ids[0])),
        &seg,
        [0, 3, 1, 2],
    );
    // Four bare files in channel order (2023 names), labels 0..3 inferred from the names.
    let f = |suffix: &str| {
        data.join(&ids[0])
            .join(format!("{}{suffix}.nii.gz", ids[0]))
    };
    let files = ["-t1n", "-t2w", "-t1c", "-t2f"].map(f);
    let list = files.iter().map(|p| s(p)).collect::<Vec<_>>().join(",");
    let seg2 = tmp.join("seg2.nii.gz");
    segment(&["--model", s(&m), "--input", &list, "--out", s(&seg2)]);
    assert_eq!(read_image(&seg2).unwrap().volume, seg.volume);
    // Out of order: refused by the names.
    let swapped = format!(
        "{},{},{},{}",
        s(&files[1]),
        s(&files[0]),
        s(&files[2]),
        s(&files[3])
    );
    refused(
        tmp.path(),
        vec![refusal(
            "four files out of order",
            vec![],
            [
                "segment",
                "--model",
                s(&m),
                "--input",
                &swapped,
                "--out",
                s(&tmp.join("x.nii.gz")),
            ],
            1,
            ["named as t2", "input 1 is t1"],
        )],
    );
}

// Verifies: R-CLI-1, R-CLI-2
#[test]
fn bad_input_is_refused_and_leaves_files_alone() {
    let tmp = TempDir::new("segment-bad");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2018", SIZE);
    let case = data.join(&ids[0]);
    let m = tmp.join("t1ce.safetensors");
    model(&m, "t1ce", 7);
    let out = tmp.join("seg.nii.gz");
    // `segment --model M --input I --out O EXTRA...`.
    let seg_args = |model: &str, input: &str, out: &str, extra: &[&str]| -> Vec<String> {
        ["segment", "--model", model, "--input", input, "--out", out]
            .iter()
            .chain(extra)
            .map(|x| x.to_string())
            .collect()
    };
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = seg_args(s(&m), s(&case), s(&out), &WINDOW);
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    // A one-channel PyTorch checkpoint (it needs --modality), an empty dataset folder.
    let plain = tmp.join("plain.safetensors");
    pytorch_model(&plain, 1, 2);
    let empty = tmp.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let t1 = case.join(format!("{}_t1.nii.gz", ids[0]));
    let t1ce = case.join(format!("{}_t1ce.nii.gz", ids[0]));
    let two = format!("{},{}", s(&t1ce), s(&t1));
    let png = tmp.join("o.png");
    // `segment --model M --input I --out O EXTRA...` with the model and output of the tests.
    let on = |input: &str, extra: &[&str]| seg_args(s(&m), input, s(&out), extra);
    let into = |input: &Path, out: &str| seg_args(s(&m), s(input), s(&tmp.join(out)), &[]);
    let (png_file, seg_file) = (vec![file(&png, b"keep png")], vec![file(&out, b"keep")]);
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        // Channels vs --modality.
        refusal("--modality against the model", vec![], base(&["--modality", "t2,t1"]), 1,
            ["takes 1 channel(s) (t1ce) but --modality gives t1,t2"]),
        refusal("a one-channel PyTorch checkpoint without --modality", vec![],
            seg_args(s(&plain), s(&case), s(&out), &[]), 1, ["takes 1 channel(s)", "--modality"]),
        // Bad window, CUDA, release disagreeing with the naming.
        refusal("a patch that is not a multiple of 16", vec![],
            on(s(&case), &["--patch", "20,16,16"]), 1, ["multiple of 16"]),
        refusal("a stride larger than the patch", vec![],
            on(s(&case), &["--stride", "8,129,8"]), 1, ["stride 129"]),
        refusal("--device cuda", vec![], base(&["--device", "cuda"]), 1, ["--engine cuda"]),
        refusal("--release against the naming", vec![], base(&["--release", "2023"]), 1,
            ["--release 2023 disagrees"]),
        // Wrong number of files, a file named as another modality, missing output folder.
        refusal("two files for a one-channel model", vec![], on(&two, &[]), 1,
            ["takes 1 channel(s) (t1ce) but 2 input file(s)"]),
        refusal("a file named as another modality", vec![], on(s(&t1), &[]), 1,
            ["named as t1", "is t1ce"]),
        refusal("an output folder that does not exist", vec![], into(&t1ce, "no/seg.nii.gz"), 1,
            ["does not exist"]),
        refusal("an output that is not NIfTI", vec![], into(&t1ce, "seg.txt"), 1,
            [".nii.gz or .nii"]),
        refusal("an empty dataset folder", vec![], into(&empty, "d"), 1,
            ["holds no case folder"]),
        // Outputs that exist are refused (all of them checked before any work), and kept:
        // nothing is written when one output is refused.
        refusal("an existing PNG", png_file, base(&["--png", s(&png)]), 1,
            ["o.png already exists"]),
        refusal("an output that is an input", vec![],
            base(&["--probabilities", s(&t1ce), "--force"]), 1, ["is one of the inputs"]),
        refusal("an existing segmentation", seg_file, base(&[]), 1,
            ["seg.nii.gz already exists", "--force"]),
    ];
    refused(tmp.path(), table);
    assert_eq!(std::fs::read(&png).unwrap(), b"keep png");
    // --force replaces.
    std::fs::write(&out, b"keep").unwrap();
    let args = base(&["--force"]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&a);
    assert!(read_image(&out).is_ok());
    // A write that fails midway (simulated) leaves the earlier segmentation whole and no
    // temporary file behind.
    let before = std::fs::read(&out).unwrap();
    let mut again = protokd_command();
    again.args(&a);
    fails_midway(again, "seg.nii.gz", tmp.path());
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

/// One full-size case (240 x 240 x 155) with an n_filters 16 one-channel model at the paper's
/// window (27 windows of 96 x 128 x 128); prints the time. Minutes on 2 cores.
#[test]
#[ignore]
fn full_size_case_timing() {
    let tmp = TempDir::new("segment-full");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2018", "240,240,155");
    let m = tmp.join("t1ce16.safetensors");
    workflow::model_with(&m, "t1ce", 16, 5);
    let seg = tmp.join("seg.nii.gz");
    let t0 = std::time::Instant::now();
    let o = protokd(&[
        "segment",
        "--model",
        s(&m),
        "--input",
        s(&data.join(&ids[0])),
        "--out",
        s(&seg),
    ]);
    let secs = t0.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!("{}", String::from_utf8_lossy(&o.stdout));
    println!(
        "full-size case, n_filters 16, 1 channel, paper window: {secs:.1} s wall (whole command)"
    );
}
