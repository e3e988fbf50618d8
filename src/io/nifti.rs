//! NIfTI-1 files in and out (`.nii` and `.nii.gz`), read exactly as nibabel reads them.
//!
//! # Axis order
//! A NIfTI file stores its voxels with the first index `i` (x) fastest, then `j` (y), then `k`
//! (z). [`read_image`] keeps that byte order: the returned [`Volume`] has
//! `dims = [nz, ny, nx] = [dim[3], dim[2], dim[1]]` and voxel `(z, y, x)` at
//! `(z * ny + y) * nx + x`, the array NumPy gives for `sitk.GetArrayFromImage` or for
//! nibabel's `img.get_fdata().transpose(2, 1, 0)`. Nothing is reordered or flipped, whatever
//! the affine says. [`write_image`] writes the same order back.
//!
//! # Values and scaling
//! Supported datatypes: uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32 and
//! float64, in either byte order. Values are scaled as the NIfTI standard and nibabel say:
//! `scl_slope` of 0 (or NaN or infinite) means no scaling; otherwise
//! `value = raw * scl_slope + scl_inter`, computed in f64 (multiplication skipped when the slope
//! is 1, addition skipped when the intercept is 0, as nibabel does) and then rounded once to
//! f32. So each value equals `np.float32(nibabel_img.get_fdata()[x, y, z])`. A finite slope
//! with a non-finite intercept is refused (nibabel refuses it too).
//!
//! # Affine (voxel index (i, j, k) = (x, y, z) to world, mm)
//! The rule of nifti1_io.c (the NIfTI reference library, `nifti_convert_nhdr2nim` and
//! `nifti_quatern_to_mat44`), which nibabel's `img.affine` (`Nifti1Header.get_best_affine`)
//! also gives wherever nibabel gives an affine at all:
//! 1. `sform_code > 0`: the sform rows `srow_x`, `srow_y`, `srow_z`;
//! 2. else `qform_code > 0`: the qform, from the quaternion (b, c, d; a = sqrt(1 - b² - c² -
//!    d²)), the voxel sizes `pixdim[1..4]` (each one that is not > 0 taken as 1, as
//!    nifti1_io.c does), `qfac = pixdim[0]` (-1 when negative, else 1, multiplying the z voxel
//!    size) and the offsets `qoffset_x/y/z`;
//! 3. else `diag(pixdim[1], pixdim[2], pixdim[3], 1)`, the standard's "method 1" (nifti1_io.c's
//!    `qto_xyz` for such a file).
//!
//! Where protokd follows which:
//! * Codes: a code is used when > 0, as nifti1_io.c; a code above 4 (undefined by the
//!   standard) is used too, as both do. nibabel tests `!= 0`, so for a negative code it uses
//!   the form and nifti1_io.c (and protokd) does not.
//! * qform voxel sizes not > 0: 1, as nifti1_io.c; nibabel refuses a negative one ("pixdims
//!   should be positive") and uses a zero as it is.
//! * No form at all: the standard's method 1, as nifti1_io.c; nibabel returns an Analyze-style
//!   affine centred on the volume with x flipped. Such files carry no orientation at all.
//! * The quaternion: as nibabel, b² + c² + d² within 3 f32 epsilons above 1 gives a = 0, and
//!   more is refused (nifti1_io.c normalises (b, c, d) whenever 1 - b² - c² - d² < 1e-7); the
//!   matrix is computed in f64 as nibabel's `quat2mat` (nifti1_io.c's `mat44` is f32).

//! # Dimensions
//! Only 3-D images are read: `dim[0]` may be 1 to 7, but every dimension past the third must be
//! 1 (a 4-D file with one time point is read as 3-D). More time points are refused. Writing
//! supports 4-D images too ([`write_frames`]: e.g. one class probability map per frame).
//!
//! # Limits
//! Sizes are decided from the header before anything is allocated: an image may have at most
//! [`MAX_VOXELS`] voxels (checked with overflow-checked arithmetic, [`checked_size`]), and a
//! `.nii.gz` is decompressed only up to the `vox_offset + voxels * bytes per voxel` bytes the
//! header promises: a stream that ends earlier or holds more is refused, naming the file.
//! [`read_dims`] reads the header alone, so that two files' grids can be compared before
//! either's voxels are read. The voxel-to-world affine must be finite.
//!
//! # Errors
//! Every error is one line that names the file and the problem; no input makes these
//! functions panic.

use crate::io::files::write_atomic;
use crate::io::hash::Hashing;
use crate::volume::{Geometry, Image, Volume};
use anyhow::{anyhow, bail, Result};
use flate2::bufread::MultiGzDecoder;
use nalgebra::Matrix4;
use nifti::{Endianness, NiftiHeader};
use rayon::prelude::*;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

/// Datatype of a file written by [`write_image`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutDtype {
    /// uint8 (NIfTI datatype 2): label maps. Values must be integers in 0..=255.
    U8,
    /// int16 (NIfTI datatype 4). Values must be integers in -32768..=32767.
    I16,
    /// float32 (NIfTI datatype 16): any value, stored bit for bit.
    F32,
}

impl OutDtype {
    fn code(self) -> i16 {
        match self {
            OutDtype::U8 => 2,
            OutDtype::I16 => 4,
            OutDtype::F32 => 16,
        }
    }

    fn bytes(self) -> usize {
        match self {
            OutDtype::U8 => 1,
            OutDtype::I16 => 2,
            OutDtype::F32 => 4,
        }
    }
}

/// gzip level of written `.nii.gz` files: fixed, so that the bytes are the same every run; 1
/// (as nibabel) because it is about 7 times faster than 6 on float32 maps for a 2 % larger file.
pub const GZIP_LEVEL: u32 = 1;

