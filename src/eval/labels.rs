//! Label sets by BraTS release, and how a pair of label maps gets one.
//!
//! | label set | `--labels` | raw labels | WT | TC | ET |
//! |---|---|---|---|---|---|
//! | BraTS 2018-2021 | `2018` | 1 NCR/NET, 2 ED, 4 ET | 1, 2, 4 | 1, 4 | 4 |
//! | BraTS 2023 (GLI, SSA, MEN, PED, MET) | `2023` | 1 NCR, 2 ED, 3 ET | 1, 2, 3 | 1, 3 | 3 |
//! | BraTS 2024 GLI and MET | `2024-gli` (or `2024-met`) | 1 NETC, 2 SNFH, 3 ET, 4 RC | 1, 2, 3 | 1, 3 | 3 |
//! | BraTS 2024 PED | `2024-ped` | 1 ET, 2 NET, 3 CC, 4 ED | 1, 2, 3, 4 | 1, 2, 3 | 1 |
//!
//! The regions are those of each year's official metrics code (`get_TissueWiseSeg` of
//! rachitsaluja/BraTS-2023-Metrics `metrics.py` and of BraTS-2024-Metrics `metrics_GLI.py`,
//! `metrics_MET.py`, `metrics_PED.py`): the 2024 GLI/MET resection cavity (RC, 4) belongs to no
//! region, as background. protokd's network predicts the 2018 classes (ET, NCR/NET, ED), so a
//! prediction never holds RC or CC; scored against a 2024 map, its regions are compared with the
//! 2024 regions above. Each raw label maps to a *region class* (`0` none, `1` ET, `2` in TC but
//! not ET, `3` in WT but not TC), which [`crate::eval::metrics::Region::contains`] reads as it
//! reads internal labels.
//!
//! # Which label set a pair of maps is read in ([`infer_label_set`])
//! 1. `--labels` (or `--release`) when given.
//! 2. Otherwise the candidates are the label sets that hold every raw value present in either
//!    map, narrowed by the file names: a `_seg` suffix or a `Brats18_`/`BraTS19`/`BraTS20`/
//!    `BraTS2021` prefix means 2018-2021; `BraTS-GLI-`/`BraTS-MET-` mean 2023 or 2024 GLI/MET;
//!    `BraTS-PED-` 2023 or 2024 PED; `BraTS-SSA-`/`BraTS-MEN-` 2023. Other names say nothing.
//! 3. When every candidate gives every present value the same region class, the first in the
//!    table's order is used (the maps are scored the same either way); when candidates disagree,
//!    the maps are refused with a message naming them and `--labels`. No candidate: refused.

use anyhow::{anyhow, bail, Result};
use std::fmt;

/// A BraTS release's raw label values and their regions (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelSet {
    /// BraTS 2018-2021: 1 NCR/NET, 2 ED, 4 ET.
    Brats2018,
    /// BraTS 2023: 1 NCR, 2 ED, 3 ET.
    Brats2023,
    /// BraTS 2024 GLI and MET: 1 NETC, 2 SNFH, 3 ET, 4 RC.
    Gli2024,
    /// BraTS 2024 PED: 1 ET, 2 NET, 3 CC, 4 ED.
    Ped2024,
}

impl LabelSet {
    /// Every label set, in the order of the module table.
    pub const ALL: [LabelSet; 4] = [
        LabelSet::Brats2018,
        LabelSet::Brats2023,
        LabelSet::Gli2024,
        LabelSet::Ped2024,
    ];

    /// The region class (`0` none, `1` ET, `2` TC not ET, `3` WT not TC) of each raw label
    /// `0..=4`; `None` for a value outside the set.
    fn classes(self) -> [Option<u8>; 5] {
        match self {
            LabelSet::Brats2018 => [Some(0), Some(2), Some(3), None, Some(1)],
            LabelSet::Brats2023 => [Some(0), Some(2), Some(3), Some(1), None],
            LabelSet::Gli2024 => [Some(0), Some(2), Some(3), Some(1), Some(0)],
            LabelSet::Ped2024 => [Some(0), Some(1), Some(2), Some(2), Some(3)],
        }
    }

    /// The region class of a raw label; `None` outside the set.
    pub fn region_class(self, raw: u8) -> Option<u8> {
        self.classes().get(raw as usize).copied().flatten()
    }

    /// The raw labels of the set, ascending.
    pub fn values(self) -> Vec<u8> {
        (0..5u8)
            .filter(|&v| self.region_class(v).is_some())
            .collect()
    }

