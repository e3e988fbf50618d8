//! `protokd segment`: a trained model applied to new cases (method page, section 7).
//!
//! # Inputs (`--input`, repeated or comma-separated)
//! * **A case folder** (`<id>/<id>_t1.nii.gz ...` or the 2023 naming, found with
//!   [`crate::data::brats::discover_case`]): the model's modalities are read from it (all four
//!   must exist, as for any case); `--out` is the segmentation file.
//! * **A dataset folder** (a folder of case folders, [`crate::data::brats::discover`]): every case is
//!   segmented; `--out` is a folder that receives `<id>_seg.nii.gz` (2018-2021 naming) or
//!   `<id>-seg.nii.gz` (2023+), and `--probabilities` / `--png`, when given, are folders too
//!   (`<id>_probabilities.nii.gz`, `<id>_overlay.png`).
//! * **The authors' `.npy` arrays** ([`crate::data::npy`]): one `<id>.npy` file (`--out` is the
//!   segmentation file) or a folder of them (a dataset, as above). The images are used as
//!   stored (already z-scored and cropped); the segmentation lies on the array's grid, written
//!   with 1 mm isotropic voxels and the identity affine, since the arrays hold none (said once,
//!   and recorded as `geometry` in the provenance record).
//! * **NIfTI files**, one per model input channel, in the model's modality order (e.g.
//!   `--input a_t1ce.nii.gz` for a T1ce student, or four files T1, T2, T1ce, FLAIR for a
//!   teacher). They must share dims and affine. A file named with a BraTS suffix (`_t1ce`,
//!   `-t1c`, ...) must be the modality the model expects at that position. A comma always
//!   separates paths, so a path containing a comma cannot be given.
//!
//! # Outputs
//! * The segmentation: uint8 NIfTI with the input's geometry (the first input's header), raw
//!   labels of the input's release: 0/1/2/4 (2018-2021) or 0/1/2/3 (2023+). For bare files the
//!   release is `--release`, else the one their names use, else 2018.
//! * `--probabilities`: the averaged softmax probabilities as a 4-D float32 NIfTI, nibabel shape
//!   `(x, y, z, class)`, classes in internal order (0 background, 1 ET, 2 NCR/NET, 3 ED).
//! * `--png`: the axial slice with the most tumour, grey (the model's first input modality, raw
//!   intensities) with the labels over it ([`crate::report::overlay::write_overlay_png`]).
//!
//! * Provenance, one JSON file per run: `<out stem>.provenance.json` beside a single
//!   segmentation (`seg.nii.gz` -> `seg.provenance.json`), `provenance.json` in the output
//!   folder of a dataset run. It records the protokd version, the model (path, SHA-256,
//!   modalities), the window, the device, and per case the input files read with their
//!   SHA-256 and the files written.
//!
//! Every output that exists is refused unless `--force`, and all outputs of the run are
//! checked before any computation; files are written atomically.