/// Most voxels an image read from a file may have: 2^28 = 268,435,456 (1 GiB as f32), about 30
/// times a BraTS volume (240 x 240 x 155 = 8,928,000). A header claiming more is refused
/// before anything is allocated or decompressed (a NIfTI-1 header can claim up to 2^45).
pub const MAX_VOXELS: usize = 1 << 28;

/// The product of `factors` (sizes from a file header, a configuration or a flag), computed with
/// overflow-checked arithmetic and refused when it overflows or exceeds `limit`.
///
/// `unit` names what the product counts (`voxels`, `bytes`) and `what` the size (with the file,
/// key or flag it came from); the error shows the factors, the product and the limit, e.g.
/// `x.nii.gz: dims 2000 x 2000 x 2000 = 8000000000 voxels, above the limit of 268435456 voxels`.
pub fn checked_size(factors: &[usize], limit: usize, unit: &str, what: &str) -> Result<usize> {
    let shown = || {
        factors
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" x ")
    };
    let product = factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            anyhow!(
                "{what} {} overflows, far above the limit of {limit} {unit}",
                shown()
            )
        })?;
    if product > limit {
        bail!(
            "{what} {} = {product} {unit}, above the limit of {limit} {unit}",
            shown()
        );
    }
    Ok(product)
}

const HEADER_SIZE: usize = 348;
const DATA_OFFSET: usize = 352;
/// Above this many voxels, the values of an uncompressed file are converted on several threads.
const PARALLEL_VOXELS: usize = 1 << 20;
/// Size of the chunks a `.nii.gz` is decompressed into (a multiple of every element size).
const GZ_CHUNK_BYTES: usize = 1 << 18;

fn file_name(path: &Path) -> String {
    path.display().to_string()
}

/// Reads a 3-D NIfTI-1 image (`.nii` or `.nii.gz`; gzip is recognised by its magic bytes).
///
/// Values come back as f32 in (z, y, x) order with x fastest, after `scl_slope`/`scl_inter`;
/// the geometry holds `pixdim[1..4]`, the affine (sform, else qform, else `diag(pixdim)`) and
/// the header. See the module documentation for the exact rules.
///
/// The file is streamed: the header is read and checked first, then exactly the data it
/// promises (a `.nii` whose size is below `vox_offset + data` is refused before the data are
/// allocated); bytes after the data of a `.nii` are not read.
pub fn read_image(path: &Path) -> Result<Image> {
    let name = file_name(path);
    let (file, len) = open(path, &name)?;
    Ok(decode_stream(io::BufReader::new(file), len, &name)?.0)
}

/// [`read_image`], and the SHA-256 of the whole file, computed from the same read (the bytes
/// after the image data are hashed as they stream past, never held).
pub fn read_image_hashed(path: &Path) -> Result<(Image, String)> {
    let name = file_name(path);
    let (file, len) = open(path, &name)?;
    let (image, rest) = decode_stream(io::BufReader::new(Hashing::new(file)), len, &name)?;
    let hash = rest
        .into_inner()
        .finish()
        .map_err(|e| anyhow!("{name}: cannot read the file ({e})"))?;
    Ok((image, hash))
}

/// Like [`read_image`], on the bytes of a file already in memory; `path` only names it in
/// errors (and says, by a `.gz` ending, that gzip was expected).
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<Image> {
    Ok(decode_stream(bytes, bytes.len() as u64, &file_name(path))?.0)
}

/// The open file and its length in bytes.
fn open(path: &Path, name: &str) -> Result<(std::fs::File, u64)> {
    let file =
        std::fs::File::open(path).map_err(|e| anyhow!("{name}: cannot read the file ({e})"))?;
    let len = file
        .metadata()
        .map_err(|e| anyhow!("{name}: cannot read the file ({e})"))?
        .len();
    Ok((file, len))
}

/// Decodes the image from the file's bytes `r` (`len` of them): gzip when they start with its
/// magic, else plain. Returns what is left of the reader (positioned after the data for a plain
/// file, after the gzip stream for a compressed one).
fn decode_stream<R: BufRead>(mut r: R, len: u64, name: &str) -> Result<(Image, R)> {
    if len == 0 {
        bail!("{name}: the file is empty, not a NIfTI file");
    }
    let start = r
        .fill_buf()
        .map_err(|e| anyhow!("{name}: cannot read the file ({e})"))?;
    if start.starts_with(&[0x1f, 0x8b]) {
        let mut dec = MultiGzDecoder::new(r);
        let image = decode_gzip(&mut dec, len, name)?;
        Ok((image, dec.into_inner()))
    } else {
        let image = decode_plain(&mut r, len, name)?;
        Ok((image, r))
    }
}

/// An uncompressed file: header, then the data, checked against the file's length `len`
/// before they are allocated.
fn decode_plain(r: &mut impl Read, len: u64, name: &str) -> Result<Image> {
    let gz_note = if name.ends_with(".gz") {
        " (and it is not gzip-compressed although its name ends in .gz)"
    } else {
        ""
    };
    let mut head = [0u8; DATA_OFFSET];
    let n = read_full(r, &mut head, name)?;
    let layout = parse_header(&head[..n], name, gz_note)?;
    let end = layout
        .offset
        .checked_add(layout.data_bytes)
        .ok_or_else(|| anyhow!("{name}: the image is too large"))?;
    let short = |has: u64| {
        anyhow!(
            "{name}: data shorter than the header says: {} voxels of {} bytes from offset {} \
             need {end} bytes, the file has {has}",
            layout.voxels,
            layout.voxel_bytes,
            layout.offset,
        )
    };
    if len < end as u64 {
        return Err(short(len));
    }
    let skip = (layout.offset - n) as u64;
    let skipped = io::copy(&mut r.by_ref().take(skip), &mut io::sink())
        .map_err(|e| anyhow!("{name}: cannot read the file ({e})"))?;
    let mut raw = vec![0u8; layout.data_bytes];
    let got = read_full(r, &mut raw, name)?;
    if skipped < skip || got < raw.len() {
        return Err(short(n as u64 + skipped + got as u64));
    }
    let data = convert_all(&layout, &raw);
    Ok(finish(layout, data))
}

