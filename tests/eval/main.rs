//! The `eval` stage (`src/eval/`): the metrics of `protokd score` against medpy, and
//! `protokd evaluate`.

#[path = "../common/mod.rs"]
mod common;

mod evaluate;
mod metrics;
mod no_overwrite;