use crate::data::brats::{self, affine_mismatch, Case, CaseFormat, LoadedCase, Release};
use crate::data::dataset::{self, check_headers, load_case};
use crate::data::npy::{self, NO_AFFINE};
use crate::engine::{Compute, Net};
use crate::infer::sliding_window::{predict, prepare_input, segment_case, Prediction, Window};
use crate::io::checkpoint;
use crate::io::console::say;
use crate::io::files::{check_new, check_not_input, write_json};
use crate::io::hash::sha256_file;
use crate::io::nifti::{common_dims, read_image, write_frames, write_image, OutDtype};
use crate::modality::{Modalities, NAMES};
use crate::volume::{Geometry, Image, Volume};
use anyhow::{bail, ensure, Context, Result};
use protokd_reference::state::VNetState;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `protokd segment` runs (the command line's options, checked and opened).
pub struct SegmentOptions {
    /// Where the model runs.
    pub compute: Compute,
    /// The sliding window.
    pub window: Window,
    /// The label set asked for (`--release`), if any.
    pub release: Option<Release>,
    /// Model checkpoint (protokd- or PyTorch-written safetensors).
    pub model: PathBuf,
    /// The model's input modalities as given (`--modality`), checked against the checkpoint.
    pub modality: Option<String>,
    /// A case folder, a dataset folder, or NIfTI files in the model's modality order.
    pub input: Vec<PathBuf>,
    /// The segmentation file; a folder when `input` is a dataset.
    pub out: PathBuf,
    /// Where to write the class probabilities, if asked; a folder when `input` is a dataset.
    pub probabilities: Option<PathBuf>,
    /// Where to draw the overlay PNG, if asked; a folder when `input` is a dataset.
    pub png: Option<PathBuf>,
    /// Replace outputs that exist.
    pub force: bool,
}

/// A loaded model and where it came from.
#[derive(Clone, Debug)]
pub struct Model {
    /// The checkpoint file.
    pub path: PathBuf,
    /// SHA-256 of the checkpoint file.
    pub sha256: String,
    /// The network.
    pub state: VNetState,
    /// Its input modalities, in channel order.
    pub modalities: Modalities,
}

impl Model {
    /// Loads a checkpoint (its values validated, [`checkpoint::load`]), refuses one whose
    /// classes are not BraTS's four ([`checkpoint::check_brats_classes`]) and settles its
    /// modalities with `--modality` ([`checkpoint::model_modalities`]).
    pub fn load(path: &Path, modality: Option<&str>) -> Result<Model> {
        let given = modality
            .map(Modalities::parse)
            .transpose()
            .context("--modality")?;
        let (ckpt, sha256) = checkpoint::load_hashed(path)?;
        checkpoint::check_brats_classes(&ckpt, path, "segment and evaluate")?;
        let modalities = checkpoint::model_modalities(&ckpt, given.as_ref(), path)?;
        Ok(Model {
            path: path.to_path_buf(),
            sha256,
            state: ckpt.state,
            modalities,
        })
    }

    /// Prints the lines that open a run: the model ([`Model::describe`]), the device and the
    /// window, then `cases` (for example "3 case(s)").
    pub(crate) fn announce(&self, compute: &Compute, window: &Window, cases: &str) -> Result<()> {
        say(&self.describe())?;
        say(&format!("device: {}", compute.describe()))?;
        say(&format!(
            "window: patch {:?}, stride {:?} (D, H, W); {cases}",
            window.patch, window.stride
        ))
    }

    /// One line for the log: protokd's version, the model's path, SHA-256, modalities, filters.
    pub fn describe(&self) -> String {
        format!(
            "protokd {}: model {} (sha256 {}): {} channel(s) {}, n_filters {}, {} classes",
            env!("CARGO_PKG_VERSION"),
            self.path.display(),
            self.sha256,
            self.state.config.in_channels,
            self.modalities,
            self.state.config.n_filters,
            self.state.config.n_classes
        )
    }
}

/// Writes internal labels as a uint8 NIfTI of `release`'s raw labels with `geometry`; returns
/// the number of voxels of each raw label, in the release's label-set order.
pub(crate) fn write_segmentation(
    path: &Path,
    labels_internal: &[u8],
    dims: [usize; 3],
    geometry: &Geometry,
    release: Release,
) -> Result<[(u8, usize); 4]> {
    let raw = release
        .labels_to_raw(labels_internal)
        .with_context(|| format!("segmentation {}", path.display()))?;
    let volume = Volume::new(dims, raw.iter().map(|&v| f32::from(v)).collect());
    write_image(path, &volume, geometry, OutDtype::U8)?;
    Ok(release
        .label_set()
        .map(|l| (l, raw.iter().filter(|&&v| v == l).count())))
}

/// What one job reads.
enum Source {
    Case(Case),
    /// Files in the model's channel order, and their release.
    Files(Vec<PathBuf>, Release),
}

/// The files one job writes.
struct Outputs {
    seg: PathBuf,
    probabilities: Option<PathBuf>,
    png: Option<PathBuf>,
}

impl Outputs {
    /// The paths given, the segmentation first.
    fn paths(&self) -> Vec<&PathBuf> {
        [
            Some(&self.seg),
            self.probabilities.as_ref(),
            self.png.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl SegmentOptions {
    /// The outputs as given: files, or folders when the input is a dataset.
    fn outputs(&self) -> Outputs {
        Outputs {
            seg: self.out.clone(),
            probabilities: self.probabilities.clone(),
            png: self.png.clone(),
        }
    }
}

struct Job {
    id: String,
    source: Source,
    outputs: Outputs,
}

/// Whether `path` names an `.npy` file (an authors' array).
fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "npy")
}

/// `paths` without repeats, in their first order (the five channels of an `.npy` case are one
/// file).
fn unique(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    paths
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// A file's stem without `.nii.gz` / `.nii`.
fn nifti_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .map(str::to_string)
}

/// The release and channel a file name says, by its BraTS suffix (`x_t1ce.nii.gz` ->
/// 2018, T1ce).
fn named_modality(path: &Path) -> Option<(Release, usize)> {
    let stem = nifti_stem(path)?;
    Release::ALL.into_iter().find_map(|r| {
        r.modality_suffixes()
            .iter()
            .position(|s| stem.ends_with(s))
            .map(|c| (r, c))
    })
}

/// Checks bare input files against the model's modalities and decides their release.
fn files_release(files: &[PathBuf], model: &Model, given: Option<Release>) -> Result<Release> {
    let chans = model.modalities.channels();
    ensure!(
        files.len() == chans.len(),
        "model {} takes {} channel(s) ({}) but {} input file(s) were given; give one NIfTI \
         file per channel, in that order",
        model.path.display(),
        chans.len(),
        model.modalities,
        files.len()
    );
    let mut named: Option<(Release, &Path)> = None;
    for (i, (f, &want)) in files.iter().zip(chans).enumerate() {
        ensure!(
            f.is_file(),
            "input {} does not exist or is not a file",
            f.display()
        );
        ensure!(
            nifti_stem(f).is_some(),
            "input {}: a NIfTI file name must end in .nii or .nii.gz",
            f.display()
        );
        if let Some((r, c)) = named_modality(f) {
            ensure!(
                c == want,
                "input {} ({}) is named as {} but the model's input {} is {}; give the files \
                 in the model's modality order ({})",
                i + 1,
                f.display(),
                NAMES[c],
                i + 1,
                NAMES[want],
                model.modalities
            );
            if let Some((r0, f0)) = named {
                ensure!(
                    r0 == r,
                    "inputs {} and {} use different BraTS namings ({r0} and {r})",
                    f0.display(),
                    f.display()
                );
            }
            named = Some((r, f));
        }
    }
    match (given, named) {
        (Some(g), Some((r, f))) if g != r => bail!(
            "--release {} disagrees with the input {}, named as {r}",
            g.short_name(),
            f.display()
        ),
        (Some(g), _) => Ok(g),
        (None, Some((r, _))) => Ok(r),
        (None, None) => Ok(Release::Brats2018),
    }
}

/// Checks that an output path is new (unless `force`), that its folder exists and that its
/// name ends in one of `endings`.
fn check_output(path: &Path, what: &str, endings: &[&str], force: bool) -> Result<()> {
    let name = path.to_string_lossy();
    ensure!(
        endings.iter().any(|e| name.ends_with(e)),
        "{what} {}: the name must end in {}",
        path.display(),
        endings.join(" or ")
    );
    ensure!(
        !path.is_dir(),
        "{what} {} is a folder; give a file name",
        path.display()
    );
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent {
        ensure!(
            p.is_dir(),
            "{what} {}: the folder {} does not exist",
            path.display(),
            p.display()
        );
    }
    check_new(path, what, force)
}

const SEG_ENDINGS: [&str; 2] = [".nii.gz", ".nii"];

/// The jobs of a run, every output checked (none written yet).
struct Plan {
    jobs: Vec<Job>,
    /// `--input` is a dataset: `--out`, `--probabilities` and `--png` are folders.
    dataset: bool,
}

impl Plan {
    fn new(opts: &SegmentOptions, model: &Model) -> Result<Plan> {
        let single = |id: String, source: Source| Job {
            id,
            source,
            outputs: opts.outputs(),
        };
        let case_plan = |case: Case, at: &Path| -> Result<Plan> {
            check_release(opts.release, case.release, at)?;
            Ok(Plan {
                jobs: vec![single(case.id.clone(), Source::Case(case))],
                dataset: false,
            })
        };
        let plan = match &opts.input[..] {
            [file] if is_npy(file) => case_plan(npy::case_of_file(file)?, file)?,
            [dir] if dir.is_dir() => match brats::discover_case(dir)? {
                Some(case) => case_plan(case, dir)?,
                // A folder of case folders or of the authors' `.npy` arrays.
                None => {
                    let dataset = dataset::discover(dir)?;
                    check_release(opts.release, dataset.release, dir)?;
                    Plan {
                        jobs: dataset
                            .cases
                            .into_iter()
                            .map(|c| dataset_job(opts, c))
                            .collect(),
                        dataset: true,
                    }
                }
            },
            inputs => {
                if let Some(f) = inputs.iter().find(|p| is_npy(p)) {
                    bail!(
                        "--input {} is an .npy array; give one .npy file or one folder of them \
                         alone",
                        f.display()
                    );
                }
                if let Some(d) = inputs.iter().find(|p| p.is_dir()) {
                    bail!(
                        "--input {} is a folder; give one case or dataset folder alone, or \
                         NIfTI files only",
                        d.display()
                    );
                }
                let r = files_release(inputs, model, opts.release)?;
                let id = nifti_stem(&inputs[0]).unwrap_or_default();
                Plan {
                    jobs: vec![single(id, Source::Files(inputs.to_vec(), r))],
                    dataset: false,
                }
            }
        };
        plan.check(opts.force)?;
        // Every input's header, before anything is announced or computed.
        for job in &plan.jobs {
            match &job.source {
                Source::Case(c) => check_headers(std::slice::from_ref(c))?,
                Source::Files(files, _) => {
                    common_dims(files)?;
                }
            }
        }
        Ok(plan)
    }

    /// Where the run's provenance record goes (see the module docs).
    fn provenance_path(&self, out: &Path) -> PathBuf {
        if self.dataset {
            return out.join("provenance.json");
        }
        let name = out
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().to_string());
        let stem = nifti_stem(out).unwrap_or(name);
        out.with_file_name(format!("{stem}.provenance.json"))
    }

    /// Every output new (unless `force`), named as its kind needs, distinct from the others
    /// and from every input; output folders of a dataset run are folders or absent.
    fn check(&self, force: bool) -> Result<()> {
        let inputs: Vec<PathBuf> = self.jobs.iter().flat_map(|j| j.source.paths()).collect();
        let mut seen = std::collections::HashSet::new();
        for job in &self.jobs {
            let o = &job.outputs;
            let outputs = [
                (Some(&o.seg), "segmentation", &SEG_ENDINGS[..]),
                (o.probabilities.as_ref(), "probabilities", &SEG_ENDINGS[..]),
                (o.png.as_ref(), "overlay", &[".png"][..]),
            ];
            for (path, what, endings) in outputs {
                let Some(path) = path else { continue };
                let given: Vec<(&str, &Path)> = inputs.iter().map(|p| ("--input", &**p)).collect();
                check_not_input(path, what, &given)?;
                if self.dataset {
                    // Names are ours; the folder is created before writing.
                    let dir = path.parent().unwrap_or(Path::new("."));
                    ensure!(
                        !dir.exists() || dir.is_dir(),
                        "{what} folder {} exists and is not a folder; with a dataset --input, \
                         --out, --probabilities and --png are folders",
                        dir.display()
                    );
                    check_new(path, what, force)?;
                } else {
                    check_output(path, what, endings, force)?;
                }
                ensure!(
                    seen.insert(path.clone()),
                    "{} is named as two outputs; give each output its own path",
                    path.display()
                );
                ensure!(
                    !inputs.contains(path),
                    "output {} is one of the inputs; it would be overwritten",
                    path.display()
                );
            }
        }
        Ok(())
    }
}

/// The job of one case of a dataset: outputs named after the case in the output folders.
fn dataset_job(opts: &SegmentOptions, case: Case) -> Job {
    let id = case.id.clone();
    let outputs = Outputs {
        seg: opts
            .out
            .join(format!("{id}{}.nii.gz", case.release.seg_suffix())),
        probabilities: opts
            .probabilities
            .as_ref()
            .map(|d| d.join(format!("{id}_probabilities.nii.gz"))),
        png: opts
            .png
            .as_ref()
            .map(|d| d.join(format!("{id}_overlay.png"))),
    };
    Job {
        id,
        source: Source::Case(case),
        outputs,
    }
}

fn check_release(given: Option<Release>, found: Release, dir: &Path) -> Result<()> {
    if let Some(g) = given {
        ensure!(
            g == found,
            "--release {} disagrees with {}, which uses {found} naming",
            g.short_name(),
            dir.display()
        );
    }
    Ok(())
}

impl Source {
    /// The input files.
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Source::Case(c) => unique(c.modalities.iter().cloned().chain(c.seg.clone()).collect()),
            Source::Files(f, _) => f.clone(),
        }
    }

    /// The files a model with input `channels` reads.
    fn read_paths(&self, channels: &[usize]) -> Vec<PathBuf> {
        match self {
            Source::Case(c) => unique(
                channels
                    .iter()
                    .map(|&ch| c.modalities[ch].clone())
                    .collect(),
            ),
            Source::Files(f, _) => f.clone(),
        }
    }

    /// Whether the input is an authors' `.npy` case.
    fn is_npy(&self) -> bool {
        matches!(self, Source::Case(c) if c.format == CaseFormat::AuthorsNpy)
    }
}

