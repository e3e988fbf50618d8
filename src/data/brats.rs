//! BraTS datasets on disk: finding the cases of a dataset folder, case list files, reading a
//! case's four modalities and segmentation with every check the data needs, and the label
//! conversion between a release's raw labels and the internal training labels (method page,
//! section 1).
//!
//! ## Layout and discovery rules ([`discover`])
//!
//! A dataset is a folder of case folders. A case folder `<id>/` holds files named after the
//! folder:
//!
//! | channel | BraTS 2018-2021 ([`Release::Brats2018`]) | BraTS 2023+ ([`Release::Brats2023`]) |
//! |---|---|---|
//! | 0 T1 | `<id>_t1.nii.gz` | `<id>-t1n.nii.gz` |
//! | 1 T2 | `<id>_t2.nii.gz` | `<id>-t2w.nii.gz` |
//! | 2 T1ce | `<id>_t1ce.nii.gz` | `<id>-t1c.nii.gz` |
//! | 3 FLAIR | `<id>_flair.nii.gz` | `<id>-t2f.nii.gz` |
//! | label | `<id>_seg.nii.gz` | `<id>-seg.nii.gz` |
//!
//! `.nii` is accepted in place of `.nii.gz` (both present for one file: an error, ambiguous).
//!
//! * Entries of the dataset folder whose name starts with `.` are ignored, and so are plain files
//!   at the top level (BraTS ships `name_mapping.csv` and `survival_data.csv` there).
//! * A folder holding at least one recognised file (any of the ten names above, either
//!   extension) is a case; its release is the naming it uses. Files of both namings in one
//!   folder: an error. Other files in a case folder are ignored.
//! * A top-level folder with no recognised file but with (non-hidden) sub-folders is a *group*,
//!   as the BraTS 2018 training release's `HGG/` and `LGG/`: each of its sub-folders must be a
//!   case (one level of grouping only). Case ids must be unique across groups.
//! * A folder that is neither is an error naming it and the file names looked for: a folder
//!   with no BraTS file is not silently skipped, since a case list naming it would otherwise
//!   fail later with a less helpful message.
//! * All cases of a dataset must use the same naming (an error names one case of each).
//! * Every case needs its four modalities (an error names the case and the file looked for);
//!   the segmentation is optional (inference).
//! * Cases are sorted by id (byte order of the folder name).
//!
//! ## Labels
//! Raw BraTS labels: 0 background, 1 NCR/NET, 2 ED, and ET as 4 (2018-2021) or 3 (2023+).
//! Internal training labels: `0 background, 1 ET, 2 NCR/NET, 3 ED`
//! ([`Release::raw_to_internal`], [`Release::internal_to_raw`]).

use crate::io::nifti::read_image;
use crate::volume::{Geometry, Image, Volume};
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Names of the four channels in messages, channel order.
const CHANNEL_NAMES: [&str; 4] = ["T1", "T2", "T1ce", "FLAIR"];

/// The largest difference, per affine element, between two images of one case that still counts
/// as the same geometry (mm, or mm per voxel for the linear part).
pub(crate) const AFFINE_TOLERANCE: f64 = 1e-4;

/// A BraTS release family: its file naming and raw label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Release {
    /// BraTS 2018-2021: `_t1 _t2 _t1ce _flair _seg`, ET raw label 4.
    Brats2018,
    /// BraTS 2023 and later: `-t1n -t2w -t1c -t2f -seg`, ET raw label 3.
    Brats2023,
}

impl Release {
    /// Both releases.
    pub const ALL: [Release; 2] = [Release::Brats2018, Release::Brats2023];

    /// File-name suffixes of the four modalities in channel order (T1, T2, T1ce, FLAIR), before
    /// the extension.
    pub fn modality_suffixes(self) -> [&'static str; 4] {
        match self {
            Release::Brats2018 => ["_t1", "_t2", "_t1ce", "_flair"],
            Release::Brats2023 => ["-t1n", "-t2w", "-t1c", "-t2f"],
        }
    }

