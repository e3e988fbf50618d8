//! The frozen teacher of a distillation run: required by ProtoKD and KD, refused otherwise, and
//! checked to fit the student.

use super::config::TrainConfig;
use crate::io::checkpoint;
use crate::modality::Modalities;
use anyhow::{bail, Result};
use protokd_reference::state::VNetState;
use std::path::Path;

/// A loaded teacher.
pub(super) struct Teacher<'p> {
    /// Its weights.
    pub(super) state: VNetState,
    /// SHA-256 of its file.
    sha256: String,
    /// Its file, as given.
    path: &'p Path,
}

impl Teacher<'_> {
    /// What the run record keeps of it: the path as given and the file's SHA-256.
    pub(super) fn recorded(&self) -> (String, String) {
        (self.path.display().to_string(), self.sha256.clone())
    }
}

/// The teacher of the run: loaded from `given` when the method distils ([`load`]); an error
/// when a distilling method has none or another method is given one.
pub(super) fn for_method<'p>(
    cfg: &TrainConfig,
    given: Option<&'p Path>,
) -> Result<Option<Teacher<'p>>> {
    match (cfg.method.needs_teacher(), given) {
        (true, Some(p)) => Ok(Some(load(p, cfg)?)),
        (true, None) => bail!(
            "method {} distils from a teacher: pass --teacher T.safetensors (a four-modality \
             model from `protokd train teacher`)",
            cfg.method.name()
        ),
        (false, Some(p)) => bail!(
            "method {} uses no teacher, but --teacher {} was given",
            cfg.method.name(),
            p.display()
        ),
        (false, None) => Ok(None),
    }
}

/// Loads the teacher at `path` and checks it fits: four channels (all modalities), four
/// classes, the student's width.
fn load<'p>(path: &'p Path, cfg: &TrainConfig) -> Result<Teacher<'p>> {
    let (ck, sha256) = checkpoint::load_hashed(path)?;
    let c = ck.state.config;
    if c.in_channels != 4
        || ck
            .modalities
            .as_ref()
            .is_some_and(|m| *m != Modalities::all())
    {
        bail!(
            "teacher {}: takes {} channel(s) ({}); a teacher takes all four modalities",
            path.display(),
            c.in_channels,
            ck.modalities.map_or("unrecorded".into(), |m| m.to_string())
        );
    }
    if c.n_classes != 4 || c.n_filters != cfg.n_filters {
        bail!(
            "teacher {}: {} filters and {} classes, but the student has {} filters and 4 classes \
             (the prototype loss compares feature maps of equal width)",
            path.display(),
            c.n_filters,
            c.n_classes,
            cfg.n_filters
        );
    }
    Ok(Teacher {
        state: ck.state,
        sha256,
        path,
    })
}
