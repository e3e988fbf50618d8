// Verifies (every test in this file): R-DAT-1
//! NIfTI reading and writing against files another tool wrote: the MNI152 template
//! (`data/mni152/`) and the fixtures of `tests/fixtures/nifti/`, written and read by nibabel
//! (`tools/nifti/make_fixtures.py`, whose `expected.json` holds nibabel's affine, shape and
//! values for each). Then round trips through our writer, and bad input: each an error that
//! names the file and the problem, never a panic.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use protokd::io::hash::sha256_hex;
use protokd::io::nifti::{decode_image, encode_image, read_image, write_image, OutDtype};
use protokd::volume::{Geometry, Image, Volume};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/nifti")
}

fn expected() -> Value {
    let p = fixtures().join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// A fresh, empty scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("protokd-nifti-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read(name: &str) -> Image {
    let p = fixtures().join(name);
    read_image(&p).unwrap_or_else(|e| panic!("{e:#}"))
}

fn f32_le_sha(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    sha256_hex(&bytes)
}

/// A 4x4 matrix from JSON: numbers, or (exact) f64 bit patterns when `bits`.
fn json_matrix(v: &Value, bits: bool) -> [[f64; 4]; 4] {
    let mut m = [[0.0; 4]; 4];
    for (r, row) in v.as_array().unwrap().iter().enumerate() {
        for (c, x) in row.as_array().unwrap().iter().enumerate() {
            m[r][c] = if bits {
                f64::from_bits(x.as_u64().unwrap())
            } else {
                x.as_f64().unwrap()
            };
        }
    }
    m
}

