//! The `infer` stage (`src/infer/`): sliding-window inference against a NumPy transcription,
//! and `protokd segment`.

#[path = "../common/bounded.rs"]
mod bounded;
#[path = "../common/mod.rs"]
mod common;

mod limits;
mod segment;
mod sliding_window;
