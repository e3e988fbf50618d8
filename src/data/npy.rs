//! The authors' preprocessed dataset: a folder of `<case>.npy` files as the ProtoKD authors'
//! `code/preprocess.py` writes them, read as they are (no Python, no conversion step).
//!
//! ## What `preprocess.py` writes (one file per case)
//! For a BraTS 2018 case it reads the four modalities and the segmentation with SimpleITK as
//! float32 arrays `(z, y, x)`, then:
//! 1. per modality `zscore_nonzero`: `mask = img.copy(); mask[img > 0] = 1`,
//!    `mean = sum(mask * img) / sum(mask)`, `std = sqrt(sum(mask * (img - mean)**2) / sum(mask))`,
//!    `img = (img - mean) / std`, all in NumPy float32 (for images >= 0, as BraTS's, the mask is
//!    the indicator of the voxels > 0: the method page's z-score, but with float32 statistics
//!    where protokd's [`crate::data::preprocess`] uses f64);
//! 2. the labels `seg.astype(int8)` converted to the internal labels `(gt==4)*1 + (gt==1)*2 +
//!    (gt==2)*3` (0 background, 1 ET, 2 NCR/NET, 3 ED);
//! 3. `np.stack([t1, t2, t1ce, flair, seg])` and the crop `[:, 5:145, 24:216, 24:216]`, saved
//!    with `np.save`: shape `[5, D, H, W]` = `[channel, z, y, x]` (W = x fastest, protokd's
//!    [`Volume`] order), C order. Stacking float32 images with int64 labels gives **float64**
//!    (NumPy's type promotion), so the authors' files are `<f8` whose image values are float32
//!    values widened exactly; a file saved as `<f4` is read the same way.
//!
//! ## Rules of the reader ([`read_array`])
//! * The header is read first (with the `npyz` crate); the array must be C order, of dtype
//!   float32 or float64 (either byte order), of shape `(5, D, H, W)` with `D, H, W >= 1` and
//!   `D x H x W` at most [`MAX_VOXELS`] (overflow-checked, before anything is allocated); the
//!   file must hold exactly the bytes that shape needs (a truncated file or trailing bytes are
//!   refused).
//! * Channels 0-3 (T1, T2, T1ce, FLAIR) must be finite; in a float64 file every image value
//!   must be a float32 value (as `preprocess.py`'s float32 arithmetic gives), so reading it as
//!   f32 loses nothing.
//! * Channel 4 must hold only the internal labels 0, 1, 2, 3 (exact integers).
//!
//! Every refusal names the file and the problem; the first bad voxel is named as `(z, y, x)`.
//!
//! ## The dataset ([`discover`])
//! A folder holding at least one `<id>.npy` file at its top level is an authors' dataset: each
//! such file is a case `<id>` (sorted by id; names starting with `.` ignored; sub-folders and
//! other files ignored). Its split lists `train_list.txt`, `val_list.txt`, `test_list.txt` are
//! looked for in the folder, then in its parent (the authors' layout: `data/*_list.txt` beside
//! `data/brats2018/*.npy`) by [`split_folder`]. The labels came from BraTS 2018 files, so the
//! dataset's release is [`Release::Brats2018`] (predictions are written with ET = 4).
//!
//! ## What differs from a NIfTI case
//! * The images are already z-scored and cropped: they are used as stored (the z-score of
//!   [`crate::data::preprocess`] is the identity for them, and a training config's `crop` is
//!   not applied).
//! * There is no affine: [`assumed_geometry`] gives 1 mm isotropic voxels and the identity
//!   affine, and every command that reads such a case says so once ([`NO_AFFINE`]).

use crate::data::brats::{voxel_of, Case, CaseFormat, Dataset, LoadedCase, Release};
use crate::data::split::SPLIT_FILES;
use crate::io::nifti::{checked_size, MAX_VOXELS};
use crate::volume::{Geometry, Volume};
use anyhow::{anyhow, bail, ensure, Context, Result};
use nalgebra::Matrix4;
use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

/// Channels of an authors' array: T1, T2, T1ce, FLAIR, then the internal label map.
pub const CHANNELS: usize = 5;

