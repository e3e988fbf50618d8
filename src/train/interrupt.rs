//! Ctrl-C during training: the first asks the loop to stop after its current step and save
//! `last.*`; a second ends the process at once.

use anyhow::{anyhow, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the Ctrl-C handler; the loop stops after the step in progress and saves.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process): the first Ctrl-C asks the training loop to
/// stop after its current step and save `last.*`; a second one ends the process at once (every
/// file is written atomically, so nothing is left half-written).
pub fn install_interrupt_handler() -> Result<()> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: exiting without waiting for the step");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: saving after the current step (Ctrl-C again to quit now)");
        })
        .map_err(|e| anyhow!("cannot install the Ctrl-C handler: {e}"));
    });
    result
}

/// Whether a Ctrl-C has asked the loop to stop.
pub(super) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
