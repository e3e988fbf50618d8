// Verifies (every test in this file): R-DAT-6
//! The golden patches in `golden/` (see `protokd::audit::golden`): the files are what the manifest
//! says, they regenerate bit for bit from the phantom generator, and a seeded n_filters 4 VNet
//! gives the recorded values on each (insta snapshots in `tests/audit/snapshots/`).

use protokd::audit::golden::{self, Kind};
use protokd::data::brats;
use protokd::data::phantom::Templates;
use protokd::io::hash::sha256_hex;
use protokd_reference::{LabelMap, Tensor};
use std::fmt::Write;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn templates() -> Templates {
    Templates::load(&root().join("data/mni152")).unwrap()
}

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("golden/manifest.json")).unwrap())
        .unwrap()
}

/// Writes the patches and the manifest (run after a deliberate change of the generator).
#[test]
#[ignore]
fn regenerate_golden() {
    let patches = golden::build(&templates()).unwrap();
    for p in &patches {
        let dir = root().join("golden").join(p.kind.name());
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &p.files {
            protokd::io::files::write_atomic(&dir.join(name), bytes).unwrap();
        }
    }
    let text = serde_json::to_string_pretty(&golden::manifest(&patches)).unwrap() + "\n";
    protokd::io::files::write_atomic(&root().join("golden/manifest.json"), text.as_bytes())
        .unwrap();
}

#[test]
fn files_match_the_manifest() {
    let m = manifest();
    let patches = m["patches"].as_array().unwrap();
    assert_eq!(patches.len(), Kind::ALL.len());
    for (p, kind) in patches.iter().zip(Kind::ALL) {
        assert_eq!(p["name"], kind.name());
        let files = p["sha256"].as_object().unwrap();
        assert_eq!(files.len(), 5);
        for (name, hash) in files {
            let bytes = std::fs::read(root().join("golden").join(kind.name()).join(name)).unwrap();
            assert_eq!(
                sha256_hex(&bytes),
                hash.as_str().unwrap(),
                "golden/{}/{name}",
                kind.name()
            );
        }
    }
}

/// The provenance is real: the generator rebuilds the same bytes (and the same manifest).
// Verifies: R-DAT-4
#[test]
fn patches_regenerate_from_the_phantom_generator() {
    let patches = golden::build(&templates()).unwrap();
    assert_eq!(golden::manifest(&patches), manifest());
}

/// Every patch shows what its name says.
#[test]
fn patches_cover_the_cases_that_matter() {
    let m = manifest();
    let counts = |name: &str| -> [u64; 4] {
        let p = m["patches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        ["0", "1", "2", "4"].map(|l| p["raw_label_counts"][l].as_u64().unwrap())
    };
    let n = (golden::PATCH as u64).pow(3);
    let large = counts("large_tumour");
    assert!(
        large[1] + large[2] + large[3] > n / 2,
        "large tumour: {large:?}"
    );
    let small = counts("small_et");
    assert!(small[3] > 0 && small[3] < n / 20, "small ET: {small:?}");
    assert_eq!(counts("no_tumour")[0], n);
    let border = counts("tumour_at_border");
    assert!(border[0] > 0 && border[0] < n, "border: {border:?}");
}

fn le_hash(values: &[f32]) -> String {
    sha256_hex(
        &values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

/// The recorded values of one patch: teacher forward (evaluation mode) and one ProtoKD step
/// of a T1ce student, both n_filters 4 from fixed seeds.
fn golden_values(image: &Tensor, labels: &LabelMap) -> String {
    let (y, r, student) = protokd::audit::golden::seeded_run(
        &protokd::engine::EngineKind::Spec.open().unwrap(),
        image,
        labels,
    )
    .unwrap();
    let mut out = String::new();
    writeln!(out, "teacher.features sha256 {}", le_hash(&y.features.data)).unwrap();
    writeln!(out, "teacher.logits   sha256 {}", le_hash(&y.logits.data)).unwrap();
    for (name, v) in r.losses.named() {
        writeln!(out, "loss.{name:<5} {v:?} (bits {:08x})", v.to_bits()).unwrap();
    }
    let grads: Vec<f32> = r
        .grads
        .iter()
        .flat_map(|g| g.data.iter().copied())
        .collect();
    writeln!(out, "gradients        sha256 {}", le_hash(&grads)).unwrap();
    let params: Vec<f32> = student
        .parameters()
        .flat_map(|(_, t)| t.data.iter().copied())
        .collect();
    writeln!(out, "updated params   sha256 {}", le_hash(&params)).unwrap();
    out
}

fn load_patch(dataset: &brats::Dataset, name: &str) -> (Tensor, LabelMap) {
    let case = brats::load_case(dataset.case(name).unwrap()).unwrap();
    let [d, h, w] = case.dims();
    let data: Vec<f32> = case
        .images
        .iter()
        .flat_map(|v| v.data.iter().copied())
        .collect();
    let labels = case.labels.clone().unwrap();
    (
        Tensor::from_vec(&[1, 4, d, h, w], data),
        LabelMap::new([1, d, h, w], labels),
    )
}

// Verifies: R-NUM-6, R-MTH-3, R-MTH-8
#[test]
fn golden_values_of_a_seeded_vnet() {
    let dataset = brats::discover(&root().join("golden")).unwrap();
    assert_eq!(dataset.cases.len(), Kind::ALL.len());
    for kind in Kind::ALL {
        let (image, labels) = load_patch(&dataset, kind.name());
        insta::assert_snapshot!(kind.name(), golden_values(&image, &labels));
    }
}
