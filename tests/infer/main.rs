//! The `infer` stage (`src/infer/`): sliding-window inference against a NumPy transcription,
//! and `protokd segment`.

#[path = "../common/bad_models.rs"]
mod bad_models;
#[path = "../common/mod.rs"]
mod common;

#[path = "../common/bounded.rs"]
mod bounded;
mod limits;
mod loaded_states;
mod no_overwrite;
mod segment;
mod sliding_window;
