//! The `protokd` command-line tool: parses the command line ([`cli`]), runs it and maps an
//! error to the exit status.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic is a bug in protokd, never the user's fault: report it in one line, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error in protokd (please report it): {info}");
    }));
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
