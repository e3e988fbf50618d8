//! protokd: ProtoKD (prototype knowledge distillation) for brain-tumour segmentation with
//! missing MRI modalities: the application around the engines. The arithmetic is the
//! specification, crate `protokd-reference`, run by one of its engines (the spec itself,
//! `protokd-cpu`, `protokd-gpu`), all with the same bits.
//!
//! # Map
//!
//! The folders of `src/` follow the pipeline the tool runs, files -> data -> engine ->
//! inference -> evaluation -> training -> audit; each imports only from the rows above it
//! (checked by `tests/layout`: no import circle between folders or modules).
//!
//! | module | stage | holds |
//! |---|---|---|
//! | [`volume`], [`modality`] | vocabulary | an image on its grid; the four MRI modalities and their channel order |
//! | [`io`] | files | NIfTI, safetensors, checkpoints, atomic writes and `--force`, hashes, printing to a pipe |
//! | [`data`] | data | BraTS datasets and releases, preprocessing, augmentation, splits, phantoms |
//! | [`engine`] | compute | the `--engine` switch; a network and a trainer written once for every engine |
//! | [`report`] | figures | training curves, Dice box plots, segmentation overlays |
//! | [`infer`] | inference | the sliding window; `protokd segment` |
//! | [`eval`] | evaluation | BraTS metrics (`protokd score`); `protokd evaluate` |
//! | [`train`] | training | the training loop as hooks, configs, run folders (`protokd train`) |
//! | [`audit`] | audit | `protokd audit forward/step`, the golden patches, `verify`, `bench` |
//! | [`demo`] | the whole pipeline | phantoms -> teacher -> students -> evaluation (`protokd demo`) |
//!
//! The command line is the binary's `src/cli/`: the clap definitions, one file per subcommand,
//! each checking its arguments and calling the stage that does the work; `src/main.rs` only
//! dispatches.
//!
//! The public API is what the binary, the tests and the benches use; everything else is
//! `pub(crate)`. The module docs give each stage's rules and order of operations down to those
//! crate-private helpers: read them with
//! `cargo doc -p protokd --no-deps --document-private-items --open`.

// Public docs link to crate-private helpers (resolved with --document-private-items).
#![allow(rustdoc::private_intra_doc_links)]

pub mod audit;
pub mod data;
pub mod demo;
pub mod engine;
pub mod eval;
pub mod infer;
pub mod io;
pub mod modality;
pub mod report;
pub mod train;
pub mod volume;
