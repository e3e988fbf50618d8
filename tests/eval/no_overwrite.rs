// Verifies (every test in this file): R-CLI-3
//! `protokd score --json` and `protokd evaluate --out` never overwrite an input, even with
//! `--force` (the same path, another spelling, a hard or a symbolic link); each refusal leaves
//! every file as it was (`common::refusal`).

use crate::common::refusal::{refusal, refused};
use crate::common::workflow::{model, phantoms, SIZE, WINDOW};
use crate::common::{s, TempDir};

#[test]
fn score_and_evaluate_never_replace_an_input() {
    let tmp = TempDir::new("eval-no-overwrite");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2018", SIZE);
    let case = data.join(&ids[0]);
    let label = case.join(format!("{}_seg.nii.gz", ids[0]));
    let pred = tmp.join("pred.nii.gz");
    std::fs::copy(&label, &pred).unwrap();
    let m = tmp.join("m.safetensors");
    model(&m, "t1ce", 4);
    let (hard, soft) = (tmp.join("hard.json"), tmp.join("soft.json"));
    std::fs::hard_link(&pred, &hard).unwrap();
    std::os::unix::fs::symlink(&label, &soft).unwrap();
    // A case list kept as `cases.csv` in the report folder: the report would overwrite it.
    let report = tmp.join("report");
    std::fs::create_dir(&report).unwrap();
    let list = report.join("cases.csv");
    std::fs::write(&list, format!("{}\n", ids[0])).unwrap();
    let score = |json: &str| -> Vec<String> {
        [
            "score",
            "--pred",
            s(&pred),
            "--label",
            s(&label),
            "--json",
            json,
            "--force",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let evaluate = |out: &str, extra: &[&str]| -> Vec<String> {
        [
            "evaluate",
            "--model",
            s(&m),
            "--data",
            s(&data),
            "--out",
            out,
            "--force",
        ]
        .iter()
        .chain(extra)
        .chain(&WINDOW)
        .map(|a| a.to_string())
        .collect()
    };
    let input = "is one of the inputs";
    let listed = ["--cases", s(&list)];
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("score --json is --label", vec![], score(s(&label)), 1, [s(&label), "--label", input]),
        refusal("score --json is --pred", vec![], score(s(&pred)), 1, [s(&pred), "--pred", input]),
        refusal("score --json a hard link to --pred", vec![], score(s(&hard)), 1,
            [s(&hard), s(&pred), input]),
        refusal("score --json a symbolic link to --label", vec![], score(s(&soft)), 1,
            [s(&soft), s(&label), input]),
        refusal("evaluate --out is --data", vec![], evaluate(s(&data), &[]), 1,
            [s(&data), "--data", input]),
        refusal("evaluate's cases.csv is the --cases list", vec![], evaluate(s(&report), &listed), 1,
            [s(&list), "report file", "--cases", input]),
    ];
    refused(tmp.path(), table);
}
