//! MRI modalities and channel order: `0 = T1, 1 = T2, 2 = T1ce, 3 = FLAIR` (method page,
//! section 1). A student takes a subset, always in channel order.

use anyhow::{bail, Result};
use std::fmt;

/// Names of the four channels, in channel order, as the CLI spells them.
pub(crate) const NAMES: [&str; 4] = ["t1", "t2", "t1ce", "flair"];

/// A non-empty set of modalities, kept in channel order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modalities(Vec<usize>);

impl Modalities {
    /// All four (the teacher's input).
    pub fn all() -> Self {
        Modalities(vec![0, 1, 2, 3])
    }

    /// Parses `t1ce` or a comma-separated subset like `t1ce,flair` (any order, no repeats,
    /// case-insensitive); the result is in channel order.
    pub fn parse(s: &str) -> Result<Self> {
        let mut chans = Vec::new();
        for part in s.split(',').map(str::trim) {
            let lower = part.to_ascii_lowercase();
            let Some(c) = NAMES.iter().position(|n| *n == lower) else {
                bail!("unknown modality `{part}` in `{s}`; expected one or more of t1, t2, t1ce, flair, comma-separated");
            };
            if chans.contains(&c) {
                bail!("modality `{part}` is named twice in `{s}`");
            }
            chans.push(c);
        }
        chans.sort_unstable();
        Ok(Modalities(chans))
    }

    /// Channel indices, ascending.
    pub fn channels(&self) -> &[usize] {
        &self.0
    }
}

impl fmt::Display for Modalities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|&c| NAMES[c]).collect();
        write!(f, "{}", names.join(","))
    }
}

// Verifies (every test in this file): R-MTH-1
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subsets_in_channel_order() {
        assert_eq!(Modalities::parse("t1ce").unwrap().channels(), &[2]);
        assert_eq!(Modalities::parse("FLAIR, t1").unwrap().channels(), &[0, 3]);
        assert_eq!(
            Modalities::parse("flair,t1").unwrap().to_string(),
            "t1,flair"
        );
        assert!(Modalities::parse("t3")
            .unwrap_err()
            .to_string()
            .contains("unknown modality `t3`"));
        assert!(Modalities::parse("t1,t1").is_err());
        assert!(Modalities::parse("").is_err());
    }
}
