//! The train / validation / test split of a dataset: the published lists of a split folder, or a
//! seeded split.

use crate::data::augment::{rng_with_tag, shuffled};
use crate::data::brats::{read_case_list, Dataset};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Domain tag of the split generator.
pub(crate) const SPLIT_TAG: [u8; 8] = *b"pkd-splt";

/// File names of a split folder (as `data/brats2018-split/`).
pub(crate) const SPLIT_FILES: [&str; 3] = ["train_list.txt", "val_list.txt", "test_list.txt"];

/// Case ids of each part; training ids in the order that gives each case its index in the
/// augmentation generator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Where the split came from (`folder ...` or `seeded ...`).
    pub source: String,
    /// Training cases.
    pub train: Vec<String>,
    /// Validation cases (best-checkpoint selection).
    pub val: Vec<String>,
    /// Test cases (never seen by training).
    pub test: Vec<String>,
}

/// The split of a folder holding `train_list.txt`, `val_list.txt` and `test_list.txt` (case
/// lists, see [`read_case_list`]); `test_list.txt` may be missing. Every id must be in
/// `dataset` and in one list only.
pub(crate) fn from_dir(dir: &Path, dataset: &Dataset) -> Result<Split> {
    let mut lists = Vec::new();
    for name in SPLIT_FILES {
        let path = dir.join(name);
        if name == "test_list.txt" && !path.exists() {
            lists.push(Vec::new());
            continue;
        }
        let ids = read_case_list(&path)?;
        dataset.select(&ids, &format!("case list {}", path.display()))?;
        lists.push(ids);
    }
    for (i, a) in lists.iter().enumerate() {
        for b in &lists[i + 1..] {
            if let Some(id) = a.iter().find(|id| b.contains(id)) {
                bail!(
                    "split folder {}: case `{id}` is in two lists",
                    dir.display()
                );
            }
        }
    }
    let test = lists.pop().unwrap_or_default();
    let val = lists.pop().unwrap_or_default();
    let train = lists.pop().unwrap_or_default();
    Ok(Split {
        source: format!("folder {}", dir.display()),
        train,
        val,
        test,
    })
}

/// A seeded split of `ids` (the dataset's cases, sorted by id): `n_test = round(n *
/// test_fraction)`, `n_val = round(n * val_fraction)` (f64; at least 1 when the fraction is
/// positive and a training case remains), then the ids shuffled by [`shuffled`] with the
/// generator `rng_with_tag(seed, 0, 0, SPLIT_TAG)`: the first `n_test` are the test cases, the
/// next `n_val` the validation cases, the rest the training cases; each part sorted by id.
pub fn seeded(ids: &[String], seed: u64, val_fraction: f64, test_fraction: f64) -> Result<Split> {
    let n = ids.len();
    let count = |f: f64, room: usize| -> usize {
        let k = (n as f64 * f).round() as usize;
        let k = if f > 0.0 { k.max(1) } else { k };
        k.min(room)
    };
    let n_test = count(test_fraction, n.saturating_sub(1));
    let n_val = count(val_fraction, n.saturating_sub(1 + n_test));
    if n == 0 || n_test + n_val >= n {
        bail!("cannot split {n} case(s) into training, validation and test parts");
    }
    let order = shuffled(n, &mut rng_with_tag(seed, 0, 0, SPLIT_TAG));
    let part = |range: std::ops::Range<usize>| -> Vec<String> {
        let mut v: Vec<String> = order[range].iter().map(|&i| ids[i].clone()).collect();
        v.sort();
        v
    };
    Ok(Split {
        source: format!("seeded (split_seed {seed}, val_fraction {val_fraction}, test_fraction {test_fraction})"),
        test: part(0..n_test),
        val: part(n_test..n_test + n_val),
        train: part(n_test + n_val..n),
    })
}

// Verifies (every test in this file): R-DAT-5
#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: R-NUM-4
    #[test]
    fn seeded_split_is_a_partition_of_the_requested_sizes() {
        let ids: Vec<String> = (0..285).map(|i| format!("case{i:03}")).collect();
        let s = seeded(&ids, 2018, 28.0 / 285.0, 57.0 / 285.0).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (200, 28, 57));
        let mut all: Vec<String> = [s.train.clone(), s.val.clone(), s.test.clone()].concat();
        all.sort();
        assert_eq!(all, ids);
        assert_eq!(s, seeded(&ids, 2018, 28.0 / 285.0, 57.0 / 285.0).unwrap());
        assert_ne!(
            s.test,
            seeded(&ids, 2019, 28.0 / 285.0, 57.0 / 285.0).unwrap().test
        );
        let small = seeded(&ids[..4], 1, 0.1, 0.2).unwrap();
        assert_eq!(
            (small.train.len(), small.val.len(), small.test.len()),
            (2, 1, 1)
        );
        let one = seeded(&ids[..1], 1, 0.1, 0.2).unwrap();
        assert_eq!((one.train.len(), one.val.len(), one.test.len()), (1, 0, 0));
        assert!(seeded(&[], 1, 0.1, 0.2).is_err());
    }
}
