//! The fast-kernel commands: `protokd verify --kernels` (spec against fast kernels on the
//! golden suite) and `protokd bench` (its record and its bad input).

mod common;
use common::{protokd, s, TempDir};
use serde_json::Value;

#[test]
fn verify_kernels_finds_every_operation_identical() {
    let tmp = TempDir::new("verify");
    let report = tmp.join("verify.json");
    let out = protokd(&["verify", "--kernels", "--json", s(&report)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("52 of 52 comparisons identical"),
        "{stdout}"
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["identical"], true);
    let ops = r["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 52);
    assert!(ops
        .iter()
        .all(|o| o["differing"] == 0 && o["elements"].as_u64() > Some(0)));
    // The report is not replaced without --force; verify needs --kernels or --device.
    let again = protokd(&["verify", "--kernels", "--json", s(&report)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let bare = protokd(&["verify"]);
    assert!(!bare.status.success());
    let e = String::from_utf8_lossy(&bare.stderr);
    assert!(
        e.contains("`--kernels`") && e.contains("`--device cuda|emulated`"),
        "{e}"
    );
}

#[test]
fn bench_writes_its_record_and_refuses_bad_input() {
    let tmp = TempDir::new("bench");
    let json = tmp.join("b.json");
    let out = protokd(&[
        "--kernels",
        "spec",
        "bench",
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
    assert_eq!(r["kernels"], "spec");
    assert_eq!(r["device"], "cpu");
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
            vec!["bench", "--what", "forward", "--device", "cuda"],
            "--device cuda",
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
    let bad_env = std::process::Command::new(env!("CARGO_BIN_EXE_protokd"))
        .args(["bench", "--what", "forward", "--shape", "1,4,16,16,16"])
        .env("PROTOKD_KERNELS", "quick")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad_env.stderr).contains("PROTOKD_KERNELS = `quick`"));
}
