//! The `infer` stage (`src/infer/`): sliding-window inference against a NumPy transcription,
//! and `protokd segment`.

#[path = "../common/mod.rs"]
mod common;

mod no_overwrite;
mod segment;
mod sliding_window;
