// Verifies (every test in this file): R-CLI-4
//! `protokd bench` shapes and widths too large to run (issue 13): refused before anything is
//! allocated, naming the value and the limit (before: `--filters 100000` and a shape whose
//! size wraps aborted on the allocation).

use crate::bounded::refused_within;
use crate::common::refusal::{refusal, refused};
use crate::common::TempDir;
use protokd::audit::bench::parse_shape;

#[test]
fn bench_shapes_are_checked_without_overflow() {
    assert!(parse_shape("1,4,96,128,128").is_ok());
    let e = parse_shape("4294967296,4,4294967296,16,16")
        .unwrap_err()
        .to_string();
    assert!(e.contains("overflows"), "{e}");
    let e = parse_shape("1024,4,1024,1024,1024")
        .unwrap_err()
        .to_string();
    assert!(e.contains("above the limit of 17179869184 bytes"), "{e}");
}

#[test]
fn bench_refuses_huge_sizes_within_bounds() {
    let dir = TempDir::new("limits-bench");
    let rows: [(&str, &[&str], &[&str]); 3] = [
        (
            "--filters 100000",
            &["--filters", "100000"],
            &["--filters 100000", "limit of 256"],
        ),
        (
            "a wrapping shape",
            &["--shape", "4294967296,4,4294967296,16,16"],
            &["4294967296 x 4 x 4294967296 x 16 x 16 x 4 overflows"],
        ),
        (
            "a shape of 1 TiB",
            &["--shape", "16,4,1024,1024,1024"],
            &["limit of 17179869184 bytes"],
        ),
    ];
    let args = |extra: &[&'static str]| [&["bench", "--what", "forward"], extra].concat();
    for (_, extra, words) in &rows {
        refused_within(&args(extra), words);
    }
    let table = rows
        .iter()
        .map(|(case, extra, words)| refusal(case, vec![], args(extra), 1, words.to_vec()))
        .collect();
    refused(dir.path(), table);
}
