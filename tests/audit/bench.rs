//! `protokd bench`: the record it writes and its bad input.

use crate::common::{protokd, s, TempDir};
use serde_json::Value;

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