    /// File-name suffix of the segmentation, before the extension.
    pub fn seg_suffix(self) -> &'static str {
        match self {
            Release::Brats2018 => "_seg",
            Release::Brats2023 => "-seg",
        }
    }

    /// The raw label of each internal label: `internal_to_raw_table()[internal]`.
    pub fn internal_to_raw_table(self) -> [u8; 4] {
        match self {
            Release::Brats2018 => [0, 4, 1, 2],
            Release::Brats2023 => [0, 3, 1, 2],
        }
    }

    /// The release's raw label set, ascending: `{0, 1, 2, 4}` or `{0, 1, 2, 3}`.
    pub fn label_set(self) -> [u8; 4] {
        match self {
            Release::Brats2018 => [0, 1, 2, 4],
            Release::Brats2023 => [0, 1, 2, 3],
        }
    }

    /// Raw label -> internal label (`0 bg, 1 ET, 2 NCR/NET, 3 ED`); `None` outside the
    /// release's label set.
    pub fn raw_to_internal(self, raw: u8) -> Option<u8> {
        self.internal_to_raw_table()
            .iter()
            .position(|&r| r == raw)
            .map(|i| i as u8)
    }

    /// Internal label -> raw label of this release; `None` for an internal label above 3.
    pub fn internal_to_raw(self, internal: u8) -> Option<u8> {
        self.internal_to_raw_table().get(internal as usize).copied()
    }

    /// A whole internal label map converted to this release's raw labels (for writing a
    /// prediction). An internal label above 3 is an error naming it and its position.
    pub fn labels_to_raw(self, internal: &[u8]) -> Result<Vec<u8>> {
        internal
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                self.internal_to_raw(l).ok_or_else(|| {
                    anyhow!("internal label {l} at flat index {i} is not one of 0, 1, 2, 3")
                })
            })
            .collect()
    }

    /// A whole raw label map converted to internal labels. A value outside the release's set is
    /// an error naming it and its position.
    pub fn labels_to_internal(self, raw: &[u8]) -> Result<Vec<u8>> {
        raw.iter()
            .enumerate()
            .map(|(i, &l)| {
                self.raw_to_internal(l).ok_or_else(|| {
                    anyhow!(
                        "raw label {l} at flat index {i} is not in the {self} label set {:?}",
                        self.label_set()
                    )
                })
            })
            .collect()
    }

    /// A short name for the CLI and messages: `2018` or `2023`.
    pub fn short_name(self) -> &'static str {
        match self {
            Release::Brats2018 => "2018",
            Release::Brats2023 => "2023",
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Release::Brats2018 => "BraTS 2018-2021",
            Release::Brats2023 => "BraTS 2023+",
        })
    }
}

/// How a case is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaseFormat {
    /// A case folder of NIfTI files, raw intensities (this module).
    Nifti,
    /// One `<id>.npy` array written by the authors' `preprocess.py`: already z-scored and
    /// cropped, internal labels, no affine (read by `crate::data::npy`).
    AuthorsNpy,
}

/// One case on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The case folder's name, e.g. `Brats18_TCIA13_634_1`.
    pub id: String,
    /// The case folder.
    pub dir: PathBuf,
    /// The four modality files in channel order: T1, T2, T1ce, FLAIR.
    pub modalities: [PathBuf; 4],
    /// The segmentation file, when present.
    pub seg: Option<PathBuf>,
    /// The naming (and label set) of the files.
    pub release: Release,
    /// How the case is stored.
    pub format: CaseFormat,
}

/// The cases of a dataset folder, sorted by id (or in a case list's order after
/// [`Dataset::select_list`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// The dataset folder.
    pub root: PathBuf,
    /// The naming all its cases use.
    pub release: Release,
    /// The cases.
    pub cases: Vec<Case>,
}

