// Verifies (every test in this file): R-NUM-5
//! `protokd verify`: every available engine against the spec on the golden suite, and its
//! bad input.

use crate::common::refusal::{refusal, refused};
use crate::common::{protokd, s, TempDir};
use serde_json::Value;

/// `protokd verify` with no engine named: the fast CPU engine and the emulated device (and
/// CUDA where a driver is present) each 52 of 52 identical to the spec, one line per engine,
/// operation and patch, and a JSON report; refusals for a bad engine list and an existing
/// report.
#[test]
fn verify_finds_every_engine_identical_to_the_spec() {
    let tmp = TempDir::new("verify");
    let report = tmp.join("verify.json");
    let out = protokd(&["verify", "--json", s(&report)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cuda = protokd_gpu::cuda::driver_present();
    let engines: &[&str] = if cuda {
        &["cpu", "emulated", "cuda"]
    } else {
        &["cpu", "emulated"]
    };
    for e in engines {
        assert!(
            stdout.contains(&format!("{e}: 52 of 52 comparisons identical to the spec")),
            "{stdout}"
        );
    }
    let total = 52 * engines.len();
    assert!(
        stdout.contains(&format!("{total} of {total} comparisons identical")),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("identical"))
            .count(),
        total
    );
    if !cuda {
        assert!(
            stdout.contains("skipped    cuda: not available"),
            "{stdout}"
        );
    }
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["identical"], true);
    let ops = r["operations"].as_array().unwrap();
    assert_eq!(ops.len(), total);
    for e in engines {
        assert_eq!(ops.iter().filter(|o| o["engine"] == *e).count(), 52);
    }
    assert!(ops
        .iter()
        .all(|o| o["differing"] == 0 && o["elements"].as_u64() > Some(0)));
    assert!(r["reference"].as_str().unwrap().starts_with("spec"));
    // Refusals: an existing report without --force, the spec compared with itself, an
    // unknown engine, and the removed --kernels switch.
    let report = s(&report);
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("an existing report without --force", vec![],
            ["verify", "--engines", "cpu", "--json", report], 1, ["--force"]),
        refusal("the spec compared with itself", vec![],
            ["verify", "--engines", "spec"], 1, ["--engines spec", "cpu, emulated or cuda"]),
        refusal("an unknown engine", vec![],
            ["verify", "--engines", "cpu,turbo"], 2, ["turbo"]),
        refusal("the removed --kernels switch", vec![],
            ["verify", "--kernels"], 1, ["--kernels was replaced by --engine"]),
    ];
    refused(tmp.path(), table);
}
