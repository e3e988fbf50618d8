//! Reading and preprocessing one four-modality BraTS-size case (240 x 240 x 155, float32,
//! gzip), the path every training or segmentation run takes per case:
//!
//! * `data/load_case+preprocess`: [`load_case`] (the four modalities and the seg read and
//!   decompressed in parallel with rayon, then the checks: shapes, affines, finite values, a
//!   voxel above 0, labels of the release converted to internal) and [`preprocess`] (z-score
//!   over the voxels > 0 per modality, crop to 140 x 192 x 192);
//! * `data/load_case`: [`load_case`] alone;
//! * `data/read_image_x5`: the five [`read_image`] calls of [`load_case`] (in parallel, as it
//!   makes them) without its checks and label conversion, to show what those cost;
//! * `data/preprocess`: [`preprocess`] alone, of a case loaded once.
//!
//! The case is phantom case 0 of seed 0 (`protokd phantom --cases 1 --seed 0`, BraTS 2018
//! naming), its four int16 modalities converted to float32 `.nii.gz` with
//! [`read_image`] + [`write_image`]`(.., OutDtype::F32)` (gzip level [`GZIP_LEVEL`]), the seg
//! kept uint8. It is made on the first run under `target/bench-data/brats-f32/dataset/` (about
//! half a minute) and reused after that. Each run also writes this crate's preprocessed case
//! next to it (`protokd-image.f32`, `[4, 140, 192, 192]` little-endian float32,
//! `protokd-labels.u8`, `[140, 192, 192]`, and `protokd-stats.json`), which
//! `tools/bench/nibabel_case.py` compares with nibabel + NumPy's result.
//!
//! `PROTOKD_BENCH_DATASET=DIR` benches the first case of another dataset folder (a real BraTS
//! one, for example) instead; nothing is written then.
//!
//! Run with `cargo bench --bench data` (`RAYON_NUM_THREADS=1` for one thread); the nibabel +
//! NumPy figure for the same files: `python3 tools/bench/nibabel_case.py`.

use anyhow::{bail, Context, Result};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use protokd::data::brats::{discover, load_case, Case};
use protokd::data::phantom::{self, PhantomConfig, Release, Templates};
use protokd::data::preprocess::{preprocess, PreparedCase};
use protokd::io::nifti::{read_image, write_image, OutDtype, GZIP_LEVEL};
use rayon::prelude::*;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SEED: u64 = 0;
const SIZE: [usize; 3] = [240, 240, 155];

/// `target/bench-data/brats-f32` of this crate.
fn bench_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data")
        .join("brats-f32")
}

/// Makes `root/dataset/<id>/` (float32 modalities, uint8 seg) unless it is there already.
/// The files go to `root/staging/` first and the finished case folder is renamed into place,
/// so an interrupted run leaves no half-made case behind.
fn ensure_case(root: &Path) -> Result<PathBuf> {
    let config = PhantomConfig::new(SIZE, Release::Brats2018)?;
    let id = phantom::case_id(config.release, SEED, 0);
    let dataset = root.join("dataset");
    let names = phantom::file_names(config.release, &id);
    if names.iter().all(|n| dataset.join(&id).join(n).is_file()) {
        return Ok(dataset);
    }
    eprintln!(
        "data bench: making the float32 test case {} (once)",
        dataset.join(&id).display()
    );
    let staging = root.join("staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    // What `protokd phantom --out <staging>/int16 --cases 1 --seed 0` writes: int16 images.
    let templates = Templates::load(&phantom::find_templates(None)?)?;
    let case = phantom::generate_case(&templates, &config, SEED, 0)?;
    let int16 = staging.join("int16");
    phantom::write_case(&int16, &case, &config)?;
    drop(case);
    // Converted: float32 modalities (the same integer values), the seg as it was (uint8).
    let f32_dir = staging.join("f32");
    std::fs::create_dir_all(&f32_dir)
        .with_context(|| format!("cannot create {}", f32_dir.display()))?;
    for (k, name) in names.iter().enumerate() {
        let src = int16.join(&id).join(name);
        let img = read_image(&src)?;
        let dtype = if k < 4 { OutDtype::F32 } else { OutDtype::U8 };
        write_image(&f32_dir.join(name), &img.volume, &img.geometry, dtype)?;
    }
    std::fs::create_dir_all(&dataset)
        .with_context(|| format!("cannot create {}", dataset.display()))?;
    let target = dataset.join(&id);
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("cannot remove {}", target.display()))?;
    }
    std::fs::rename(&f32_dir, &target)
        .with_context(|| format!("cannot move the case to {}", target.display()))?;
    std::fs::remove_dir_all(&staging)
        .with_context(|| format!("cannot remove {}", staging.display()))?;
    Ok(dataset)
}