/// A job's input read and segmented.
struct Segmented {
    prediction: Prediction,
    /// The model's first input modality, raw (for the overlay).
    grey: Volume,
    geometry: Geometry,
    release: Release,
}

/// Reads bare files (one per channel) and checks that they lie on one grid.
fn read_files(files: &[PathBuf]) -> Result<Vec<Image>> {
    let images: Vec<Image> = files.iter().map(|f| read_image(f)).collect::<Result<_>>()?;
    for (f, img) in files.iter().zip(&images).skip(1) {
        ensure!(
            img.volume.dims == images[0].volume.dims,
            "input {} has dims (z, y, x) {:?} but {} has {:?}; the inputs must lie on one grid",
            f.display(),
            img.volume.dims,
            files[0].display(),
            images[0].volume.dims
        );
        if let Some((r, c, a, b)) = affine_mismatch(&images[0].geometry, &img.geometry) {
            bail!(
                "the affine of input {} differs from that of {} at element ({r}, {c}): {b} vs \
                 {a} (tolerance {} mm); the inputs must lie on one grid",
                f.display(),
                files[0].display(),
                brats::AFFINE_TOLERANCE
            );
        }
    }
    Ok(images)
}

fn run_job(job: &Job, model: &Model, net: &Net, window: &Window) -> Result<Segmented> {
    let chans = model.modalities.channels();
    match &job.source {
        Source::Case(case) => {
            let loaded: LoadedCase = load_case(case)?;
            let prediction = segment_case(net, &loaded, chans, window)?;
            let LoadedCase {
                images, geometry, ..
            } = loaded;
            let grey = images.into_iter().nth(chans[0]).expect("channel in 0..4");
            Ok(Segmented {
                prediction,
                grey,
                geometry,
                release: case.release,
            })
        }
        Source::Files(files, release) => {
            let mut images = read_files(files)?;
            let vols: Vec<&Volume> = images.iter().map(|i| &i.volume).collect();
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let input = prepare_input(&vols)
                .with_context(|| format!("inputs in order: {}", names.join(", ")))?;
            let dims = images[0].volume.dims;
            let prediction = predict(net, &input, dims, window)?;
            let first = images.swap_remove(0);
            Ok(Segmented {
                prediction,
                grey: first.volume,
                geometry: first.geometry,
                release: *release,
            })
        }
    }
}

