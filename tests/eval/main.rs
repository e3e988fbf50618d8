//! The `eval` stage (`src/eval/`): the metrics of `protokd score` against medpy and against the
//! official BraTS challenge code, label sets by release, and
//! `protokd evaluate`.

#[path = "../common/bad_models.rs"]
mod bad_models;
#[path = "../common/mod.rs"]
mod common;

mod brats_challenge;
mod evaluate;
mod loaded_states;
mod metrics;
mod no_overwrite;