impl Dataset {
    /// The case with this id.
    pub fn case(&self, id: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// The cases named by `ids`, in that order. An unknown id is an error naming it and
    /// `source` (where the ids came from, e.g. the list file); a repeated id too.
    pub fn select(&self, ids: &[String], source: &str) -> Result<Dataset> {
        let mut seen = HashSet::new();
        let mut cases = Vec::with_capacity(ids.len());
        for id in ids {
            if !seen.insert(id.as_str()) {
                bail!("{source}: case `{id}` is listed twice");
            }
            let case = self.case(id).ok_or_else(|| {
                anyhow!(
                    "{source}: case `{id}` is not in the dataset {} ({} cases)",
                    self.root.display(),
                    self.cases.len()
                )
            })?;
            cases.push(case.clone());
        }
        Ok(Dataset {
            root: self.root.clone(),
            release: self.release,
            cases,
        })
    }

    /// The cases named in a case list file ([`read_case_list`]), in the list's order.
    pub fn select_list(&self, list: &Path) -> Result<Dataset> {
        let ids = read_case_list(list)?;
        self.select(&ids, &format!("case list {}", list.display()))
    }
}

/// Reads a case list: one case id a line; leading and trailing white space is trimmed, `#`
/// starts a comment that runs to the end of the line, blank lines are ignored. An id containing
/// white space, a repeated id, or a list with no id is an error naming the file (and the
/// line).
pub fn read_case_list(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read case list {}", path.display()))?;
    parse_case_list(&text, &path.display().to_string())
}

/// [`read_case_list`] on text; `source` names it in errors.
pub(crate) fn parse_case_list(text: &str, source: &str) -> Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    let mut first_line: std::collections::HashMap<String, usize> = Default::default();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if content.chars().any(char::is_whitespace) {
            bail!("case list {source}, line {line_no}: `{content}` is not one case id (it contains white space)");
        }
        if let Some(prev) = first_line.get(content) {
            bail!(
                "case list {source}: case `{content}` is listed twice (lines {prev} and {line_no})"
            );
        }
        first_line.insert(content.to_string(), line_no);
        ids.push(content.to_string());
    }
    if ids.is_empty() {
        bail!("case list {source} names no case");
    }
    Ok(ids)
}

