// Verifies (every test in this file): R-CLI-4
//! Training configurations and flags that ask for too much, or for nothing (issue 13): refused
//! when the configuration is checked, before any data is read or memory allocated, naming the
//! key, the value and the limit.

use crate::bounded::refused_within;
use crate::common::refusal::{file, refusal, refused};
use crate::common::{s, TempDir};
use protokd::modality::Modalities;
use protokd::train::config::{
    check_activation, check_width, effective, Method, MAX_ACTIVATION_BYTES,
};
use serde_json::json;

#[test]
fn activation_estimates_are_checked_without_overflow() {
    assert!(check_activation(4, 16, [96, 128, 128], "paper").is_ok());
    assert!(check_width(256, "w").is_ok());
    let e = check_width(257, "w").unwrap_err();
    assert_eq!(
        e.to_string(),
        "w 257 is above the limit of 256 (the VNet width)"
    );
    let e = check_activation(usize::MAX, 16, [16, 16, 16], "b").unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    let e = check_activation(64, 256, [256, 256, 256], "big").unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("above the limit of {MAX_ACTIVATION_BYTES} bytes")),
        "{e}"
    );
}

#[test]
fn configurations_are_refused_at_check_time_naming_the_key() {
    let m = Modalities::parse("t1ce").unwrap();
    for (bad, words) in [
        (
            json!({"n_filters": u64::MAX}),
            vec!["`n_filters` 18446744073709551615", "limit of 256"],
        ),
        (
            json!({"n_filters": 1_000_000}),
            vec!["`n_filters` 1000000", "limit of 256"],
        ),
        (
            json!({"batch_size": u64::MAX}),
            vec!["`batch_size`", "overflows"],
        ),
        (
            json!({"val_patch": [16, 16, 16], "val_stride": [8, 32, 8]}),
            vec!["`val_stride`", "32"],
        ),
        (
            json!({"patch": [16, 16, "x"]}),
            vec!["invalid value of `patch`"],
        ),
        (json!({"lr": "fast"}), vec!["invalid value of `lr`"]),
        (
            json!({"val_start_epoch": -1}),
            vec!["invalid value of `val_start_epoch`"],
        ),
    ] {
        let e = effective(Method::Baseline, &m, Some((&bad, "cfg.json"))).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("cfg.json"), "{bad}: {msg}");
        assert!(words.iter().all(|w| msg.contains(w)), "{bad}: {msg}");
    }
}

/// Through the binary: a huge `n_filters` (before: a capacity-overflow panic, exit 101), a
/// stride above the validation patch (before: refused only after an epoch), a mistyped value,
/// and `--stop-after 0` (before: the whole training ran). No data folder is needed: each is
/// refused before the data are read.
#[test]
fn train_refuses_bad_sizes_within_bounds() {
    let dir = TempDir::new("limits-train");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let run = dir.join("run");
    let cfg = |name: &str| dir.join(name);
    let args = |c: &str| -> Vec<String> {
        [
            "train",
            "teacher",
            "--data",
            s(&data),
            "--config",
            s(&cfg(c)),
            "--out",
            s(&run),
        ]
        .map(String::from)
        .to_vec()
    };
    let rows = [
        (
            "huge.json",
            r#"{"n_filters": 18446744073709551615}"#,
            vec![
                "huge.json",
                "`n_filters` 18446744073709551615",
                "limit of 256",
            ],
        ),
        (
            "million.json",
            r#"{"n_filters": 1000000}"#,
            vec!["`n_filters` 1000000", "limit of 256"],
        ),
        (
            "stride.json",
            r#"{"val_patch": [16, 16, 16], "val_stride": [8, 32, 8]}"#,
            vec![
                "stride.json",
                "`val_stride`",
                "stride 32 along",
                "patch size 16",
            ],
        ),
        (
            "typed.json",
            r#"{"max_epoch": "ten"}"#,
            vec!["typed.json", "`max_epoch` = \"ten\""],
        ),
        (
            "lr.json",
            r#"{"lr": "fast"}"#,
            vec!["lr.json", "invalid value of `lr`", "expected f64"],
        ),
    ];
    for (name, text, words) in &rows {
        std::fs::write(cfg(name), text).unwrap();
        let a = args(name);
        refused_within(&a.iter().map(String::as_str).collect::<Vec<_>>(), words);
    }
    let mut table: Vec<_> = rows
        .iter()
        .map(|(name, text, words)| {
            refusal(
                name,
                vec![file(&cfg(name), *text)],
                args(name),
                1,
                words.clone(),
            )
        })
        .collect();
    let mut stop = args("million.json");
    stop.extend(["--stop-after".into(), "0".into()]);
    table.push(refusal(
        "--stop-after 0",
        vec![],
        stop,
        2,
        ["--stop-after", "0", "1.."],
    ));
    refused(dir.path(), table);
}
