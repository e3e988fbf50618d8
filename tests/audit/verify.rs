//! The engine commands: `protokd verify` (every available engine against the spec on the
//! golden suite) and `protokd bench` (its record and its bad input).

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
    for (args, words) in [
        (
            vec!["verify", "--engines", "cpu", "--json", s(&report)],
            vec!["--force"],
        ),
        (
            vec!["verify", "--engines", "spec"],
            vec!["--engines spec", "cpu, emulated or cuda"],
        ),
        (vec!["verify", "--engines", "cpu,turbo"], vec!["turbo"]),
        (
            vec!["verify", "--kernels"],
            vec!["--kernels was replaced by --engine"],
        ),
    ] {
        let o = protokd(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        for w in words {
            assert!(e.contains(w), "{args:?}: `{w}` not in {e}");
        }
    }
}

#[test]
fn bench_writes_its_record_and_refuses_bad_input() {
    let tmp = TempDir::new("bench");
    let json = tmp.join("b.json");
    let out = protokd(&[
        "bench",
        "--engine",
        "spec",
        "--what",
        "step",
        "--shape",
        "1,4,16,16,32",
        "--filters",
        "2",
        "--repeat",
        "3",
        "--json",
        s(&json),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["what"], "step");
    assert_eq!(r["device"], "spec");
    assert_eq!(r["simd"], Value::Null);
    let times: Vec<f64> = r["times_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert_eq!(times.len(), 3);
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(r["median_s"].as_f64(), Some(sorted[1]));
    assert_eq!(r["min_s"].as_f64(), Some(sorted[0]));
    assert_eq!(r["max_s"].as_f64(), Some(sorted[2]));
    for (args, needle) in [
        (
            vec!["bench", "--what", "step", "--shape", "1,1,16,16,16"],
            "C = 4",
        ),
        (
            vec!["bench", "--what", "forward", "--shape", "1,4,16,16,20"],
            "multiples of 16",
        ),
        (
            vec!["bench", "--what", "forward", "--shape", "1,4,16,16"],
            "N,C,D,H,W",
        ),
        (
            vec!["bench", "--what", "forward", "--engine", "cuda"],
            "--engine cuda",
        ),
        (
            vec![
                "bench",
                "--what",
                "forward",
                "--shape",
                "1,4,16,16,16",
                "--json",
                s(&json),
            ],
            "--force",
        ),
    ] {
        let o = protokd(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(needle), "{args:?}: {e}");
    }
    // The fast CPU engine's record names the SIMD copy it ran.
    let fast = tmp.join("fast.json");
    let o = protokd(&[
        "bench",
        "--what",
        "forward",
        "--shape",
        "1,4,16,16,16",
        "--filters",
        "2",
        "--repeat",
        "1",
        "--json",
        s(&fast),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&std::fs::read(&fast).unwrap()).unwrap();
    assert_eq!(r["device"], "cpu");
    assert_eq!(r["simd"], protokd_cpu::Isa::detected().name());
}
