//! A `--data` folder of either layout, and its cases read whichever way they are stored: BraTS
//! case folders of NIfTI files ([`crate::data::brats`]) or the authors' `<case>.npy` arrays
//! ([`crate::data::npy`]). `train`, `evaluate` and `segment` find and read their cases here.

use crate::data::brats::{self, Case, CaseFormat, Dataset, LoadedCase};
use crate::data::npy;
use anyhow::{bail, Result};
use std::path::Path;

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

/// Checks the header and length of every `.npy` case ([`npy::check_header`]), reading no data,
/// so that a command refuses a bad array before it starts; NIfTI cases are read (and checked)
/// when they are loaded.
pub fn check_npy_headers(cases: &[Case]) -> Result<()> {
    for case in cases.iter().filter(|c| c.format == CaseFormat::AuthorsNpy) {
        npy::check_header(&case.modalities[0])?;
    }
    Ok(())
}

/// Whether any of `cases` is an authors' `.npy` case (then a command says [`npy::NO_AFFINE`]
/// once).
pub fn any_npy(cases: &[Case]) -> bool {
    cases.iter().any(|c| c.format == CaseFormat::AuthorsNpy)
}