/// `protokd segment`: every output is checked before any computation; then each job is
/// segmented, its files written and its provenance recorded; the record is written last.
pub fn run(opts: &SegmentOptions) -> Result<()> {
    let SegmentOptions {
        compute, window, ..
    } = opts;
    let model = Model::load(&opts.model, opts.modality.as_deref())?;
    let plan = Plan::new(opts, &model)?;
    let provenance_path = plan.provenance_path(&opts.out);
    check_new(&provenance_path, "provenance record", opts.force)?;
    let net = Net::new(compute, &model.state)?;
    let total = plan.jobs.len();
    model.announce(compute, window, &format!("{total} case(s)"))?;
    let npy_input = plan.jobs.iter().any(|j| j.source.is_npy());
    if npy_input {
        say(NO_AFFINE)?;
    }
    if plan.dataset {
        for dir in opts.outputs().paths() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
    }
    let mut cases = Vec::with_capacity(total);
    for (n, job) in plan.jobs.iter().enumerate() {
        cases.push(segment_job(job, (n + 1, total), &model, &net, window)?);
    }
    let mut record = json!({
        "tool": format!("protokd {}", env!("CARGO_PKG_VERSION")),
        "command": "segment",
        "model": {
            "path": model.path.display().to_string(),
            "sha256": model.sha256,
            "modalities": model.modalities.to_string(),
        },
        "window": {"patch": window.patch, "stride": window.stride},
        "device": compute.describe(),
        "cases": cases,
    });
    if npy_input {
        record["geometry"] = json!(NO_AFFINE);
    }
    write_json(&provenance_path, &record)?;
    say(&format!("wrote {}", provenance_path.display()))
}