/// The line every command that reads `.npy` cases says once, and records where it records
/// geometry.
pub const NO_AFFINE: &str = "the authors' .npy files hold no affine: 1 mm isotropic voxels and \
                             the identity affine are assumed";

/// One authors' array read and checked: four z-scored images and the internal labels.
#[derive(Clone, Debug)]
pub struct AuthorsArray {
    /// `[D, H, W]` = `(z, y, x)`.
    pub dims: [usize; 3],
    /// Channels 0-3 (T1, T2, T1ce, FLAIR), as stored (already z-scored).
    pub images: [Volume; 4],
    /// Channel 4: internal labels (0 background, 1 ET, 2 NCR/NET, 3 ED).
    pub labels: Vec<u8>,
}

/// The geometry assumed for an array without one: 1 mm isotropic voxels, the identity affine
/// (a NIfTI header whose sform and qform are the identity, units mm).
pub fn assumed_geometry() -> Geometry {
    Geometry {
        spacing: [1.0; 3],
        affine: Matrix4::identity(),
        header: nifti::NiftiHeader {
            xyzt_units: 2, // mm
            ..Default::default()
        },
    }
}

/// The element type of a file: 4 or 8 bytes of float, else an error naming the dtype.
fn float_size(path: &Path, header: &NpyHeader) -> Result<usize> {
    let dtype = header.dtype();
    if let DType::Plain(t) = &dtype {
        if t.type_char() == TypeChar::Float && matches!(t.size_field(), 4 | 8) {
            return Ok(t.size_field() as usize);
        }
    }
    bail!(
        "{}: dtype {} is not float32 or float64; the authors' preprocess.py writes float64 \
         (float32 is accepted too)",
        path.display(),
        dtype.descr()
    )
}

/// A shape as NumPy prints it: `(5, 16, 16, 16)`, `(8,)`.
fn tuple(shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    }
}

/// Checks a header's order and shape; returns `[D, H, W]`.
fn check_shape(path: &Path, header: &NpyHeader) -> Result<[usize; 3]> {
    ensure!(
        header.order() == Order::C,
        "{}: the array is stored in Fortran order; protokd reads C order, as np.save writes by \
         default (save np.ascontiguousarray(a))",
        path.display()
    );
    let shape = header.shape();
    let shown = tuple(shape);
    // A size beyond usize (32-bit targets) becomes usize::MAX: refused by the limit below.
    let dims: Vec<usize> = shape
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let &[c, d, h, w] = dims.as_slice() else {
        bail!(
            "{}: shape {shown} is not (5, D, H, W) (T1, T2, T1ce, FLAIR, labels), the shape \
             the authors' preprocess.py writes",
            path.display()
        );
    };
    ensure!(
        c == CHANNELS,
        "{}: shape {shown} has {c} channel(s), not 5 (T1, T2, T1ce, FLAIR, labels) as the \
         authors' preprocess.py writes",
        path.display()
    );
    ensure!(
        d > 0 && h > 0 && w > 0,
        "{}: shape {shown} has an empty axis",
        path.display()
    );
    checked_size(
        &[d, h, w],
        MAX_VOXELS,
        "voxels",
        &format!("{}: the header's shape (D, H, W)", path.display()),
    )?;
    Ok([d, h, w])
}

/// The most bytes an `.npy` header may declare: NumPy's own default (`max_header_size = 10000`
/// of `numpy.lib.format.read_array_header_*`), far above the ~128 bytes `np.save` writes.
const MAX_HEADER_BYTES: u64 = 10_000;