    /// `2018`, `2023`, `2024-gli`, `2024-ped`: the `--labels` value.
    pub fn short_name(self) -> &'static str {
        match self {
            LabelSet::Brats2018 => "2018",
            LabelSet::Brats2023 => "2023",
            LabelSet::Gli2024 => "2024-gli",
            LabelSet::Ped2024 => "2024-ped",
        }
    }

    /// Parses `--labels`: `2018` (or `2019`, `2020`, `2021`), `2023`, `2024-gli` (or
    /// `2024-met`), `2024-ped`.
    pub fn parse(s: &str) -> Result<LabelSet> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "2018" | "2019" | "2020" | "2021" => LabelSet::Brats2018,
            "2023" => LabelSet::Brats2023,
            "2024-gli" | "2024-met" => LabelSet::Gli2024,
            "2024-ped" => LabelSet::Ped2024,
            _ => bail!(
                "unknown BraTS label set `{s}`; expected 2018 (2018-2021), 2023, 2024-gli \
                 (GLI and MET 2024) or 2024-ped"
            ),
        })
    }

    /// The label sets a file name points to (module docs, step 2); `None`: no hint.
    fn hinted_by(name: &str) -> Option<&'static [LabelSet]> {
        let stem = name
            .strip_suffix(".nii.gz")
            .or_else(|| name.strip_suffix(".nii"))
            .unwrap_or(name);
        let lower = name.to_ascii_lowercase();
        if stem.ends_with("_seg")
            || ["brats18_", "brats19", "brats20", "brats2021"]
                .iter()
                .any(|p| lower.starts_with(p))
        {
            Some(&[LabelSet::Brats2018])
        } else if name.contains("BraTS-GLI-") || name.contains("BraTS-MET-") {
            Some(&[LabelSet::Brats2023, LabelSet::Gli2024])
        } else if name.contains("BraTS-PED-") {
            Some(&[LabelSet::Brats2023, LabelSet::Ped2024])
        } else if name.contains("BraTS-SSA-") || name.contains("BraTS-MEN-") {
            Some(&[LabelSet::Brats2023])
        } else {
            None
        }
    }

    /// A raw label map converted to region classes; a value outside the set is an error naming
    /// it, its position and the set.
    pub fn to_region_classes(self, raw: &[u8]) -> Result<Vec<u8>> {
        raw.iter()
            .enumerate()
            .map(|(i, &l)| {
                self.region_class(l).ok_or_else(|| {
                    anyhow!(
                        "raw label {l} at flat index {i} is not in the {self} label set {:?}",
                        self.values()
                    )
                })
            })
            .collect()
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LabelSet::Brats2018 => "BraTS 2018-2021 (1 NCR/NET, 2 ED, 4 ET)",
            LabelSet::Brats2023 => "BraTS 2023 (1 NCR, 2 ED, 3 ET)",
            LabelSet::Gli2024 => "BraTS 2024 GLI/MET (1 NETC, 2 SNFH, 3 ET, 4 RC)",
            LabelSet::Ped2024 => "BraTS 2024 PED (1 ET, 2 NET, 3 CC, 4 ED)",
        })
    }
}

