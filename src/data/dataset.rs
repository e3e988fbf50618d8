//! A `--data` folder of either layout, and its cases read whichever way they are stored: BraTS
//! case folders of NIfTI files ([`crate::data::brats`]) or the authors' `<case>.npy` arrays
//! ([`crate::data::npy`]). `train`, `evaluate` and `segment` find and read their cases here.

use crate::data::brats::{self, Case, CaseFormat, Dataset, LoadedCase};
use crate::data::npy;
use crate::io::nifti::common_dims;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The dataset in `dir`: an authors' dataset when `dir` holds `.npy` files at its top level
/// ([`npy::discover`]), else a folder of BraTS case folders ([`brats::discover`]).
pub fn discover(dir: &Path) -> Result<Dataset> {
    if !dir.is_dir() {
        bail!(
            "dataset folder {} does not exist or is not a folder",
            dir.display()
        );
    }
    match npy::discover(dir)? {
        Some(dataset) => Ok(dataset),
        None => brats::discover(dir),
    }
}

/// Reads and checks a case stored either way ([`brats::load_case`], [`npy::load_case`]).
pub fn load_case(case: &Case) -> Result<LoadedCase> {
    match case.format {
        CaseFormat::Nifti => brats::load_case(case),
        CaseFormat::AuthorsNpy => npy::load_case(case),
    }
}

/// Reads the header of every file of `cases`, reading no data, so that a command refuses a bad
/// input before it announces, creates or computes anything: a NIfTI case's files each valid and
/// on one grid ([`common_dims`], errors naming the case and the file), an `.npy` case's header
/// and length ([`npy::check_header`]).
pub fn check_headers(cases: &[Case]) -> Result<()> {
    for case in cases {
        match case.format {
            CaseFormat::Nifti => {
                let files: Vec<PathBuf> =
                    case.modalities.iter().chain(&case.seg).cloned().collect();
                common_dims(&files).with_context(|| format!("case {}", case.id))?;
            }
            CaseFormat::AuthorsNpy => {
                npy::check_header(&case.modalities[0])?;
            }
        }
    }
    Ok(())
}

/// Whether any of `cases` is an authors' `.npy` case (then a command says [`npy::NO_AFFINE`]
/// once).
pub fn any_npy(cases: &[Case]) -> bool {
    cases.iter().any(|c| c.format == CaseFormat::AuthorsNpy)
}
