//! The cases of a run: the split (from a folder or seeded), the training cases (kept in memory
//! or read at every use) and their batches.

use super::config::TrainConfig;
use crate::data::augment::{augment, batch};
use crate::data::brats::{Case, CaseFormat, Dataset};
use crate::data::dataset::{any_npy, load_case};
use crate::data::npy;
use crate::data::preprocess::{preprocess_with_crop, CropBox, PreparedCase};
use crate::data::split::{self, Split};
use anyhow::{bail, Context, Result};
use protokd_reference::{LabelMap, Tensor};
use rayon::prelude::*;
use std::borrow::Cow;
use std::path::Path;

/// Above this many bytes of prepared training images, cases are read from disk at every step
/// instead of being kept in memory (the paper's 200 cases would take 16 GiB).
pub(crate) const CACHE_LIMIT_BYTES: usize = 4 << 30;

/// The split: from `split_dir` when given, else from the split lists of an authors' `.npy`
/// dataset when it has them ([`npy::split_folder`]), else seeded from the config; refused when
/// it holds fewer training cases than a batch (an epoch would have no step). `data` names the
/// dataset in that refusal.
pub(super) fn split_of(
    dataset: &Dataset,
    split_dir: Option<&Path>,
    cfg: &TrainConfig,
    data: &Path,
) -> Result<Split> {
    let authors_lists = || {
        any_npy(&dataset.cases)
            .then(|| npy::split_folder(&dataset.root))
            .flatten()
    };
    let split = match split_dir.map(Path::to_path_buf).or_else(authors_lists) {
        Some(dir) => split::from_dir(&dir, dataset)?,
        None => {
            let ids: Vec<String> = dataset.cases.iter().map(|c| c.id.clone()).collect();
            split::seeded(&ids, cfg.split_seed, cfg.val_fraction, cfg.test_fraction)
                .with_context(|| format!("dataset {}", dataset.root.display()))?
        }
    };
    if split.train.len() < cfg.batch_size {
        bail!(
            "{} training case(s) in {} but batch_size is {}: an epoch would have no step",
            split.train.len(),
            data.display(),
            cfg.batch_size
        );
    }
    Ok(split)
}

/// The dataset's cases named by the split (in the split's order).
pub(super) fn cases_of(dataset: &Dataset, ids: &[String], what: &str) -> Result<Vec<Case>> {
    Ok(dataset.select(ids, what)?.cases)
}

/// Reads, checks and z-scores a case and applies the crop (`None`: the whole volume). An
/// authors' `.npy` case is already z-scored and cropped: it is used whole, as stored.
fn prepare(case: &Case, crop: Option<&CropBox>) -> Result<PreparedCase> {
    let loaded = load_case(case)?;
    if loaded.labels.is_none() {
        bail!(
            "case {} ({}) has no segmentation; training and validation need one",
            case.id,
            case.dir.display()
        );
    }
    let whole = CropBox {
        start: [0; 3],
        end: loaded.dims(),
    };
    let crop = match case.format {
        CaseFormat::Nifti => crop.unwrap_or(&whole),
        CaseFormat::AuthorsNpy => &whole,
    };
    preprocess_with_crop(&loaded, crop)
}

/// Training cases, kept in memory or read at every use.
pub(super) enum TrainCases {
    Memory(Vec<PreparedCase>),
    Disk(Vec<Case>, Option<CropBox>),
}

impl TrainCases {
    /// Prepares the first case; keeps every case in memory when all of them (estimated from
    /// the first) take at most [`CACHE_LIMIT_BYTES`], else reads them at every use.
    pub(super) fn load(cases: Vec<Case>, crop: Option<CropBox>) -> Result<TrainCases> {
        let first = prepare(&cases[0], crop.as_ref())?;
        let bytes = first.image.len() * 4 * cases.len();
        if bytes > CACHE_LIMIT_BYTES {
            return Ok(TrainCases::Disk(cases, crop));
        }
        let mut all = vec![first];
        for c in &cases[1..] {
            all.push(prepare(c, crop.as_ref())?);
        }
        Ok(TrainCases::Memory(all))
    }

    fn get(&self, i: usize) -> Result<Cow<'_, PreparedCase>> {
        Ok(match self {
            TrainCases::Memory(v) => Cow::Borrowed(&v[i]),
            TrainCases::Disk(cases, crop) => Cow::Owned(prepare(&cases[i], crop.as_ref())?),
        })
    }

    /// The batch of the cases at positions `picks` in epoch `epoch`: the patch of case `i` is
    /// [`augment`]`(case, patch, seed, epoch, i)` (the cases in parallel), and the patches are
    /// stacked in the order of `picks`.
    pub(super) fn batch(
        &self,
        picks: &[usize],
        patch: [usize; 3],
        seed: u64,
        epoch: u64,
    ) -> Result<(Tensor, LabelMap)> {
        let samples = picks
            .par_iter()
            .map(|&i| {
                let case = self.get(i)?;
                Ok(augment(&case, patch, seed, epoch, i as u64)?.0)
            })
            .collect::<Result<Vec<_>>>()?;
        batch(&samples)
    }
}