/// The label set of a pair of maps found without `--labels` (module docs, steps 2 and 3):
/// `names` are the two files' names (for messages too), `present[v]` says whether raw value
/// `v` occurs in either map. Returns the set and how it was decided.
pub fn infer_label_set(names: [&str; 2], present: &[bool; 256]) -> Result<(LabelSet, String)> {
    let values: Vec<u8> = (0..=255u8).filter(|&v| present[v as usize]).collect();
    let [a, b] = names;
    let file_name = |p: &str| {
        std::path::Path::new(p)
            .file_name()
            .map_or(p.to_string(), |n| n.to_string_lossy().into_owned())
    };
    let fits: Vec<LabelSet> = LabelSet::ALL
        .into_iter()
        .filter(|s| values.iter().all(|&v| s.region_class(v).is_some()))
        .collect();
    if fits.is_empty() {
        // Every value 0..=4 is in a 2024 set, so the largest value present is outside them all.
        let v = values.last().copied().unwrap_or_default();
        bail!(
            "{a} and {b}: raw label {v} is in no BraTS label set (2018: 0, 1, 2, 4; 2023: 0-3; \
             2024: 0-4)"
        );
    }
    let mut candidates = fits.clone();
    let mut hints = Vec::new();
    for name in [a, b] {
        let n = file_name(name);
        if let Some(h) = LabelSet::hinted_by(&n) {
            candidates.retain(|s| h.contains(s));
            hints.push(n);
        }
    }
    let list = |v: &[LabelSet]| {
        v.iter()
            .map(|s| format!("{} ({s})", s.short_name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if candidates.is_empty() {
        bail!(
            "{a} and {b}: the file names ({}) point to another BraTS release than the raw \
             labels {values:?}, which fit {}; give the label set with --labels",
            hints.join(", "),
            list(&fits)
        );
    }
    let first = candidates[0];
    let disagree: Vec<LabelSet> = candidates
        .iter()
        .copied()
        .filter(|s| {
            values
                .iter()
                .any(|&v| s.region_class(v) != first.region_class(v))
        })
        .collect();
    if let Some(&other) = disagree.first() {
        bail!(
            "{a} and {b} hold raw labels {values:?}, which fit both {} and {} with different \
             regions; say which with --labels {}|{}",
            first,
            other,
            first.short_name(),
            other.short_name()
        );
    }
    let why = match (candidates.len(), hints.is_empty()) {
        (1, true) => "inferred from the labels present".to_string(),
        (1, false) => format!(
            "inferred from the labels present and the names {}",
            hints.join(", ")
        ),
        _ => format!(
            "inferred: the labels present mean the same in {}",
            list(&candidates)
        ),
    };
    Ok((first, why))
}

// Verifies (every test in this file): R-DAT-2, R-MTH-11
#[cfg(test)]
mod tests {
    use super::*;

    fn present(v: &[u8]) -> [bool; 256] {
        let mut p = [false; 256];
        for &x in v {
            p[x as usize] = true;
        }
        p
    }

    #[test]
    fn regions_of_every_set() {
        // ET, TC, WT membership of raw labels, from the official get_TissueWiseSeg.
        let et = |s: LabelSet, v: u8| s.region_class(v) == Some(1);
        let tc = |s: LabelSet, v: u8| matches!(s.region_class(v), Some(1 | 2));
        let wt = |s: LabelSet, v: u8| matches!(s.region_class(v), Some(1..=3));
        let g = LabelSet::Gli2024;
        assert!(et(g, 3) && tc(g, 1) && tc(g, 3) && wt(g, 2) && !wt(g, 4));
        let p = LabelSet::Ped2024;
        assert!(et(p, 1) && tc(p, 2) && tc(p, 3) && !tc(p, 4) && wt(p, 4));
        assert!(et(LabelSet::Brats2018, 4) && et(LabelSet::Brats2023, 3));
        assert_eq!(LabelSet::Brats2018.values(), vec![0, 1, 2, 4]);
        assert_eq!(LabelSet::Gli2024.values(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn inference_from_names_and_values() {
        let names = ["a/pred.nii.gz", "a/gt.nii.gz"];
        // RC without ET and plain names: 2018 or 2024: refused, naming both and the flag.
        let e = infer_label_set(names, &present(&[0, 1, 2, 4]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--labels 2018|2024-gli"), "{e}");
        let e = infer_label_set(names, &present(&[0, 1, 2]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("2024-ped"), "{e}");
        // Named files settle it.
        let n18 = ["Brats18_x.nii.gz", "Brats18_x_seg.nii.gz"];
        assert_eq!(
            infer_label_set(n18, &present(&[0, 1, 2, 4])).unwrap().0,
            LabelSet::Brats2018
        );
        let gli = [
            "BraTS-GLI-00001-100.nii.gz",
            "BraTS-GLI-00001-100-seg.nii.gz",
        ];
        assert_eq!(
            infer_label_set(gli, &present(&[0, 1, 2, 4])).unwrap().0,
            LabelSet::Gli2024
        );
        // 2023 and 2024 GLI read 0-3 the same: not ambiguous.
        let (s, why) = infer_label_set(gli, &present(&[0, 1, 2, 3])).unwrap();
        assert_eq!(s, LabelSet::Brats2023);
        assert!(why.contains("mean the same"), "{why}");
        let ped = [
            "BraTS-PED-00001-000.nii.gz",
            "BraTS-PED-00001-000-seg.nii.gz",
        ];
        assert!(infer_label_set(ped, &present(&[0, 1, 2, 3])).is_err());
        assert!(infer_label_set(names, &present(&[0, 5])).is_err());
        // A 2018 name with a 3: no candidate.
        assert!(infer_label_set(n18, &present(&[0, 3])).is_err());
    }
}
