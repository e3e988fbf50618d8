// Verifies (every test in this file): R-WFL-4, R-CLI-1
//! `protokd bench`: the record it writes and its bad input.

use crate::common::refusal::{refusal, refused};
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
    let json = s(&json);
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("a step on one channel", vec![],
            ["bench", "--what", "step", "--shape", "1,1,16,16,16"], 1, ["C = 4"]),
        refusal("a size that is not a multiple of 16", vec![],
            ["bench", "--what", "forward", "--shape", "1,4,16,16,20"], 1, ["multiples of 16"]),
        refusal("a shape of four numbers", vec![],
            ["bench", "--what", "forward", "--shape", "1,4,16,16"], 1, ["N,C,D,H,W"]),
        refusal("--engine cuda", vec![],
            ["bench", "--what", "forward", "--engine", "cuda"], 1, ["--engine cuda"]),
        refusal("an existing record without --force", vec![],
            ["bench", "--what", "forward", "--shape", "1,4,16,16,16", "--json", json], 1,
            ["--force"]),
    ];
    refused(tmp.path(), table);
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