/// Checks an `.npy` file's header before npyz parses it, then rewinds `reader`: the length it
/// declares (2 bytes after the magic and version 1.0, 4 bytes after 2.0 and 3.0; NumPy's
/// format) at most [`MAX_HEADER_BYTES`] and within the file (npyz allocates the declared length
/// first), and its text the flat dict `np.save` writes: one `{ }`, at most one `( )` (the
/// shape), no `[ ]`. A nested header is refused because npyz's parser of Python literals
/// backtracks exponentially on nesting: cargo fuzz found a 241-byte header that took longer
/// than 10 s.
fn check_header_text(path: &Path, reader: &mut BufReader<File>, file_len: u64) -> Result<()> {
    let io_err = |e: std::io::Error| anyhow!("cannot read {} ({e})", path.display());
    let start = reader.fill_buf().map_err(io_err)?;
    let (prefix, declared) = match start {
        [0x93, b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..] => {
            (10, u64::from(u16::from_le_bytes([*a, *b])))
        }
        [0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, a, b, c, d, ..] => {
            (12, u64::from(u32::from_le_bytes([*a, *b, *c, *d])))
        }
        // Anything else is refused by the header reader, naming what it found.
        _ => return Ok(()),
    };
    ensure!(
        declared <= MAX_HEADER_BYTES && prefix + declared <= file_len,
        "{}: not a NumPy .npy file: its header declares {declared} bytes (the file has \
         {file_len}; NumPy reads at most {MAX_HEADER_BYTES})",
        path.display()
    );
    let mut head = vec![0u8; (prefix + declared) as usize];
    reader.read_exact(&mut head).map_err(io_err)?;
    reader.rewind().map_err(io_err)?;
    let text = &head[prefix as usize..];
    let count = |c: u8| text.iter().filter(|&&b| b == c).count();
    ensure!(
        count(b'{') == 1
            && count(b'}') == 1
            && count(b'(') <= 1
            && count(b')') <= 1
            && count(b'[') == 0
            && count(b']') == 0,
        "{}: not a NumPy .npy file: its header is not the flat dict np.save writes \
         ({{'descr': ..., 'fortran_order': ..., 'shape': (...)}})",
        path.display()
    );
    Ok(())
}

/// An opened file whose header passed every check: the reader at the first data byte.
struct Checked {
    header: NpyHeader,
    reader: BufReader<File>,
    /// Bytes per value, 4 or 8.
    size: usize,
    /// `[D, H, W]`.
    dims: [usize; 3],
}

/// Opens a file and checks its header and length (the first rule of the module docs), reading
/// no data.
fn open_checked(path: &Path) -> Result<Checked> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let mut reader = BufReader::new(file);
    check_header_text(path, &mut reader, file_len)?;
    let header = NpyHeader::from_reader(&mut reader)
        .map_err(|e| anyhow!("{}: not a NumPy .npy file ({e})", path.display()))?;
    let size = float_size(path, &header)?;
    let dims = check_shape(path, &header)?;
    let n = CHANNELS * dims.iter().product::<usize>();
    let offset = reader
        .stream_position()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let need = (n * size) as u64;
    let have = file_len.saturating_sub(offset);
    ensure!(
        have == need,
        "{}: {} bytes of data after the header, but shape {} of {} needs {need}{}",
        path.display(),
        have,
        tuple(header.shape()),
        header.dtype().descr(),
        if have < need {
            " (the file is truncated)"
        } else {
            " (trailing bytes)"
        }
    );
    Ok(Checked {
        header,
        reader,
        size,
        dims,
    })
}

/// Checks a file's header and length without reading its data (so that a command can refuse
/// a bad file before it starts); returns `[D, H, W]`.
pub fn check_header(path: &Path) -> Result<[usize; 3]> {
    Ok(open_checked(path)?.dims)
}

/// Reads and checks one authors' `.npy` file (rules in the module docs).
pub fn read_array(path: &Path) -> Result<AuthorsArray> {
    let Checked {
        header,
        reader,
        size,
        dims,
    } = open_checked(path)?;
    let npy = NpyFile::with_header(header, reader);
    let read_err = |e: std::io::Error| anyhow!("{}: cannot read the data ({e})", path.display());
    let values: Vec<f32> = if size == 4 {
        npy.into_vec::<f32>().map_err(read_err)?
    } else {
        let wide = npy.into_vec::<f64>().map_err(read_err)?;
        narrow(path, &wide, dims)?
    };
    split_channels(path, values, dims)
}