/// Segments job `n` of `total`, writes its files, prints its lines and returns its entry in
/// the provenance record.
fn segment_job(
    job: &Job,
    (n, total): (usize, usize),
    model: &Model,
    net: &Net,
    window: &Window,
) -> Result<Value> {
    let t0 = Instant::now();
    let s = run_job(job, model, net, window)
        .with_context(|| format!("model {}", model.path.display()))?;
    let seconds = t0.elapsed().as_secs_f64();
    let counts = write_outputs(job, &s, model)?;
    let p = &s.prediction;
    let [nz, ny, nx] = p.dims;
    let counts: Vec<String> = counts.iter().map(|(l, c)| format!("{l}: {c}")).collect();
    say(&format!(
        "[{n}/{total}] {}: {nx} x {ny} x {nz} voxels (x, y, z), {} windows, {seconds:.1} s; \
         voxels per label {}",
        job.id,
        window.count(p.dims),
        counts.join(", ")
    ))?;
    let written = job.outputs.paths();
    for path in &written {
        say(&format!("wrote {}", path.display()))?;
    }
    Ok(json!({
        "id": job.id,
        "inputs": input_hashes(job, model)?,
        "outputs": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "seconds": seconds,
    }))
}

/// Writes a job's segmentation and, when asked, its probabilities and overlay; returns the
/// voxel count of each raw label ([`write_segmentation`]).
fn write_outputs(job: &Job, s: &Segmented, model: &Model) -> Result<[(u8, usize); 4]> {
    let p = &s.prediction;
    let o = &job.outputs;
    let counts = write_segmentation(&o.seg, &p.labels, p.dims, &s.geometry, s.release)?;
    if let Some(path) = &o.probabilities {
        write_frames(
            path,
            &p.probabilities,
            p.dims,
            p.classes(),
            &s.geometry,
            OutDtype::F32,
        )?;
    }
    if let Some(path) = &o.png {
        let title = format!("{} ({})", job.id, NAMES[model.modalities.channels()[0]]);
        crate::report::overlay::write_overlay_png(&s.grey, &p.labels, path, &title)?;
    }
    Ok(counts)
}

/// The path and SHA-256 of each file a job read (read again to hash it).
fn input_hashes(job: &Job, model: &Model) -> Result<Vec<Value>> {
    job.source
        .read_paths(model.modalities.channels())
        .iter()
        .map(|p| {
            let hash = sha256_file(p)
                .with_context(|| format!("cannot read {} again to hash it", p.display()))?;
            Ok(json!({"path": p.display().to_string(), "sha256": hash}))
        })
        .collect()
}