fn gzip_error(name: &str, e: io::Error) -> anyhow::Error {
    anyhow!("{name}: truncated or corrupt gzip data ({e})")
}

/// Reads into `buf` until it is full or the stream ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8], name: &str) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gzip_error(name, e)),
        }
    }
    Ok(n)
}

/// A gzip-compressed file (`len` compressed bytes), decompressed only as far as the header
/// promises.
fn decode_gzip(dec: &mut impl Read, len: u64, name: &str) -> Result<Image> {
    let (layout, n) = gzip_header(dec, name)?;
    // Skip header extensions, if any.
    let skip = (layout.offset - n.min(layout.offset)) as u64;
    let skipped =
        io::copy(&mut dec.by_ref().take(skip), &mut io::sink()).map_err(|e| gzip_error(name, e))?;
    if skipped < skip {
        bail!(
            "{name}: data shorter than the header says: the data should start at offset {}, \
             the decompressed file has {} bytes",
            layout.offset,
            n as u64 + skipped
        );
    }
    // Deflate expands at most 1032-fold: a corrupt header cannot make us reserve more than
    // the file can hold.
    let capacity = layout.voxels.min(
        usize::try_from(len)
            .unwrap_or(usize::MAX)
            .saturating_mul(1032)
            / layout.voxel_bytes
            + 1,
    );
    // Decompress chunk by chunk, converting each while it is in cache: no copy of the whole
    // raw data.
    let mut data = Vec::with_capacity(capacity);
    let mut chunk = vec![0u8; GZ_CHUNK_BYTES.min(layout.data_bytes.max(1))];
    let mut remaining = layout.data_bytes;
    while remaining > 0 {
        let want = remaining.min(chunk.len());
        let got = read_full(dec, &mut chunk[..want], name)?;
        let whole = got - got % layout.voxel_bytes;
        append_values(&layout, &chunk[..whole], &mut data);
        remaining -= got;
        if got < want {
            bail!(
                "{name}: data shorter than the header says: {} voxels of {} bytes need {} bytes \
                 after offset {}, the decompressed file has {}",
                layout.voxels,
                layout.voxel_bytes,
                layout.data_bytes,
                layout.offset,
                layout.data_bytes - remaining
            );
        }
    }
    check_stream_ends(dec, &layout, name)?;
    Ok(finish(layout, data))
}

/// Decompresses the first 352 bytes of a `.nii.gz` and parses the header (nothing more is
/// decompressed); returns the layout and how many bytes were decompressed (352, or fewer when
/// the stream is shorter).
fn gzip_header(dec: &mut impl Read, name: &str) -> Result<(Layout, usize)> {
    let mut head = [0u8; DATA_OFFSET];
    let n = read_full(dec, &mut head, name)?;
    Ok((parse_header(&head[..n], name, "")?, n))
}

/// After the data the header promises, the gzip stream must end: one more byte is read to tell
/// (its end checks the CRC and length), never more, so a stream holding more is refused
/// without decompressing the rest.
fn check_stream_ends(dec: &mut impl Read, layout: &Layout, name: &str) -> Result<()> {
    let mut extra = [0u8; 1];
    if read_full(dec, &mut extra, name)? > 0 {
        bail!(
            "{name}: corrupt gzip data or a wrong header: the stream holds more than the header \
             promises ({} voxels of {} bytes from offset {} end at byte {})",
            layout.voxels,
            layout.voxel_bytes,
            layout.offset,
            layout.offset + layout.data_bytes
        );
    }
    Ok(())
}

/// The dimensions `[nz, ny, nx]` of a NIfTI-1 image, from its header alone (for a `.nii.gz`,
/// only the header is decompressed), with the checks of [`read_image`] on the header
/// (including [`MAX_VOXELS`]): for comparing grids before reading any voxel.
pub fn read_dims(path: &Path) -> Result<[usize; 3]> {
    let name = file_name(path);
    let mut head = Vec::with_capacity(DATA_OFFSET);
    std::fs::File::open(path)
        .and_then(|f| f.take(DATA_OFFSET as u64).read_to_end(&mut head))
        .map_err(|e| anyhow!("{name}: cannot read the file ({e})"))?;
    if head.is_empty() {
        bail!("{name}: the file is empty, not a NIfTI file");
    }
    let layout = if head.starts_with(&[0x1f, 0x8b]) {
        let file =
            std::fs::File::open(path).map_err(|e| anyhow!("{name}: cannot read the file ({e})"))?;
        gzip_header(&mut MultiGzDecoder::new(io::BufReader::new(file)), &name)?.0
    } else {
        parse_header(&head, &name, "")?
    };
    Ok(layout.dims)
}

