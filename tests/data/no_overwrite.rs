// Verifies (every test in this file): R-CLI-3
//! `protokd phantom` refuses to replace the files of a case that exists unless `--force` (then
//! it writes the same bytes again), and never writes into its templates folder.

use crate::common::refusal::{refusal, refused};
use crate::common::{protokd, s, TempDir};
use std::path::{Path, PathBuf};

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mni152")
}

/// The arguments of `protokd phantom --out out --cases cases --seed 2 --size 32,32,16` with
/// the templates of `data/mni152`, then `extra`.
fn args(out: &Path, cases: &str, extra: &[&str]) -> Vec<String> {
    with_templates(out, cases, &templates_dir(), extra)
}

/// [`args`] with the templates in `t`.
fn with_templates(out: &Path, cases: &str, t: &Path, extra: &[&str]) -> Vec<String> {
    [
        "phantom",
        "--out",
        s(out),
        "--cases",
        cases,
        "--seed",
        "2",
        "--size",
        "32,32,16",
    ]
    .iter()
    .chain(&["--templates", s(t)])
    .chain(extra)
    .map(|a| a.to_string())
    .collect()
}

/// Runs `protokd` with `args`; asserts success.
fn ok(args: &[String]) {
    let o = protokd(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn phantom_replaces_existing_cases_only_with_force() {
    let tmp = TempDir::new("phantom-no-overwrite");
    let out = tmp.join("cohort");
    ok(&args(&out, "1", &[]));
    let case = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let t1 = std::fs::read_dir(&case)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| s(p).ends_with("_t1.nii.gz"))
        .unwrap();
    let bytes = std::fs::read(&t1).unwrap();
    // The user's edit of a case file must survive a second run without --force.
    std::fs::write(&t1, b"edited by the user").unwrap();
    // A copy of the templates, so that a broken guard could only write into the scratch folder.
    let t = tmp.join("templates");
    std::fs::create_dir(&t).unwrap();
    for e in std::fs::read_dir(templates_dir()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, t.join(p.file_name().unwrap())).unwrap();
    }
    let into_templates = with_templates(&t, "1", &t, &["--force"]);
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("the cohort exists", vec![], args(&out, "1", &[]), 1,
            [s(&t1), "already exists", "--force"]),
        refusal("a larger cohort over an existing case", vec![], args(&out, "2", &[]), 1,
            [s(&t1), "already exists", "--force"]),
        refusal("--out is --templates", vec![], into_templates, 1,
            [s(&t), "--templates", "is one of the inputs"]),
    ];
    refused(tmp.path(), table);
    ok(&args(&out, "1", &["--force"]));
    assert_eq!(
        std::fs::read(&t1).unwrap(),
        bytes,
        "--force writes the same bytes"
    );
}