/// Asserts that our affine equals a reference (nibabel computes the qform in extended precision
/// and rounds to f64: allow a few ulps; the sform is exact).
fn assert_affine(what: &str, ours: &Geometry, reference: &[[f64; 4]; 4], exact: bool) {
    for (r, row) in reference.iter().enumerate() {
        for (c, &want) in row.iter().enumerate() {
            let got = ours.affine[(r, c)];
            let ok = if exact {
                got == want
            } else {
                (got - want).abs() <= 1e-12 * want.abs().max(1.0)
            };
            assert!(
                ok,
                "{what}: affine[{r}][{c}] is {got:e}, nibabel says {want:e}\n{}",
                ours.affine
            );
        }
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The read must fail with a message that names the file and contains every `needles`.
fn assert_refused(path: &Path, needles: &[&str]) {
    let err = match read_image(path) {
        Ok(img) => panic!(
            "{} was read (dims {:?}), expected an error",
            path.display(),
            img.volume.dims
        ),
        Err(e) => format!("{e:#}"),
    };
    println!("{err}");
    assert!(!err.contains('\n'), "not one line: {err}");
    assert!(
        err.contains(&path.display().to_string()),
        "does not name the file: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

// ------------------------------------------------------------------------------------------
// Files written by nibabel
// ------------------------------------------------------------------------------------------

#[test]
fn fixtures_read_as_nibabel_reads_them() {
    let exp = expected();
    let files = exp["files"].as_object().unwrap();
    let mut checked = 0;
    for (name, e) in files {
        if e.get("refused").is_some() {
            continue;
        }
        let img = read(name);
        let shape: Vec<usize> = e["shape_zyx"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(img.volume.dims.to_vec(), shape, "{name}: dims");
        let spacing: Vec<f64> = e["spacing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(img.geometry.spacing.to_vec(), spacing, "{name}: spacing");

        // Affine: nibabel's, except with no transform at all (the standard's method 1).
        let nib = json_matrix(&e["nibabel_affine_f64_bits"], true);
        if let Some(m1) = e.get("method1_affine") {
            assert_affine(name, &img.geometry, &json_matrix(m1, false), true);
            assert_ne!(
                json_matrix(m1, false),
                nib,
                "{name}: nibabel's fallback differs"
            );
        } else {
            let sform = e["sform_code"].as_i64().unwrap() != 0;
            assert_affine(name, &img.geometry, &nib, sform);
        }

        // Values, one by one (nibabel's f64 rounded to f32, as bit patterns) and by hash.
        let want: Vec<u32> = e["values_zyx_f32_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(img.volume.data.len(), want.len(), "{name}");
        for (i, (&got, &w)) in img.volume.data.iter().zip(&want).enumerate() {
            assert_eq!(
                got.to_bits(),
                w,
                "{name}: value {i} is {got}, nibabel reads {}",
                f32::from_bits(w)
            );
        }
        assert_eq!(
            f32_le_sha(&img.volume.data),
            e["sha256_f32le"].as_str().unwrap(),
            "{name}: hash of the values"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} fixtures checked");
}

#[test]
fn scaling_and_byte_order() {
    // scl_slope 2.5, scl_inter -3 on int16: every value is raw * 2.5 - 3.
    let img = read("scaled_i16.nii.gz");
    assert_eq!(img.geometry.header.scl_slope, 2.5);
    assert_eq!(img.geometry.header.scl_inter, -3.0);
    assert_eq!(img.volume.data[0], -32768.0 * 2.5 - 3.0);
    assert_eq!(img.volume.data[1], 32767.0 * 2.5 - 3.0);
    for v in &img.volume.data {
        let raw = (v + 3.0) / 2.5;
        assert_eq!(raw, raw.round(), "{v} is not raw * 2.5 - 3");
    }
    // Big-endian file: the header says so and the extremes land where they should.
    let be = read("i16_be.nii.gz");
    assert_eq!(be.geometry.header.endianness, nifti::Endianness::Big);
    assert_eq!(&be.volume.data[..3], &[-32768.0, 32767.0, 0.0]);
}

#[test]
fn axis_order_is_zyx_with_x_fastest() {
    // u8 fixture: nibabel array [x, y, z] of shape (5, 6, 7); its first values along x are the
    // first bytes of the file.
    let img = read("u8.nii.gz");
    assert_eq!(img.volume.dims, [7, 6, 5]);
    let raw = gunzip(&std::fs::read(fixtures().join("u8.nii.gz")).unwrap());
    let data = &raw[352..];
    assert_eq!(data.len(), 7 * 6 * 5);
    for (i, (&b, &v)) in data.iter().zip(&img.volume.data).enumerate() {
        assert_eq!(b as f32, v, "voxel {i}");
    }
    // Voxel (z, y, x) = (2, 3, 4) is at (2 * 6 + 3) * 5 + 4.
    let v = &img.volume;
    assert_eq!(v.data[v.index(2, 3, 4)], data[(2 * 6 + 3) * 5 + 4] as f32);
}

#[test]
fn mni152_t1_matches_nibabel() {
    let exp = expected();
    let e = &exp["mni152_t1"];
    let p = root().join(e["path"].as_str().unwrap());
    let img = read_image(&p).unwrap();
    assert_eq!(img.volume.dims, [189, 233, 197]);
    let shape: Vec<u64> = e["shape_zyx"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(shape, vec![189, 233, 197]);
    assert_eq!(e["dtype"].as_str().unwrap(), "uint8");
    assert_eq!(img.geometry.header.datatype, 2);
    assert_eq!(img.geometry.spacing, [1.0, 1.0, 1.0]);
    assert_affine(
        "MNI152",
        &img.geometry,
        &json_matrix(&e["nibabel_affine_f64_bits"], true),
        true,
    );
    for v in e["voxels_zyx"].as_array().unwrap() {
        let v = v.as_array().unwrap();
        let (z, y, x) = (
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
            v[2].as_u64().unwrap() as usize,
        );
        assert_eq!(
            img.volume.data[img.volume.index(z, y, x)] as f64,
            v[3].as_f64().unwrap(),
            "voxel ({z}, {y}, {x})"
        );
    }
    let sum: f64 = img.volume.data.iter().map(|&v| v as f64).sum();
    assert_eq!(sum, e["sum_f64"].as_f64().unwrap());
    assert_eq!(
        f32_le_sha(&img.volume.data),
        e["sha256_f32le"].as_str().unwrap()
    );
}

// ------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------

fn assert_same_geometry(what: &str, a: &Geometry, b: &Geometry) {
    let (ha, hb) = (&a.header, &b.header);
    assert_eq!(a.affine, b.affine, "{what}: affine");
    assert_eq!(a.spacing, b.spacing, "{what}: spacing");
    assert_eq!(ha.qform_code, hb.qform_code, "{what}: qform_code");
    assert_eq!(ha.sform_code, hb.sform_code, "{what}: sform_code");
    assert_eq!(
        [ha.quatern_b, ha.quatern_c, ha.quatern_d],
        [hb.quatern_b, hb.quatern_c, hb.quatern_d],
        "{what}: quaternion"
    );
    assert_eq!(
        [ha.quatern_x, ha.quatern_y, ha.quatern_z],
        [hb.quatern_x, hb.quatern_y, hb.quatern_z],
        "{what}: qoffset"
    );
    assert_eq!(
        [ha.srow_x, ha.srow_y, ha.srow_z],
        [hb.srow_x, hb.srow_y, hb.srow_z],
        "{what}: srow"
    );
    assert_eq!(ha.pixdim, hb.pixdim, "{what}: pixdim");
    assert_eq!(ha.xyzt_units, hb.xyzt_units, "{what}: xyzt_units");
}

#[test]
fn round_trips() {
    let dir = scratch("round_trips");
    let cases = [
        ("u8.nii.gz", OutDtype::U8, 2i16),
        ("i16.nii.gz", OutDtype::I16, 4),
        ("scaled_i16.nii.gz", OutDtype::F32, 16),
        ("f32.nii.gz", OutDtype::F32, 16),
        ("qform_only.nii.gz", OutDtype::I16, 4),
        ("sform_qform.nii.gz", OutDtype::F32, 16),
        ("no_xform.nii.gz", OutDtype::U8, 2),
        ("i16_be.nii.gz", OutDtype::I16, 4),
    ];
    for (src, dtype, code) in cases {
        let img = read(src);
        for ext in ["nii.gz", "nii"] {
            let out = dir.join(format!("{}.{ext}", src.split('.').next().unwrap()));
            write_image(&out, &img.volume, &img.geometry, dtype).unwrap();
            let bytes = std::fs::read(&out).unwrap();
            // Same bytes as encode_image and as a second write.
            assert_eq!(
                bytes,
                encode_image(&img.volume, &img.geometry, dtype, ext == "nii.gz").unwrap()
            );
            write_image(&out, &img.volume, &img.geometry, dtype).unwrap();
            assert_eq!(bytes, std::fs::read(&out).unwrap(), "{src}: second write");
            assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), ext == "nii.gz");

            let back = read_image(&out).unwrap();
            let what = format!("{src} -> {}", out.display());
            assert_eq!(back.volume.dims, img.volume.dims, "{what}");
            let a: Vec<u32> = back.volume.data.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = img.volume.data.iter().map(|v| v.to_bits()).collect();
            assert!(a == b, "{what}: values differ");
            assert_same_geometry(&what, &back.geometry, &img.geometry);
            let h = &back.geometry.header;
            assert_eq!(h.datatype, code, "{what}");
            assert_eq!((h.scl_slope, h.scl_inter), (1.0, 0.0), "{what}");
            assert_eq!(h.vox_offset, 352.0, "{what}");
            assert_eq!(&h.magic, b"n+1\0", "{what}");
            assert_eq!(h.endianness, nifti::Endianness::Little, "{what}");
        }
    }
    // No temporary files left behind.
    for e in std::fs::read_dir(&dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(!n.starts_with('.'), "left behind: {n}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gzip_output_is_deterministic() {
    let img = read("f32.nii.gz");
    let a = encode_image(&img.volume, &img.geometry, OutDtype::F32, true).unwrap();
    let b = encode_image(&img.volume, &img.geometry, OutDtype::F32, true).unwrap();
    assert_eq!(a, b);
    // gzip header: no time stamp (bytes 4..8), OS "unknown" (255), no file name.
    assert_eq!(&a[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&a[4..8], &[0, 0, 0, 0]);
    assert_eq!(a[9], 255);
}

// Verifies: R-CLI-1
#[test]
fn values_that_do_not_fit_are_refused() {
    let dir = scratch("do_not_fit");
    let img = read("u8.nii.gz");
    let cases: [(OutDtype, f32, &str); 6] = [
        (OutDtype::U8, 256.0, "uint8"),
        (OutDtype::U8, -1.0, "uint8"),
        (OutDtype::U8, 1.5, "uint8"),
        (OutDtype::U8, f32::NAN, "uint8"),
        (OutDtype::I16, 32768.0, "int16"),
        (OutDtype::I16, -0.25, "int16"),
    ];
    for (dtype, v, name) in cases {
        let mut vol = img.volume.clone();
        let i = vol.index(3, 2, 1);
        vol.data[i] = v;
        let out = dir.join("bad.nii.gz");
        let err = format!(
            "{:#}",
            write_image(&out, &vol, &img.geometry, dtype).unwrap_err()
        );
        println!("{err}");
        assert!(err.contains(&out.display().to_string()), "{err}");
        assert!(err.contains(name) && err.contains("(3, 2, 1)"), "{err}");
        assert!(!out.exists());
    }
    // Extremes that do fit.
    let mut vol = Volume::new([1, 1, 2], vec![-32768.0, 32767.0]);
    let p = dir.join("ok.nii");
    write_image(&p, &vol, &img.geometry, OutDtype::I16).unwrap();
    assert_eq!(read_image(&p).unwrap().volume, vol);
    vol.data = vec![0.0, 255.0];
    write_image(&p, &vol, &img.geometry, OutDtype::U8).unwrap();
    assert_eq!(read_image(&p).unwrap().volume, vol);
    // A name that is not .nii / .nii.gz.
    let err = write_image(&dir.join("x.img"), &vol, &img.geometry, OutDtype::U8).unwrap_err();
    assert!(format!("{err}").contains(".nii.gz"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `written_by_protokd.nii.gz` (float32, from `sform_qform.nii.gz`) when
/// `PROTOKD_WRITE_NIFTI_FIXTURE=1`; always checks that the committed file is what we write
/// today and that nibabel read it (via make_fixtures.py) as expected. A change of the flate2
/// backend or level changes the gzip bytes: then regenerate the file and rerun the script.
#[test]
fn written_by_protokd() {
    let img = read("sform_qform.nii.gz");
    let p = fixtures().join("written_by_protokd.nii.gz");
    if std::env::var("PROTOKD_WRITE_NIFTI_FIXTURE").as_deref() == Ok("1") {
        write_image(&p, &img.volume, &img.geometry, OutDtype::F32).unwrap();
        println!(
            "wrote {}: now run tools/nifti/make_fixtures.py",
            p.display()
        );
        return;
    }
    let exp = expected();
    let e = &exp["files"]["written_by_protokd.nii.gz"];
    assert!(
        e.is_object(),
        "expected.json lacks written_by_protokd.nii.gz: run make_fixtures.py after writing it"
    );
    let ours = encode_image(&img.volume, &img.geometry, OutDtype::F32, true).unwrap();
    assert_eq!(
        sha256_hex(&ours),
        e["sha256_file"].as_str().unwrap(),
        "our .nii.gz bytes changed since nibabel checked them (gzip backend or level?)"
    );
    assert_eq!(std::fs::read(&p).unwrap(), ours);
    // nibabel's affine of the written file is the source's.
    assert_eq!(
        e["nibabel_affine"],
        exp["files"]["sform_qform.nii.gz"]["nibabel_affine"]
    );
}

// ------------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------------

// Verifies: R-CLI-1
#[test]
fn bad_input_is_a_clear_error() {
    let dir = scratch("bad_input");
    let good = std::fs::read(fixtures().join("f32.nii.gz")).unwrap();
    let raw = gunzip(&good);

    let p = dir.join("truncated.nii.gz");
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    assert_refused(&p, &["truncated or corrupt gzip"]);

    let p = dir.join("no_trailer.nii.gz");
    std::fs::write(&p, &good[..good.len() - 4]).unwrap();
    assert_refused(&p, &["truncated or corrupt gzip"]);

    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let p = dir.join("corrupt.nii.gz");
    std::fs::write(&p, &corrupt).unwrap();
    assert_refused(&p, &["corrupt gzip"]);

    // Random bytes named .nii.gz.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let p = dir.join("random.nii.gz");
    std::fs::write(&p, &random).unwrap();
    assert_refused(&p, &["not a NIfTI-1 file", "not gzip-compressed"]);

    let p = dir.join("text.nii");
    std::fs::write(&p, "this is a plain text file, not an image\n".repeat(20)).unwrap();
    assert_refused(&p, &["not a NIfTI-1 file", "sizeof_hdr"]);

    let p = dir.join("short_text.nii");
    std::fs::write(&p, "hello\n").unwrap();
    assert_refused(&p, &["not a NIfTI-1 file", "6 bytes"]);

    let p = dir.join("empty.nii.gz");
    std::fs::write(&p, b"").unwrap();
    assert_refused(&p, &["empty"]);

    let p = dir.join("missing.nii.gz");
    assert_refused(&p, &["cannot read"]);

    assert_refused(&fixtures().join("t3_4d.nii.gz"), &["3 time points", "3-D"]);

    // Data shorter than the header says: uncompressed, and a valid gzip of a cut file.
    let p = dir.join("short.nii");
    std::fs::write(&p, &raw[..raw.len() - 10]).unwrap();
    assert_refused(&p, &["data shorter than the header says"]);
    let p = dir.join("short.nii.gz");
    std::fs::write(&p, gzip(&raw[..raw.len() - 10])).unwrap();
    assert_refused(&p, &["data shorter than the header says"]);
    let p = dir.join("header_only.nii.gz");
    std::fs::write(&p, gzip(&raw[..200])).unwrap();
    assert_refused(&p, &["not a NIfTI-1 file", "200 bytes"]);

    // Unsupported datatypes (datatype is at byte 70, bitpix at 72).
    for (code, name) in [
        (128i16, "rgb24"),
        (32, "complex64"),
        (1536, "float128"),
        (7, ""),
    ] {
        let mut b = raw.clone();
        b[70..72].copy_from_slice(&code.to_le_bytes());
        let p = dir.join(format!("dtype{code}.nii"));
        std::fs::write(&p, &b).unwrap();
        let what = if name.is_empty() {
            format!("unsupported datatype {code}")
        } else {
            format!("unsupported datatype {code} ({name})")
        };
        assert_refused(&p, &[&what]);
    }

    // Wrong magic, two-file NIfTI, NIfTI-2.
    let mut b = raw.clone();
    b[344..348].copy_from_slice(b"abc\0");
    let p = dir.join("magic.nii");
    std::fs::write(&p, &b).unwrap();
    assert_refused(&p, &["magic"]);
    b[344..348].copy_from_slice(b"ni1\0");
    std::fs::write(&p, &b).unwrap();
    assert_refused(&p, &[".hdr/.img"]);
    let mut b = raw.clone();
    b[0..4].copy_from_slice(&540i32.to_le_bytes());
    let p = dir.join("nifti2.nii");
    std::fs::write(&p, &b).unwrap();
    assert_refused(&p, &["NIfTI-2"]);

    // Corrupt dimensions.
    let mut b = raw.clone();
    b[40..42].copy_from_slice(&9i16.to_le_bytes());
    let p = dir.join("dim0.nii");
    std::fs::write(&p, &b).unwrap();
    assert_refused(&p, &["dim[0]"]);
    let mut b = raw.clone();
    b[44..46].copy_from_slice(&(-4i16).to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    assert_refused(&p, &["dim[2] is -4"]);

    // Valid slope, invalid intercept (nibabel refuses it too).
    let mut b = raw.clone();
    b[112..116].copy_from_slice(&2.0f32.to_le_bytes());
    b[116..120].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = dir.join("inter.nii");
    std::fs::write(&p, &b).unwrap();
    assert_refused(&p, &["scl_inter"]);

    std::fs::remove_dir_all(&dir).unwrap();
}

/// Thousands of damaged headers and truncations (decoded in memory, as `read_image` does
/// after reading the file): every read returns, none panics.
// Verifies: R-CLI-1, R-CLI-5
#[test]
fn damaged_files_never_panic() {
    let raw = gunzip(&std::fs::read(fixtures().join("i16.nii.gz")).unwrap());
    let (p, pz) = (Path::new("damaged.nii"), Path::new("damaged.nii.gz"));
    let mut s: u64 = 12345;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    let (mut ok, mut err) = (0, 0);
    for i in 0..4000 {
        let mut b = raw.clone();
        for _ in 0..1 + next() % 4 {
            let at = next() % 352;
            b[at] = next() as u8;
        }
        if i % 5 == 0 {
            b.truncate(next() % raw.len());
        }
        let gz = i % 3 == 0;
        let mut bytes = if gz { gzip(&b) } else { b };
        if gz && i % 2 == 0 {
            // Damage the compressed stream too.
            let at = next() % bytes.len();
            bytes[at] ^= 1 << (next() % 8);
        }
        let path = if gz { pz } else { p };
        match decode_image(&bytes, path) {
            Ok(_) => ok += 1,
            Err(e) => {
                let m = format!("{e:#}");
                assert!(m.starts_with(&path.display().to_string()) && !m.contains('\n'));
                err += 1;
            }
        }
    }
    println!("{ok} read, {err} refused");
    assert!(ok > 0 && err > 0);
}