/// The dims `[nz, ny, nx]` that every one of `files` has, from their headers alone
/// ([`read_dims`]): an error names a file whose header is refused, or two files on different
/// grids. Commands call it on all their inputs before they announce, create or compute
/// anything, so that a bad input is refused with nothing done.
pub fn common_dims(files: &[PathBuf]) -> Result<Option<[usize; 3]>> {
    let mut first: Option<([usize; 3], &Path)> = None;
    for f in files {
        let dims = read_dims(f)?;
        match first {
            None => first = Some((dims, f)),
            Some((d, g)) if d != dims => {
                let xyz = |d: [usize; 3]| format!("{} x {} x {}", d[2], d[1], d[0]);
                bail!(
                    "{} is {} voxels (x, y, z) but {} is {}; the inputs must lie on one grid",
                    f.display(),
                    xyz(dims),
                    g.display(),
                    xyz(d)
                );
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(d, _)| d))
}

/// Where the data lie and how to turn them into values.
struct Layout {
    header: NiftiHeader,
    /// The voxel-to-world affine (finite).
    affine: Matrix4<f64>,
    dims: [usize; 3],
    voxels: usize,
    voxel_bytes: usize,
    data_bytes: usize,
    offset: usize,
    kind: Kind,
    big_endian: bool,
    scale: Option<(f64, f64)>,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

fn kind_of(code: i16) -> std::result::Result<Kind, &'static str> {
    Ok(match code {
        2 => Kind::U8,
        256 => Kind::I8,
        4 => Kind::I16,
        512 => Kind::U16,
        8 => Kind::I32,
        768 => Kind::U32,
        1024 => Kind::I64,
        1280 => Kind::U64,
        16 => Kind::F32,
        64 => Kind::F64,
        0 => return Err("unknown"),
        1 => return Err("binary"),
        32 => return Err("complex64"),
        128 => return Err("rgb24"),
        1536 => return Err("float128"),
        1792 => return Err("complex128"),
        2048 => return Err("complex256"),
        2304 => return Err("rgba32"),
        _ => return Err("not a NIfTI datatype code"),
    })
}

fn kind_bytes(k: Kind) -> usize {
    match k {
        Kind::U8 | Kind::I8 => 1,
        Kind::I16 | Kind::U16 => 2,
        Kind::I32 | Kind::U32 | Kind::F32 => 4,
        Kind::I64 | Kind::U64 | Kind::F64 => 8,
    }
}

/// Checks the first bytes of a (decompressed) file and parses its header.
fn parse_header(head: &[u8], name: &str, gz_note: &str) -> Result<Layout> {
    if head.len() < HEADER_SIZE {
        bail!(
            "{name}: not a NIfTI-1 file: only {} bytes, a NIfTI-1 header needs {HEADER_SIZE}{gz_note}",
            head.len()
        );
    }
    let le = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let be = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let big_endian = match (le, be) {
        (348, _) => false,
        (_, 348) => true,
        (540, _) | (_, 540) => bail!("{name}: NIfTI-2 files are not supported (only NIfTI-1)"),
        _ => bail!(
            "{name}: not a NIfTI-1 file: sizeof_hdr is {le}, expected 348 (either byte \
             order){gz_note}"
        ),
    };
    let magic = &head[344..348];
    if magic == b"ni1\0" {
        bail!("{name}: two-file NIfTI (.hdr/.img pair, magic \"ni1\") is not supported");
    }
    if magic != b"n+1\0" {
        bail!(
            "{name}: not a NIfTI-1 file: magic is {}, expected \"n+1\"{gz_note}",
            magic
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let dim0 = if big_endian {
        i16::from_be_bytes([head[40], head[41]])
    } else {
        i16::from_le_bytes([head[40], head[41]])
    };
    if !(1..=7).contains(&dim0) {
        bail!("{name}: corrupt NIfTI-1 header: dim[0] is {dim0}, expected 1 to 7");
    }
    let header = NiftiHeader::from_reader(&head[..HEADER_SIZE])
        .map_err(|e| anyhow!("{name}: unreadable NIfTI-1 header ({e})"))?;
    let parsed_big = header.endianness == Endianness::Big;
    if parsed_big != big_endian || header.sizeof_hdr != 348 {
        bail!("{name}: corrupt NIfTI-1 header (byte order)");
    }

    // Dimensions (stored as i16; the nifti crate hands them over as u16).
    let dim: Vec<i64> = header.dim.iter().map(|&d| d as i16 as i64).collect();
    let nd = dim[0];
    if !(1..=7).contains(&nd) {
        bail!("{name}: corrupt NIfTI-1 header: dim[0] is {nd}, expected 1 to 7");
    }
    let nd = nd as usize;
    for (i, &d) in dim.iter().enumerate().take(nd + 1).skip(1) {
        if d < 1 {
            bail!("{name}: corrupt NIfTI-1 header: dim[{i}] is {d}");
        }
    }
    let size = |i: usize| if i <= nd { dim[i] as usize } else { 1 };
    let extra: usize = (4..=nd).map(size).product();
    if extra != 1 {
        let what = if nd == 4 {
            format!("{} time points (dim[4])", dim[4])
        } else {
            format!(
                "dimensions 4 to {nd} are {:?}",
                &dim[4..=nd].iter().collect::<Vec<_>>()
            )
        };
        bail!("{name}: a {nd}-D image with {what}; only 3-D images (one time point) are supported");
    }
    let dims = [size(3), size(2), size(1)];
    let voxels = checked_size(
        &[dims[2], dims[1], dims[0]],
        MAX_VOXELS,
        "voxels",
        &format!("{name}: the header's dims (x, y, z)"),
    )?;

    let kind = kind_of(header.datatype).map_err(|what| {
        anyhow!(
            "{name}: unsupported datatype {} ({what}); supported: uint8, int8, int16, uint16, int32, \
             uint32, int64, uint64, float32, float64",
            header.datatype
        )
    })?;
    let voxel_bytes = kind_bytes(kind);
    let data_bytes = voxels
        .checked_mul(voxel_bytes)
        .ok_or_else(|| anyhow!("{name}: the image is too large"))?;

    let vo = header.vox_offset;
    let offset = if vo == 0.0 {
        DATA_OFFSET
    } else if vo.is_finite() && vo >= DATA_OFFSET as f32 && vo < 1e9 {
        vo as usize
    } else {
        bail!("{name}: corrupt NIfTI-1 header: vox_offset is {vo}, expected at least 352");
    };

    let slope = header.scl_slope as f64;
    let inter = header.scl_inter as f64;
    let scale = if slope == 0.0 || !slope.is_finite() {
        None
    } else if !inter.is_finite() {
        bail!("{name}: scl_slope is {slope} but scl_inter is {inter} (not finite)");
    } else if slope == 1.0 && inter == 0.0 {
        None
    } else {
        Some((slope, inter))
    };

    let affine = affine_from_header(&header).map_err(|e| anyhow!("{name}: {e}"))?;
    if let Some(v) = affine.iter().find(|v| !v.is_finite()) {
        bail!("{name}: the header's voxel-to-world affine holds {v}; it must be finite");
    }
    Ok(Layout {
        header,
        affine,
        dims,
        voxels,
        voxel_bytes,
        data_bytes,
        offset,
        kind,
        big_endian,
        scale,
    })
}

/// One raw element type: decoding from bytes and widening.
trait Raw: Copy {
    const N: usize;
    fn decode(b: &[u8], big: bool) -> Self;
    fn to_f32(self) -> f32;
    fn to_f64(self) -> f64;
}

macro_rules! raw_type {
    ($t:ty, $n:expr, $to_f32:expr) => {
        impl Raw for $t {
            const N: usize = $n;
            #[inline(always)]
            fn decode(b: &[u8], big: bool) -> Self {
                let mut a = [0u8; $n];
                a.copy_from_slice(&b[..$n]);
                if big {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                $to_f32(self)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}
// Others through f64, as nibabel (`get_fdata()`, then float32): 64-bit integers and float64
// round as there.
raw_type!(u8, 1, |v: u8| v as f64 as f32);
raw_type!(i8, 1, |v: i8| v as f64 as f32);
raw_type!(i16, 2, |v: i16| v as f64 as f32);
raw_type!(u16, 2, |v: u16| v as f64 as f32);
raw_type!(i32, 4, |v: i32| v as f64 as f32);
raw_type!(u32, 4, |v: u32| v as f64 as f32);
raw_type!(i64, 8, |v: i64| v as f64 as f32);
raw_type!(u64, 8, |v: u64| v as f64 as f32);
raw_type!(f32, 4, |v: f32| v); // bit for bit (a signalling NaN stays one)
raw_type!(f64, 8, |v: f64| v as f32);

/// Converts raw elements to values (`out.len()` elements from the start of `raw`).
fn convert<T: Raw>(raw: &[u8], out: &mut [f32], big: bool, scale: Option<(f64, f64)>) {
    let it = raw.chunks_exact(T::N).zip(out.iter_mut());
    match scale {
        None => {
            for (b, o) in it {
                *o = T::decode(b, big).to_f32();
            }
        }
        Some((slope, inter)) => {
            for (b, o) in it {
                let mut v = T::decode(b, big).to_f64();
                if slope != 1.0 {
                    v *= slope;
                }
                if inter != 0.0 {
                    v += inter;
                }
                *o = v as f32;
            }
        }
    }
}

fn convert_kind(layout: &Layout, raw: &[u8], out: &mut [f32]) {
    let (big, scale) = (layout.big_endian, layout.scale);
    match layout.kind {
        Kind::U8 => convert::<u8>(raw, out, big, scale),
        Kind::I8 => convert::<i8>(raw, out, big, scale),
        Kind::I16 => convert::<i16>(raw, out, big, scale),
        Kind::U16 => convert::<u16>(raw, out, big, scale),
        Kind::I32 => convert::<i32>(raw, out, big, scale),
        Kind::U32 => convert::<u32>(raw, out, big, scale),
        Kind::I64 => convert::<i64>(raw, out, big, scale),
        Kind::U64 => convert::<u64>(raw, out, big, scale),
        Kind::F32 => convert::<f32>(raw, out, big, scale),
        Kind::F64 => convert::<f64>(raw, out, big, scale),
    }
}

/// Appends the values of `raw` (whole elements) to `out`.
fn append_values(layout: &Layout, raw: &[u8], out: &mut Vec<f32>) {
    let start = out.len();
    out.resize(start + raw.len() / layout.voxel_bytes, 0.0);
    convert_kind(layout, raw, &mut out[start..]);
}

/// All the values of `raw` (exactly the data), converted on several threads when large.
fn convert_all(layout: &Layout, raw: &[u8]) -> Vec<f32> {
    let mut data = vec![0f32; layout.voxels];
    if layout.voxels >= PARALLEL_VOXELS {
        const CHUNK: usize = 1 << 16;
        raw.par_chunks(CHUNK * layout.voxel_bytes)
            .zip(data.par_chunks_mut(CHUNK))
            .for_each(|(r, o)| convert_kind(layout, r, o));
    } else {
        convert_kind(layout, raw, &mut data);
    }
    data
}

fn finish(layout: Layout, data: Vec<f32>) -> Image {
    debug_assert_eq!(data.len(), layout.voxels);
    let h = &layout.header;
    let affine = layout.affine;
    let spacing = [h.pixdim[1] as f64, h.pixdim[2] as f64, h.pixdim[3] as f64];
    Image {
        volume: Volume::new(layout.dims, data),
        geometry: Geometry {
            spacing,
            affine,
            header: layout.header,
        },
    }
}

/// The voxel-to-world affine of a header, by nifti1_io.c's rule: the sform when
/// `sform_code > 0`, else the qform when `qform_code > 0`, else `diag(pixdim[1..4], 1)` (see
/// the module documentation). Errors only on a qform quaternion with b² + c² + d² > 1.
pub(crate) fn affine_from_header(h: &NiftiHeader) -> Result<Matrix4<f64>> {
    if h.sform_code > 0 {
        Ok(sform_affine(h))
    } else if h.qform_code > 0 {
        qform_affine(h)
    } else {
        let p = &h.pixdim;
        Ok(Matrix4::from_diagonal(&nalgebra::Vector4::new(
            p[1] as f64,
            p[2] as f64,
            p[3] as f64,
            1.0,
        )))
    }
}

/// The sform rows as a 4x4 matrix (whatever `sform_code` says).
pub(crate) fn sform_affine(h: &NiftiHeader) -> Matrix4<f64> {
    let mut m = Matrix4::identity();
    for (r, row) in [h.srow_x, h.srow_y, h.srow_z].iter().enumerate() {
        for c in 0..4 {
            m[(r, c)] = row[c] as f64;
        }
    }
    m
}

/// The qform as a 4x4 matrix (whatever `qform_code` says), computed as nibabel's
/// `get_qform` does, in f64, with nifti1_io.c's voxel sizes: a `pixdim[1..4]` that is not > 0
/// (zero, negative or NaN) counts as 1.
pub(crate) fn qform_affine(h: &NiftiHeader) -> Result<Matrix4<f64>> {
    let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
    let w2 = 1.0 - (b * b + c * c + d * d);
    let a = if w2.abs() < 3.0 * f32::EPSILON as f64 {
        0.0
    } else if w2 < 0.0 || !w2.is_finite() {
        bail!("invalid qform quaternion (b, c, d) = ({b}, {c}, {d}): b² + c² + d² > 1");
    } else {
        w2.sqrt()
    };
    // nibabel's quat2mat.
    let nq = a * a + b * b + c * c + d * d;
    let r = if nq < f64::EPSILON {
        nalgebra::Matrix3::identity()
    } else {
        let s = 2.0 / nq;
        let (x, y, z) = (b * s, c * s, d * s);
        let (wx, wy, wz) = (a * x, a * y, a * z);
        let (xx, xy, xz) = (b * x, b * y, b * z);
        let (yy, yz, zz) = (c * y, c * z, d * z);
        nalgebra::Matrix3::new(
            1.0 - (yy + zz),
            xy - wz,
            xz + wy,
            xy + wz,
            1.0 - (xx + zz),
            yz - wx,
            xz - wy,
            yz + wx,
            1.0 - (xx + yy),
        )
    };
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let size = |p: f32| if p > 0.0 { p as f64 } else { 1.0 };
    let vox = [
        size(h.pixdim[1]),
        size(h.pixdim[2]),
        size(h.pixdim[3]) * qfac,
    ];
    let mut m = Matrix4::identity();
    for i in 0..3 {
        for j in 0..3 {
            m[(i, j)] = r[(i, j)] * vox[j];
        }
    }
    m[(0, 3)] = h.quatern_x as f64;
    m[(1, 3)] = h.quatern_y as f64;
    m[(2, 3)] = h.quatern_z as f64;
    Ok(m)
}

/// Writes `volume` as a NIfTI-1 file, `.nii.gz` (gzip level [`GZIP_LEVEL`], no time stamp: the
/// same bytes every run) or `.nii` by the name's ending, atomically (temporary file in the same
/// folder, then rename).
///
/// The header copies from `geometry.header` the qform and sform (codes, quaternion, offsets,
/// rows), `pixdim` and `xyzt_units`, so the file overlays the source in any viewer; it sets
/// `dim = [3, nx, ny, nz, 1, 1, 1, 1]`, the datatype, `scl_slope = 1`, `scl_inter = 0`,
/// `vox_offset = 352` and magic `n+1`, little-endian. If the volume was cropped or resampled,
/// the caller must give a geometry that says so.
///
/// Errors when a value cannot be stored exactly in an integer `dtype` (not an integer, or out
/// of range), naming the first such voxel.
pub fn write_image(
    path: &Path,
    volume: &Volume,
    geometry: &Geometry,
    dtype: OutDtype,
) -> Result<()> {
    write_frames(path, &volume.data, volume.dims, 1, geometry, dtype)
}

/// Writes `frames` 3-D volumes of `dims = [nz, ny, nx]` as one NIfTI-1 file, exactly as
/// [`write_image`] (same header rules, atomic, deterministic gzip) but with
/// `dim = [4, nx, ny, nz, frames, 1, 1, 1]` when `frames > 1` (a 4-D image, e.g. one class
/// probability map per frame: nibabel shape `(x, y, z, frames)`). `data` holds the frames one
/// after the other, each in (z, y, x) order with x fastest (`[frames, nz, ny, nx]`), which is
/// the NIfTI byte order. `frames = 1` writes the 3-D file of [`write_image`].
pub(crate) fn write_frames(
    path: &Path,
    data: &[f32],
    dims: [usize; 3],
    frames: usize,
    geometry: &Geometry,
    dtype: OutDtype,
) -> Result<()> {
    let name = file_name(path);
    let gzip = name.ends_with(".gz");
    if !(gzip || name.ends_with(".nii")) {
        bail!("{name}: a NIfTI file name must end in .nii or .nii.gz");
    }
    let bytes = encode_frames(data, dims, frames, geometry, dtype, gzip)
        .map_err(|e| anyhow!("{name}: {e}"))?;
    write_atomic(path, &bytes).map_err(|e| anyhow!("{name}: cannot write the file ({e:#})"))
}

/// The bytes [`write_image`] writes (gzip-compressed when `gzip`); errors do not name a file.
pub fn encode_image(
    volume: &Volume,
    geometry: &Geometry,
    dtype: OutDtype,
    gzip: bool,
) -> Result<Vec<u8>> {
    encode_frames(&volume.data, volume.dims, 1, geometry, dtype, gzip)
}

/// The bytes [`write_frames`] writes (gzip-compressed when `gzip`); errors do not name a file.
pub(crate) fn encode_frames(
    data: &[f32],
    dims: [usize; 3],
    frames: usize,
    geometry: &Geometry,
    dtype: OutDtype,
    gzip: bool,
) -> Result<Vec<u8>> {
    let [nz, ny, nx] = dims;
    let per_frame = nz * ny * nx;
    if frames == 0 || frames > i16::MAX as usize {
        bail!("{frames} frames cannot be stored in a NIfTI-1 header (1 to 32767)");
    }
    if data.len() != per_frame * frames {
        bail!(
            "{frames} frame(s) of dims {dims:?} need {} values, got {}",
            per_frame * frames,
            data.len()
        );
    }
    for (axis, &n) in ["z", "y", "x"].iter().zip(&dims) {
        if n == 0 || n > i16::MAX as usize {
            bail!("size {n} along {axis} cannot be stored in a NIfTI-1 header (1 to 32767)");
        }
    }
    let mut out = Vec::with_capacity(DATA_OFFSET + data.len() * dtype.bytes());
    write_header(&mut out, dims, frames, &geometry.header, dtype);
    let bad = |i: usize| {
        let (f, v) = (i / per_frame, i % per_frame);
        let (z, y, x) = (v / (ny * nx), (v / nx) % ny, v % nx);
        let frame = if frames > 1 {
            format!(" of frame {f}")
        } else {
            String::new()
        };
        anyhow!(
            "value {} at voxel (z, y, x) = ({z}, {y}, {x}){frame} cannot be stored exactly as {}",
            data[i],
            match dtype {
                OutDtype::U8 => "uint8",
                OutDtype::I16 => "int16",
                OutDtype::F32 => "float32",
            }
        )
    };
    match dtype {
        OutDtype::U8 => {
            for (i, &v) in data.iter().enumerate() {
                let b = v as u8;
                if b as f32 != v {
                    return Err(bad(i));
                }
                out.push(b);
            }
        }
        OutDtype::I16 => {
            for (i, &v) in data.iter().enumerate() {
                let b = v as i16;
                if b as f32 != v {
                    return Err(bad(i));
                }
                out.extend_from_slice(&b.to_le_bytes());
            }
        }
        OutDtype::F32 => {
            for &v in data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    if !gzip {
        return Ok(out);
    }
    gzip_bytes(&out)
}

/// `data` as a gzip member (RFC 1952): the 10-byte header (no flags, mtime 0, XFL 4 for the
/// fastest level, OS 255 "unknown", so the same bytes every run), the raw deflate stream of
/// miniz_oxide at [`GZIP_LEVEL`], then CRC-32 and length (mod 2^32), little-endian.
///
/// Why not flate2's encoder: flate2's backend is chosen by cargo features across the whole
/// build, and the zip reader of PyTorch checkpoints (`pytorch-reader`) switches it to zlib-rs,
/// which writes other deflate bytes. So the stream is made here by miniz_oxide, the backend
/// flate2 used before, called exactly as flate2's `GzEncoder::write_all` then `finish` call it
/// (all of the input offered at each call, 32 KiB of output space, then `Finish` until the
/// stream ends): the bytes are those of earlier protokd versions (miniz_oxide's one-shot
/// `compress_to_vec` writes other bytes for inputs above about 50 KB).
fn gzip_bytes(data: &[u8]) -> Result<Vec<u8>> {
    use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
    use miniz_oxide::deflate::stream::deflate;
    use miniz_oxide::{MZFlush, MZStatus};
    /// flate2's output buffer.
    const CHUNK: usize = 32 * 1024;
    // Window bits -15: a raw deflate stream (no zlib header), as flate2 asks for gzip.
    let flags = create_comp_flags_from_zip_params(GZIP_LEVEL as i32, -15, 0);
    let mut compressor = CompressorOxide::new(flags);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
    let mut chunk = vec![0u8; CHUNK];
    let mut input = data;
    let failed = |e| anyhow!("gzip compression failed ({e:?})");
    while !input.is_empty() {
        let r = deflate(&mut compressor, input, &mut chunk, MZFlush::None);
        r.status.map_err(failed)?;
        out.extend_from_slice(&chunk[..r.bytes_written]);
        input = &input[r.bytes_consumed..];
    }
    loop {
        let r = deflate(&mut compressor, &[], &mut chunk, MZFlush::Finish);
        out.extend_from_slice(&chunk[..r.bytes_written]);
        if r.status.map_err(failed)? == MZStatus::StreamEnd {
            break;
        }
    }
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(out)
}

/// Appends the 352 bytes of a little-endian NIfTI-1 header (with an empty extension flag):
/// 3-D, or 4-D with `frames` along `dim[4]` when `frames > 1`.
fn write_header(
    out: &mut Vec<u8>,
    dims: [usize; 3],
    frames: usize,
    src: &NiftiHeader,
    dtype: OutDtype,
) {
    fn i16s(out: &mut Vec<u8>, v: i16) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn f32s(out: &mut Vec<u8>, v: f32) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let start = out.len();
    out.extend_from_slice(&348i32.to_le_bytes()); // sizeof_hdr
    out.extend_from_slice(&[0u8; 10]); // data_type
    out.extend_from_slice(&[0u8; 18]); // db_name
    out.extend_from_slice(&0i32.to_le_bytes()); // extents
    i16s(out, 0); // session_error
    out.push(0); // regular
    out.push(0); // dim_info
    let rank = if frames > 1 { 4 } else { 3 };
    let dim = [rank, dims[2], dims[1], dims[0], frames, 1, 1, 1];
    for d in dim {
        i16s(out, d as i16);
    }
    for _ in 0..3 {
        f32s(out, 0.0); // intent_p1..3
    }
    i16s(out, 0); // intent_code
    i16s(out, dtype.code());
    i16s(out, (dtype.bytes() * 8) as i16); // bitpix
    i16s(out, 0); // slice_start
    for p in src.pixdim {
        f32s(out, p);
    }
    f32s(out, DATA_OFFSET as f32); // vox_offset
    f32s(out, 1.0); // scl_slope
    f32s(out, 0.0); // scl_inter
    i16s(out, 0); // slice_end
    out.push(0); // slice_code
    out.push(src.xyzt_units);
    f32s(out, 0.0); // cal_max
    f32s(out, 0.0); // cal_min
    f32s(out, 0.0); // slice_duration
    f32s(out, 0.0); // toffset
    out.extend_from_slice(&0i32.to_le_bytes()); // glmax
    out.extend_from_slice(&0i32.to_le_bytes()); // glmin
    let mut descrip = [0u8; 80];
    descrip[..7].copy_from_slice(b"protokd");
    out.extend_from_slice(&descrip);
    out.extend_from_slice(&[0u8; 24]); // aux_file
    i16s(out, src.qform_code);
    i16s(out, src.sform_code);
    for q in [
        src.quatern_b,
        src.quatern_c,
        src.quatern_d,
        src.quatern_x,
        src.quatern_y,
        src.quatern_z,
    ] {
        f32s(out, q);
    }
    for row in [src.srow_x, src.srow_y, src.srow_z] {
        for v in row {
            f32s(out, v);
        }
    }
    out.extend_from_slice(&[0u8; 16]); // intent_name
    out.extend_from_slice(b"n+1\0");
    debug_assert_eq!(out.len() - start, HEADER_SIZE);
    out.extend_from_slice(&[0u8; 4]); // no extensions
}

// Verifies (every test in this file): R-DAT-1, R-CLI-4
#[cfg(test)]
mod tests {
    use super::*;

    /// A plain file is read as far as its header promises and no further: followed by an
    /// endless stream of zeros (and a claimed length of 2^62 bytes), it still decodes, with
    /// the data it holds; its hash covers every byte.
    #[test]
    fn plain_files_are_read_only_as_far_as_the_header_promises() {
        let geometry = Geometry {
            spacing: [1.0; 3],
            affine: Matrix4::identity(),
            header: NiftiHeader::default(),
        };
        let data: Vec<f32> = (0..60).map(|i| i as f32 * 0.5).collect();
        let volume = Volume::new([3, 4, 5], data.clone());
        let encode = |gzip| encode_image(&volume, &geometry, OutDtype::F32, gzip).unwrap();
        let bytes = encode(false);
        let endless = io::BufReader::new(bytes.as_slice().chain(io::repeat(0)));
        let (image, _) = decode_stream(endless, 1 << 62, "endless.nii").unwrap();
        assert_eq!(image.volume.data, data);
        let dir = std::env::temp_dir().join(format!("protokd-hashed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut long = bytes.clone();
        long.extend([7u8; 1000]);
        for (name, file) in [("a.nii", long), ("b.nii.gz", encode(true))] {
            let path = dir.join(name);
            std::fs::write(&path, &file).unwrap();
            let (image, hash) = read_image_hashed(&path).unwrap();
            assert_eq!(image.volume.data, data);
            assert_eq!(hash, crate::io::hash::sha256_hex(&file));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A 4-D float32 file: header dims and datatype, and the data bytes in `[frames, z, y, x]`
    /// order (checked with the `nifti` crate's header parser, independent of our reader);
    /// one frame gives exactly [`encode_image`]'s bytes.
    // Verifies: R-DAT-1
    #[test]
    fn four_d_files_have_the_right_header_and_bytes() {
        let dims = [3, 4, 5];
        let geometry = crate::data::phantom::geometry([5, 4, 3]);
        let data: Vec<f32> = (0..2 * 60).map(|i| i as f32 * 0.5 - 7.25).collect();
        let bytes = encode_frames(&data, dims, 2, &geometry, OutDtype::F32, false).unwrap();
        let h = NiftiHeader::from_reader(&bytes[..HEADER_SIZE]).unwrap();
        assert_eq!(h.dim, [4, 5, 4, 3, 2, 1, 1, 1]);
        assert_eq!((h.datatype, h.bitpix), (16, 32));
        assert_eq!(h.vox_offset, DATA_OFFSET as f32);
        assert_eq!(sform_affine(&h), sform_affine(&geometry.header));
        let le: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(&bytes[DATA_OFFSET..], &le[..]);
        // Our reader takes 3-D images only and says so.
        let e = decode_image(&bytes, Path::new("p.nii")).unwrap_err();
        assert!(e.to_string().contains("2 time points"), "{e}");
        // One frame: the 3-D file.
        let vol = Volume::new(dims, data[..60].to_vec());
        assert_eq!(
            encode_frames(&vol.data, dims, 1, &geometry, OutDtype::U8, true).ok(),
            None,
            "non-integers refused as uint8"
        );
        assert_eq!(
            encode_frames(&vol.data, dims, 1, &geometry, OutDtype::F32, true).unwrap(),
            encode_image(&vol, &geometry, OutDtype::F32, true).unwrap()
        );
        let e = encode_frames(&data, dims, 3, &geometry, OutDtype::F32, false).unwrap_err();
        assert!(e.to_string().contains("need 180 values, got 120"), "{e}");
    }
}
