//! `protokd bench --engines`: the same work on several engines, side by side (stdout, JSON,
//! Markdown table, SVG chart), and its refusals.

use crate::common::refusal::{refusal, refused};
use crate::common::{protokd, s, TempDir};
use protokd::engine::EngineKind;
use serde_json::Value;

// Verifies: R-WFL-4
#[test]
fn engines_side_by_side() {
    let tmp = TempDir::new("bench-engines");
    let (json, table, svg) = (tmp.join("c.json"), tmp.join("c.md"), tmp.join("c.svg"));
    let args = [
        "bench",
        "--what",
        "step",
        "--shape",
        "1,4,16,16,32",
        "--filters",
        "2",
        "--warmup",
        "0",
        "--repeat",
        "1",
        "--engines",
        "spec,cpu,cuda",
        "--json",
        s(&json),
        "--table",
        s(&table),
        "--svg",
        s(&svg),
    ];
    let out = protokd(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cuda_here = EngineKind::Cuda.open().is_ok();
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let engines = r["engines"].as_array().unwrap();
    let names: Vec<&str> = engines
        .iter()
        .map(|e| e["engine"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spec", "cpu", "cuda"]);
    assert_eq!(engines[0]["available"], true);
    assert_eq!(engines[1]["available"], true);
    assert_eq!(engines[2]["available"], cuda_here);
    // The same bits on every engine: the same hash of the stepped student.
    let hash = |i: usize| engines[i]["record"]["result_sha256"].as_str().unwrap();
    assert_eq!(hash(0).len(), 64);
    assert_eq!(hash(0), hash(1));
    assert_eq!(r["same_result"], true);
    for e in &engines[..2] {
        let rec = &e["record"];
        assert!(rec["gflops_per_s"].as_f64().unwrap() > 0.0);
        assert!(rec["fraction_of_peak"].as_f64().unwrap() > 0.0);
        assert!(rec["breakdown"]["categories"].is_array());
    }
    assert_eq!(
        engines[1]["record"]["simd"],
        protokd_cpu::Isa::detected().name()
    );
    assert!(r["machine"]["measured_peak_gflops_per_s"].as_f64().unwrap() > 0.0);
    let md = std::fs::read_to_string(&table).unwrap();
    let rows: Vec<&str> = md.lines().skip(2).collect();
    assert_eq!(rows.len(), 3, "{md}");
    assert!(
        rows[0].starts_with("| spec |") && rows[0].contains(hash(0)),
        "{md}"
    );
    assert!(
        rows[1].starts_with("| cpu |") && rows[1].contains(hash(1)),
        "{md}"
    );
    if !cuda_here {
        assert!(rows[2].starts_with("| cuda | not available: "), "{md}");
        assert!(r["engines"][2]["reason"].as_str().unwrap().contains("cuda"));
        assert!(!svg_text(&svg).contains(">cuda<"));
    }
    assert!(stdout.contains(&md), "the table is printed:\n{stdout}");
    assert!(stdout.contains("measured FMA peak"), "{stdout}");
    let chart = svg_text(&svg);
    assert!(chart.starts_with("<svg"));
    for text in ["spec", "cpu", "GFLOP/s", "median seconds per run"] {
        assert!(chart.contains(text), "{text} not in the chart");
    }
    // Again with --force: every file replaced.
    let mut again = args.to_vec();
    again[12] = "cpu";
    again.push("--force");
    let out = protokd(&again);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&table).unwrap();
    assert_eq!(md.lines().count(), 3, "{md}");

    let (t, g) = (s(&table), s(&svg));
    let small = [
        "bench",
        "--what",
        "forward",
        "--shape",
        "1,4,16,16,16",
        "--filters",
        "2",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        small.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let mut table = vec![
        refusal("an existing chart without --force", vec![],
            with(&["--engines", "cpu", "--svg", g]), 1, ["SVG output", "--force"]),
        refusal("an existing table without --force", vec![],
            with(&["--engines", "spec,cpu", "--table", t]), 1, ["table output", "--force"]),
        refusal("the table and the chart in one file", vec![],
            with(&["--table", "same.out", "--svg", "same.out"]), 1, ["same.out", "also the table output"]),
        refusal("--simd without cpu in --engines", vec![],
            with(&["--engines", "spec", "--simd", "portable"]), 1, ["--simd", "cpu"]),
        refusal("--engines and --engine together", vec![],
            with(&["--engines", "cpu", "--engine", "spec"]), 2, ["--engine"]),
    ];
    if !cuda_here {
        table.push(refusal(
            "only cuda, with no GPU here",
            vec![],
            with(&["--engines", "cuda"]),
            1,
            ["no engine of --engines is available", "cuda"],
        ));
    }
    refused(tmp.path(), table);
}

/// The text of an SVG file.
fn svg_text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
