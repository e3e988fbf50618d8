// Verifies (every test in this file): R-CLI-4
//! `--threads` (issue 13): at most 4 per core (the binary's `cli::MAX_THREADS_PER_CORE`),
//! refused before the pool starts (before: `--threads 100000` spawned thousands of threads).

use crate::bounded::refused_within;
use crate::common::refusal::{refusal, refused};
use crate::common::TempDir;

#[test]
fn too_many_threads_are_refused_within_bounds() {
    let dir = TempDir::new("limits-threads");
    let cores = std::thread::available_parallelism().unwrap().get();
    let limit = format!("limit of {} (4 per core, {cores} cores)", 4 * cores);
    let over = (4 * cores + 1).to_string();
    let args = |n| threads_args(n);
    refused_within(&args("100000"), &["--threads 100000", &limit]);
    refused_within(&args(&over), &[&format!("--threads {over}"), &limit]);
    refused(
        dir.path(),
        vec![
            refusal(
                "--threads 100000",
                vec![],
                args("100000"),
                1,
                ["100000", limit.as_str()],
            ),
            refusal(
                "one thread too many",
                vec![],
                args(&over),
                1,
                [over.as_str(), &limit],
            ),
        ],
    );
}

/// `protokd --threads n score` (of files that do not exist: the count is refused first).
fn threads_args(n: &str) -> [&str; 7] {
    [
        "--threads",
        n,
        "score",
        "--pred",
        "p.nii",
        "--label",
        "l.nii",
    ]
}