/// The float64 values of a file as f32; an image value (channels 0-3) that is not a float32
/// value is an error naming it (labels are checked later).
fn narrow(path: &Path, wide: &[f64], dims: [usize; 3]) -> Result<Vec<f32>> {
    let voxels = dims.iter().product::<usize>();
    let out: Vec<f32> = wide.iter().map(|&v| v as f32).collect();
    let inexact = |(i, (&v, &n)): (usize, (&f64, &f32))| {
        (i < 4 * voxels && f64::from(n) != v && !v.is_nan()).then_some((i, v))
    };
    if let Some((i, v)) = wide.iter().zip(&out).enumerate().find_map(inexact) {
        bail!(
            "{}: channel {} holds {v} at voxel (z, y, x) = {:?}, which is not a float32 value; \
             preprocess.py computes in float32, so this file was written otherwise (save it \
             with .astype(np.float32))",
            path.display(),
            i / voxels,
            voxel_of(dims, i % voxels)
        );
    }
    Ok(out)
}

/// Splits `[5, D, H, W]` values into the four images and the labels, checking each.
fn split_channels(path: &Path, values: Vec<f32>, dims: [usize; 3]) -> Result<AuthorsArray> {
    let voxels = dims.iter().product::<usize>();
    let mut chunks = values.chunks_exact(voxels);
    let mut image = |c: usize| -> Result<Volume> {
        let data = chunks.next().expect("five channels").to_vec();
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            bail!(
                "{}: channel {c} holds {} at voxel (z, y, x) = {:?}; images must be finite",
                path.display(),
                data[i],
                voxel_of(dims, i)
            );
        }
        Ok(Volume::new(dims, data))
    };
    let images = [image(0)?, image(1)?, image(2)?, image(3)?];
    let raw = chunks.next().expect("five channels");
    let label = |x: f32| (x == x.trunc() && (0.0..=3.0).contains(&x)).then_some(x as u8);
    let labels: Option<Vec<u8>> = raw.iter().map(|&x| label(x)).collect();
    let Some(labels) = labels else {
        let i = raw
            .iter()
            .position(|&x| label(x).is_none())
            .expect("a bad label");
        let bad = raw.iter().filter(|&&x| label(x).is_none()).count();
        bail!(
            "{}: the label channel (4) holds {} at voxel (z, y, x) = {:?} ({bad} voxel(s) in \
             all), not one of the internal labels 0 (background), 1 (ET), 2 (NCR/NET), 3 (ED)",
            path.display(),
            raw[i],
            voxel_of(dims, i)
        );
    };
    Ok(AuthorsArray {
        dims,
        images,
        labels,
    })
}

/// The case of one `<id>.npy` file (`dir` is the folder holding it).
pub fn case_of_file(path: &Path) -> Result<Case> {
    let id = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".npy"))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "{}: an authors' case file is named <case id>.npy (UTF-8)",
                path.display()
            )
        })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(Case {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        modalities: [0; 4].map(|_| path.to_path_buf()),
        seg: Some(path.to_path_buf()),
        release: Release::Brats2018,
        format: CaseFormat::AuthorsNpy,
    })
}

/// The authors' dataset in `dir` (module docs), or `None` when `dir` holds no `.npy` file.
pub fn discover(dir: &Path) -> Result<Option<Dataset>> {
    let mut cases = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with('.') || !name.ends_with(".npy") || !path.is_file() {
            continue;
        }
        cases.push(case_of_file(&path)?);
    }
    if cases.is_empty() {
        return Ok(None);
    }
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(Dataset {
        root: dir.to_path_buf(),
        release: Release::Brats2018,
        cases,
    }))
}

/// The folder of an authors' dataset's split lists: `root` when it holds `train_list.txt`, else
/// its parent when that does; `None` when neither does.
pub fn split_folder(root: &Path) -> Option<PathBuf> {
    let parent = root.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    std::iter::once(root)
        .chain(parent)
        .find(|d| d.join(SPLIT_FILES[0]).is_file())
        .map(Path::to_path_buf)
}

/// Reads an authors' case into a [`LoadedCase`] (images as stored, internal labels, the
/// [`assumed_geometry`]). Errors name the case and the file.
pub fn load_case(case: &Case) -> Result<LoadedCase> {
    let path = &case.modalities[0];
    let array = read_array(path).with_context(|| format!("case {}", case.id))?;
    Ok(LoadedCase {
        case: case.clone(),
        images: array.images,
        geometry: assumed_geometry(),
        labels: Some(array.labels),
    })
}