/// Writes the preprocessed case for `tools/bench/nibabel_case.py` to compare with.
fn write_prepared(root: &Path, p: &PreparedCase) -> Result<()> {
    let image: Vec<u8> = p.image.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(root.join("protokd-image.f32"), image)?;
    if let Some(l) = &p.labels {
        std::fs::write(root.join("protokd-labels.u8"), l)?;
    }
    let stats: Vec<String> = p
        .stats
        .iter()
        .map(|s| {
            format!(
                "{{\"mean\": {:?}, \"std\": {:?}, \"count\": {}}}",
                s.mean, s.std, s.count
            )
        })
        .collect();
    let json = format!(
        "{{\n  \"case\": \"{}\",\n  \"dims\": {:?},\n  \"crop_start\": {:?},\n  \"crop_end\": {:?},\n  \
         \"stats\": [\n    {}\n  ]\n}}\n",
        p.id,
        p.dims,
        p.crop.start,
        p.crop.end,
        stats.join(",\n    ")
    );
    std::fs::write(root.join("protokd-stats.json"), json)?;
    Ok(())
}

/// The case to bench, and whether it is ours (then the prepared output is written).
fn bench_case() -> Result<(Case, Option<PathBuf>)> {
    if let Some(dir) = std::env::var_os("PROTOKD_BENCH_DATASET") {
        let ds = discover(Path::new(&dir))?;
        return Ok((ds.cases[0].clone(), None));
    }
    let root = bench_root();
    let ds = discover(&ensure_case(&root)?)?;
    if ds.cases.len() != 1 {
        bail!("{}: expected one case", ds.root.display());
    }
    Ok((ds.cases[0].clone(), Some(root)))
}

fn bench_data(c: &mut Criterion) {
    let (case, root) = bench_case().expect("data bench: cannot prepare the test case");
    let loaded = load_case(&case).expect("data bench: load_case");
    let prepared = preprocess(&loaded).expect("data bench: preprocess");
    let bytes: u64 = case
        .modalities
        .iter()
        .chain(case.seg.iter())
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    eprintln!(
        "data bench: case {} ({}), dims (z, y, x) {:?}, 5 files {:.1} MB on disk (gzip level {}), \
         rayon threads {}",
        case.id,
        case.dir.display(),
        loaded.dims(),
        bytes as f64 / 1e6,
        GZIP_LEVEL,
        rayon::current_num_threads()
    );
    if let Some(root) = &root {
        write_prepared(root, &prepared).expect("data bench: cannot write the prepared case");
    }
    drop(prepared);

    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("load_case+preprocess", |b| {
        b.iter(|| {
            let l = load_case(black_box(&case)).unwrap();
            preprocess(&l).unwrap()
        })
    });
    group.bench_function("load_case", |b| {
        b.iter(|| load_case(black_box(&case)).unwrap())
    });
    let files: Vec<&Path> = case
        .modalities
        .iter()
        .chain(case.seg.iter())
        .map(PathBuf::as_path)
        .collect();
    group.bench_function("read_image_x5", |b| {
        b.iter(|| {
            files
                .par_iter()
                .map(|p| read_image(black_box(p)).unwrap())
                .collect::<Vec<_>>()
        })
    });
    group.bench_function("preprocess", |b| {
        b.iter(|| preprocess(black_box(&loaded)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_data);
criterion_main!(benches);
