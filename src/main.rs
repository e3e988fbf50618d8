//! The `protokd` command-line tool: parses the command line ([`cli`]), runs it and maps an
//! error to the exit status.

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// Keeps freed memory in the process for reuse (glibc's malloc; other C libraries keep their
/// defaults). The fast engine's tensors are tens to hundreds of MB, and by default glibc maps
/// each one fresh from the kernel and returns it on free, so every layer paid page faults and
/// page clearing again: 661,000 page faults and 1.4 s of system time for one warm-up and one
/// timed forward at 1 x 4 x 96 x 128 x 128, 191,000 and 0.5 s with the heap kept (no mmap for
/// large blocks, no trimming, 256 MB of top padding; `perf stat`, 2-core AMD EPYC). The worker
/// threads allocate from the same heap (one arena): in their own arenas glibc still maps a
/// block larger than an arena's heap fresh from the kernel; one ProtoKD step (avx2+fma copy,
/// warm-up and 3 timed steps) took 2.58 and 2.66 million page faults with an arena per thread
/// and 0.79 and 1.35 million with one. Where memory comes from never changes a bit of any
/// result.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
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