/// The file `<dir>/<id><suffix>.nii.gz` or `.nii`, whichever exists; both is an error.
fn find_file(dir: &Path, id: &str, suffix: &str) -> Result<Option<PathBuf>> {
    let gz = dir.join(format!("{id}{suffix}.nii.gz"));
    let nii = dir.join(format!("{id}{suffix}.nii"));
    match (gz.is_file(), nii.is_file()) {
        (true, true) => bail!(
            "case folder {}: both {} and {} exist; keep one",
            dir.display(),
            file_name(&gz),
            file_name(&nii)
        ),
        (true, false) => Ok(Some(gz)),
        (false, true) => Ok(Some(nii)),
        (false, false) => Ok(None),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The files of one release found in `dir`: `[T1, T2, T1ce, FLAIR, seg]`.
fn release_files(dir: &Path, id: &str, release: Release) -> Result<[Option<PathBuf>; 5]> {
    let s = release.modality_suffixes();
    Ok([
        find_file(dir, id, s[0])?,
        find_file(dir, id, s[1])?,
        find_file(dir, id, s[2])?,
        find_file(dir, id, s[3])?,
        find_file(dir, id, release.seg_suffix())?,
    ])
}

fn expected_names(id: &str, release: Release) -> String {
    release
        .modality_suffixes()
        .iter()
        .chain(std::iter::once(&release.seg_suffix()))
        .map(|s| format!("{id}{s}.nii.gz"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a folder is.
enum Folder {
    Case(Case),
    /// No recognised file; holds sub-folders.
    Group(Vec<(String, PathBuf)>),
}

/// Non-hidden sub-folders of `dir` as `(name, path)`, sorted by name.
fn sub_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in
        fs::read_dir(dir).with_context(|| format!("cannot list folder {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list folder {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // A name that is not UTF-8 cannot be a BraTS case id; say so rather than skip.
            bail!(
                "folder {}: entry {:?} has a name that is not UTF-8",
                dir.display(),
                entry.file_name()
            );
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            out.push((name.to_string(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// The naming and files `[T1, T2, T1ce, FLAIR, seg]` of a folder holding files named after
/// `id`; `None` when it holds no recognised file. Files of both namings: an error.
fn naming(dir: &Path, id: &str) -> Result<Option<(Release, [Option<PathBuf>; 5])>> {
    let old = release_files(dir, id, Release::Brats2018)?;
    let new = release_files(dir, id, Release::Brats2023)?;
    let first = |f: &[Option<PathBuf>; 5]| f.iter().flatten().next().cloned();
    Ok(match (first(&old), first(&new)) {
        (Some(a), Some(b)) => bail!(
            "case folder {} holds files of both namings: {} ({}) and {} ({})",
            dir.display(),
            file_name(&a),
            Release::Brats2018,
            file_name(&b),
            Release::Brats2023
        ),
        (Some(_), None) => Some((Release::Brats2018, old)),
        (None, Some(_)) => Some((Release::Brats2023, new)),
        (None, None) => None,
    })
}

fn classify(dir: &Path, id: &str, allow_group: bool) -> Result<Folder> {
    let (release, files) = match naming(dir, id)? {
        Some(found) => found,
        None => {
            if allow_group {
                let subs = sub_folders(dir)?;
                if !subs.is_empty() {
                    return Ok(Folder::Group(subs));
                }
            }
            bail!(
                "folder {} is not a BraTS case folder: it holds none of {} ({}) nor {} ({}); \
                 `.nii` is accepted for `.nii.gz`",
                dir.display(),
                expected_names(id, Release::Brats2018),
                Release::Brats2018,
                expected_names(id, Release::Brats2023),
                Release::Brats2023
            )
        }
    };
    let [t1, t2, t1ce, flair, seg] = files;
    let mods = [t1, t2, t1ce, flair];
    for (c, m) in mods.iter().enumerate() {
        if m.is_none() {
            let suffix = release.modality_suffixes()[c];
            bail!(
                "case {id} ({release} naming): missing modality {}: looked for {id}{suffix}.nii.gz \
                 (or {id}{suffix}.nii) in {}",
                CHANNEL_NAMES[c],
                dir.display()
            );
        }
    }
    let [Some(t1), Some(t2), Some(t1ce), Some(flair)] = mods else {
        unreachable!("checked above")
    };
    Ok(Folder::Case(Case {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        modalities: [t1, t2, t1ce, flair],
        seg,
        release,
        format: CaseFormat::Nifti,
    }))
}

/// The case in `dir` when `dir` is itself a case folder (it holds a recognised file named after
/// the folder, e.g. `<dir>/<dir name>_t1.nii.gz`; checked as [`discover`] checks each case);
/// `None` when it holds no such file (it may be a dataset folder, see [`discover`]).
pub(crate) fn discover_case(dir: &Path) -> Result<Option<Case>> {
    if !dir.is_dir() {
        bail!("folder {} does not exist or is not a folder", dir.display());
    }
    let Some(id) = dir.file_name().and_then(|n| n.to_str()) else {
        bail!(
            "folder {}: its name is not UTF-8, so it cannot be a BraTS case id",
            dir.display()
        );
    };
    if naming(dir, id)?.is_none() {
        return Ok(None);
    }
    match classify(dir, id, false)? {
        Folder::Case(case) => Ok(Some(case)),
        Folder::Group(_) => unreachable!("groups are not allowed here"),
    }
}

/// Finds the cases of a dataset folder (rules in the module documentation).
pub fn discover(dataset: &Path) -> Result<Dataset> {
    if !dataset.is_dir() {
        bail!(
            "dataset folder {} does not exist or is not a folder",
            dataset.display()
        );
    }
    let mut cases: Vec<Case> = Vec::new();
    for (name, path) in sub_folders(dataset)? {
        match classify(&path, &name, true)? {
            Folder::Case(case) => cases.push(case),
            Folder::Group(subs) => {
                for (sub_name, sub_path) in subs {
                    match classify(&sub_path, &sub_name, false)? {
                        Folder::Case(case) => cases.push(case),
                        Folder::Group(_) => unreachable!("groups are not nested"),
                    }
                }
            }
        }
    }
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    for pair in cases.windows(2) {
        if pair[0].id == pair[1].id {
            bail!(
                "dataset {}: case id `{}` appears twice: {} and {}",
                dataset.display(),
                pair[0].id,
                pair[0].dir.display(),
                pair[1].dir.display()
            );
        }
    }
    let Some(first) = cases.first() else {
        bail!(
            "dataset folder {} holds no case folder (a case folder `<id>/` holds `<id>_t1.nii.gz` ... \
             or `<id>-t1n.nii.gz` ...)",
            dataset.display()
        );
    };
    let release = first.release;
    if let Some(other) = cases.iter().find(|c| c.release != release) {
        bail!(
            "dataset {} mixes namings: case {} uses {} names, case {} uses {} names",
            dataset.display(),
            first.id,
            release,
            other.id,
            other.release
        );
    }
    Ok(Dataset {
        root: dataset.to_path_buf(),
        release,
        cases,
    })
}

/// A case in memory, checked (see [`assemble_case`]).
#[derive(Clone, Debug)]
pub struct LoadedCase {
    /// Where it came from.
    pub case: Case,
    /// Raw intensities of the four modalities, channel order (T1, T2, T1ce, FLAIR), all of
    /// the same dims, `[nz, ny, nx]`.
    pub images: [Volume; 4],
    /// The T1 image's geometry (the four and the seg agree with it); outputs are written with
    /// it so that they overlay the input.
    pub geometry: Geometry,
    /// Internal labels (`0 bg, 1 ET, 2 NCR/NET, 3 ED`), one per voxel in the images' order,
    /// when the case has a segmentation.
    pub labels: Option<Vec<u8>>,
}

impl LoadedCase {
    /// `[nz, ny, nx]` of the images (and labels).
    pub fn dims(&self) -> [usize; 3] {
        self.images[0].dims
    }
}

/// Reads a case's four modalities and segmentation (five files read in parallel with rayon)
/// and checks them with [`assemble_case`]. Errors name the case and the file; when several
/// files are bad, the first in channel order (seg last) is reported.
pub fn load_case(case: &Case) -> Result<LoadedCase> {
    let mut paths: Vec<&Path> = case.modalities.iter().map(PathBuf::as_path).collect();
    if let Some(seg) = &case.seg {
        paths.push(seg);
    }
    let mut read: Vec<Result<Image>> = paths
        .par_iter()
        .map(|p| {
            // read_image's errors name the file and the problem.
            read_image(p).with_context(|| format!("case {}", case.id))
        })
        .collect();
    // Report the first error in channel order, whichever thread finished first.
    if let Some(pos) = read.iter().position(Result::is_err) {
        return Err(read.swap_remove(pos).unwrap_err());
    }
    let mut images = read.into_iter().map(Result::unwrap);
    let mods = [
        images.next().unwrap(),
        images.next().unwrap(),
        images.next().unwrap(),
        images.next().unwrap(),
    ];
    let seg = images.next();
    assemble_case(case, mods, seg)
}

/// Voxel `(z, y, x)` of flat index `i` in a volume of `dims`.
pub(crate) fn voxel_of(dims: [usize; 3], i: usize) -> (usize, usize, usize) {
    let x = i % dims[2];
    let y = (i / dims[2]) % dims[1];
    let z = i / (dims[2] * dims[1]);
    (z, y, x)
}

/// The element with the largest difference between two affines, `(row, col, a, b)`, if it
/// exceeds [`AFFINE_TOLERANCE`] (or either is not finite).
pub(crate) fn affine_mismatch(a: &Geometry, b: &Geometry) -> Option<(usize, usize, f64, f64)> {
    let mut worst: Option<(usize, usize, f64, f64)> = None;
    let mut worst_diff = AFFINE_TOLERANCE;
    for r in 0..4 {
        for c in 0..4 {
            let (va, vb) = (a.affine[(r, c)], b.affine[(r, c)]);
            let d = (va - vb).abs();
            if d > worst_diff || d.is_nan() {
                worst_diff = if d.is_nan() { f64::INFINITY } else { d };
                worst = Some((r, c, va, vb));
            }
        }
    }
    worst
}

/// The first non-finite value of an image as `(flat index, value)`.
fn first_non_finite(v: &Volume) -> Option<(usize, f32)> {
    v.data
        .iter()
        .copied()
        .enumerate()
        .find(|(_, x)| !x.is_finite())
}

/// Checks an image's values: every value finite, at least one above 0.
fn check_intensities(case: &Case, path: &Path, v: &Volume) -> Result<()> {
    if let Some((i, val)) = first_non_finite(v) {
        bail!(
            "case {}: {} holds {} at voxel (z, y, x) = {:?}; images must be finite",
            case.id,
            path.display(),
            val,
            voxel_of(v.dims, i)
        );
    }
    if !v.data.iter().any(|&x| x > 0.0) {
        bail!(
            "case {}: {} has no voxel above 0 (the z-score normalisation over voxels > 0 would \
             divide by zero); is it an empty or fully negative image?",
            case.id,
            path.display()
        );
    }
    Ok(())
}

/// Raw label values (f32 after scaling) -> internal labels; the first voxel whose value is not
/// an integer of the release's label set is an error naming the file, the value, the voxel and
/// how many voxels are bad.
fn convert_seg(case: &Case, path: &Path, v: &Volume) -> Result<Vec<u8>> {
    let release = case.release;
    // Raw value -> internal label, BAD outside the set (exact integers 0..=255 only).
    const BAD: u8 = u8::MAX;
    let mut table = [BAD; 256];
    for raw in release.label_set() {
        table[raw as usize] = release.raw_to_internal(raw).unwrap_or(BAD);
    }
    // `x as u8` saturates (NaN -> 0), so the round trip holds exactly for the integers 0..=255.
    let to_internal = |x: f32| -> u8 {
        let r = x as u8;
        if r as f32 == x {
            table[r as usize]
        } else {
            BAD
        }
    };
    let out: Vec<u8> = v.data.iter().map(|&x| to_internal(x)).collect();
    if let Some(i) = out.iter().position(|&l| l == BAD) {
        let bad = out.iter().filter(|&&l| l == BAD).count();
        // BraTS 2024 files keep the 2023 names but add a label 4 (GLI/MET resection cavity,
        // PED oedema): say so rather than leave the reader guessing.
        let hint = if release == Release::Brats2023 && v.data[i] == 4.0 {
            "; a 4 in a file of 2023+ naming is a BraTS 2024 label (GLI/MET resection cavity or \
             PED oedema), which training and evaluation do not take (`protokd score --labels \
             2024-gli|2024-ped` scores such maps)"
        } else {
            ""
        };
        bail!(
            "case {}: {} has label value {} at voxel (z, y, x) = {:?} ({} voxel(s) in all), \
             outside the {} label set {:?}{hint}",
            case.id,
            path.display(),
            v.data[i],
            voxel_of(v.dims, i),
            bad,
            release,
            release.label_set()
        );
    }
    Ok(out)
}

/// Checks a case read into memory and converts its labels: the four modalities (channel order)
/// and the seg must have the T1's dims and affine (within [`AFFINE_TOLERANCE`] per element);
/// every intensity finite and at least one above 0 per modality; seg values integers of the
/// release's label set. `seg = None` gives a case without labels (even if `case.seg` names a
/// file). Errors name the case, the file(s) and the problem. Checks run in the
/// order: modalities in channel order (dims, affine, values), then the seg (dims, affine,
/// labels), and the first failure is reported.
pub(crate) fn assemble_case(
    case: &Case,
    images: [Image; 4],
    seg: Option<Image>,
) -> Result<LoadedCase> {
    let reference = &images[0];
    let ref_path = &case.modalities[0];
    let check_geometry = |path: &Path, img: &Image| -> Result<()> {
        if img.volume.dims != reference.volume.dims {
            bail!(
                "case {}: {} has dims (z, y, x) {:?} but {} has {:?}; all files of a case must \
                 have the same shape",
                case.id,
                path.display(),
                img.volume.dims,
                ref_path.display(),
                reference.volume.dims
            );
        }
        if let Some((r, c, a, b)) = affine_mismatch(&reference.geometry, &img.geometry) {
            bail!(
                "case {}: the affine of {} differs from that of {}: element ({r}, {c}) is {b} vs \
                 {a} (tolerance {AFFINE_TOLERANCE} mm); all files of a case must lie on the \
                 same voxel grid",
                case.id,
                path.display(),
                ref_path.display()
            );
        }
        Ok(())
    };
    for (c, img) in images.iter().enumerate() {
        let path = &case.modalities[c];
        check_geometry(path, img)?;
    }
    // Value scans of the four images in parallel; the first failure in channel order wins.
    let checks: Vec<Result<()>> = (0..4)
        .into_par_iter()
        .map(|c| check_intensities(case, &case.modalities[c], &images[c].volume))
        .collect();
    for r in checks {
        r?;
    }
    let labels = match (&seg, &case.seg) {
        (Some(img), Some(path)) => {
            check_geometry(path, img)?;
            Some(convert_seg(case, path, &img.volume)?)
        }
        (None, _) => None,
        (Some(img), None) => {
            // An in-memory seg for a case discovered without one: check it all the same.
            let path = case
                .dir
                .join(format!("{}{}", case.id, case.release.seg_suffix()));
            check_geometry(&path, img)?;
            Some(convert_seg(case, &path, &img.volume)?)
        }
    };
    let [t1, t2, t1ce, flair] = images;
    let geometry = t1.geometry;
    Ok(LoadedCase {
        case: case.clone(),
        images: [t1.volume, t2.volume, t1ce.volume, flair.volume],
        geometry,
        labels,
    })
}

// Verifies (every test in this file): R-DAT-2, R-MTH-1
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_tables_round_trip() {
        for r in Release::ALL {
            for internal in 0..4u8 {
                let raw = r.internal_to_raw(internal).unwrap();
                assert_eq!(r.raw_to_internal(raw), Some(internal));
                assert!(r.label_set().contains(&raw));
            }
            assert_eq!(r.internal_to_raw(4), None);
        }
        // The method page's table.
        let r = Release::Brats2018;
        assert_eq!(
            [0, 1, 2, 4].map(|x| r.raw_to_internal(x).unwrap()),
            [0, 2, 3, 1]
        );
        assert_eq!(r.raw_to_internal(3), None);
        let r = Release::Brats2023;
        assert_eq!(
            [0, 1, 2, 3].map(|x| r.raw_to_internal(x).unwrap()),
            [0, 2, 3, 1]
        );
        assert_eq!(r.raw_to_internal(4), None);
        let raw = vec![0, 4, 1, 2, 2, 0];
        let internal = Release::Brats2018.labels_to_internal(&raw).unwrap();
        assert_eq!(internal, vec![0, 1, 2, 3, 3, 0]);
        assert_eq!(Release::Brats2018.labels_to_raw(&internal).unwrap(), raw);
        assert_eq!(
            Release::Brats2023.labels_to_raw(&internal).unwrap(),
            vec![0, 3, 1, 2, 2, 0]
        );
        let e = Release::Brats2023.labels_to_internal(&[0, 4]).unwrap_err();
        assert!(e.to_string().contains("raw label 4 at flat index 1"), "{e}");
        assert!(Release::Brats2018.labels_to_raw(&[5]).is_err());
    }

    // Verifies: R-CLI-1
    #[test]
    fn a_2024_label_in_a_2023_named_seg_is_refused_with_a_hint() {
        let case = Case {
            id: "BraTS-GLI-02000-100".into(),
            dir: PathBuf::from("d"),
            modalities: ["a", "b", "c", "d"].map(PathBuf::from),
            seg: Some(PathBuf::from("d/s.nii.gz")),
            release: Release::Brats2023,
            format: CaseFormat::Nifti,
        };
        let v = Volume::new([1, 1, 3], vec![0.0, 3.0, 4.0]);
        let e = convert_seg(&case, Path::new("d/s.nii.gz"), &v)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("label value 4") && e.contains("--labels 2024-gli"),
            "{e}"
        );
        let v = Volume::new([1, 1, 2], vec![0.0, 5.0]);
        let e = convert_seg(&case, Path::new("d/s.nii.gz"), &v)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("2024"), "{e}");
    }

    #[test]
    fn case_list_parsing() {
        let ids = parse_case_list("a\n\n# comment\n  b  # trailing\r\nc\n", "x").unwrap();
        assert_eq!(ids, ["a", "b", "c"]);
        let e = parse_case_list("a\nb\na\n", "l.txt")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`a` is listed twice (lines 1 and 3)") && e.contains("l.txt"),
            "{e}"
        );
        let e = parse_case_list("a b\n", "l.txt").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(parse_case_list("# nothing\n\n", "l.txt").is_err());
    }

    #[test]
    fn voxel_index() {
        let dims = [3, 4, 5];
        let v = Volume::new(dims, vec![0.0; 60]);
        assert_eq!(voxel_of(dims, v.index(2, 1, 3)), (2, 1, 3));
        assert_eq!(voxel_of(dims, 0), (0, 0, 0));
        assert_eq!(voxel_of(dims, 59), (2, 3, 4));
    }
}
