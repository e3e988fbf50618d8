//! Printing on standard output that survives a closed pipe (`protokd ... | head`).

use anyhow::{Context, Result};
use std::io::Write;

/// Prints a line on standard output; a closed pipe is not an error (the rest is dropped).
pub fn say(line: &str) -> Result<()> {
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to standard output"),
    }
}
