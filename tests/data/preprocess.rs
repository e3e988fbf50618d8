// Verifies (every test in this file): R-MTH-1
//! Preprocessing (`protokd::data::preprocess`): a case loaded from files, z-scored over the
//! brain and cropped; z-score statistics against a direct f64 computation; the BraTS crop box.

use super::brats::{err_text, geometry, modality, raw_seg, simple_dataset, vol, DIMS};
use crate::common::assert_holds;
use protokd::data::brats::{self, Release};
use protokd::data::preprocess::{self, CropBox, ZscoreStats, BRATS_CROP};
use protokd::volume::Volume;

// Verifies: R-DAT-1
#[test]
fn load_and_preprocess_a_case_from_files() {
    for release in Release::ALL {
        let (_tmp, ds) = simple_dataset(&format!("load_{}", release.short_name()), release);
        let loaded = brats::load_case(&ds.cases[0]).unwrap();
        assert_eq!(loaded.dims(), DIMS);
        for c in 0..4 {
            assert_eq!(loaded.images[c], modality(c), "channel {c}");
        }
        let labels = loaded.labels.as_ref().unwrap();
        // Internal labels are (z + y + x) % 4 whatever the release's raw values.
        let want: Vec<u8> = vol(DIMS, |z, y, x| ((z + y + x) % 4) as f32)
            .data
            .iter()
            .map(|&v| v as u8)
            .collect();
        assert_eq!(labels, &want);
        // Back to raw: the file's values.
        let raw = release.labels_to_raw(labels).unwrap();
        let file_raw: Vec<u8> = raw_seg(release).data.iter().map(|&v| v as u8).collect();
        assert_eq!(raw, file_raw);
        assert_eq!(loaded.geometry.affine, geometry(DIMS[1], 0.0).affine);

        let b = CropBox {
            start: [1, 2, 0],
            end: [7, 8, 5],
        };
        let p = preprocess::preprocess_with_crop(&loaded, &b).unwrap();
        assert_eq!(p.dims, [6, 6, 5]);
        assert_eq!(p.channels(), 4);
        assert_eq!(p.image.len(), 4 * 6 * 6 * 5);
        for c in 0..4 {
            let (z, s) = preprocess::zscore(&loaded.images[c]).unwrap();
            assert_eq!(p.stats[c], s);
            let want = preprocess::crop(&z.data, DIMS, &b).unwrap();
            assert_eq!(&p.image[c * 180..(c + 1) * 180], &want[..]);
        }
        assert_eq!(
            p.labels.as_deref().unwrap(),
            &preprocess::crop(labels, DIMS, &b).unwrap()[..]
        );
        let t = p.image_tensor();
        assert_eq!(t.shape, vec![1, 4, 6, 6, 5]);
        assert_eq!(p.label_map().unwrap().dims, [1, 6, 6, 5]);

        // The method page's crop needs a 155 x 240 x 240 volume (at least 145 x 216 x 216).
        let e = err_text(preprocess::preprocess(&loaded));
        assert_holds(
            &e,
            &[
                "case case_a",
                "smaller than the crop box",
                "z 5..145, y 24..216, x 24..216",
            ],
        );
    }
}

#[test]
fn zscore_against_direct_f64_background_excluded_but_transformed() {
    let v = vol([9, 10, 11], |z, y, x| {
        let t = (z * 110 + y * 11 + x) as f32;
        if x < 2 || y == 9 {
            0.0
        } else if z == 0 {
            -3.5 - t * 0.01 // negative background
        } else {
            50.0 + (t * 0.731).cos() * 40.0 + t * 0.1
        }
    });
    let pos: Vec<f64> = v
        .data
        .iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x as f64)
        .collect();
    let n = pos.len() as f64;
    let mean = pos.iter().sum::<f64>() / n;
    let std = (pos.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    let (z, s): (Volume, ZscoreStats) = preprocess::zscore(&v).unwrap();
    assert_eq!(s.count, pos.len());
    assert!((s.mean - mean).abs() <= 1e-12 * mean);
    assert!((s.std - std).abs() <= 1e-12 * std);
    let mut background = 0;
    for (a, b) in v.data.iter().zip(&z.data) {
        let want = ((*a as f64 - mean) / std) as f32;
        assert!(
            (want - b).abs() <= 2e-7 * want.abs().max(1.0),
            "{a}: {want} vs {b}"
        );
        if *a <= 0.0 {
            background += 1;
            assert!(*b < 0.0);
        }
    }
    assert!(background > 100);
    // Excluding the background matters: the statistics of all voxels differ.
    let all_mean = v.data.iter().map(|&x| x as f64).sum::<f64>() / v.data.len() as f64;
    assert!((all_mean - mean).abs() > 1.0);
    // The same bits with 1 and 3 threads.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| preprocess::zscore(&v).unwrap());
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(|| preprocess::zscore(&v).unwrap());
    assert_eq!(one.1, three.1);
    assert_eq!(one.0, three.0);
    assert_eq!(one.0, z);
}

#[test]
fn crop_box_constant_and_shape() {
    assert_eq!(BRATS_CROP.start, [5, 24, 24]);
    assert_eq!(BRATS_CROP.end, [145, 216, 216]);
    assert_eq!(BRATS_CROP.shape(), [140, 192, 192]);
    let full = vol([155, 240, 240], |z, y, x| {
        (z * 10000 + y * 100 + x % 100) as f32
    });
    let c = preprocess::crop_volume(&full, &BRATS_CROP).unwrap();
    assert_eq!(c.dims, [140, 192, 192]);
    assert_eq!(c.data[0], full.data[full.index(5, 24, 24)]);
    assert_eq!(
        *c.data.last().unwrap(),
        full.data[full.index(144, 215, 215)]
    );
    let back = preprocess::uncrop(&c.data, &BRATS_CROP, full.dims, 0.0).unwrap();
    assert_eq!(back[full.index(5, 24, 24)], c.data[0]);
    assert_eq!(back[full.index(4, 24, 24)], 0.0);
    assert_eq!(back[full.index(145, 100, 100)], 0.0);
}
