// Verifies (every test in this file): R-DAT-7, R-CLI-1
//! Issue 13: every model `evaluate` loads is validated ([`bad_models`]): each bad checkpoint is
//! refused with exit 1 before any case is read, its message naming the file, the tensor and the
//! problem, and no file created or changed.

use crate::bad_models::bad_models;
use crate::common::refusal::{file, refusal, refused};
use crate::common::workflow::{phantoms, SIZE, WINDOW};
use crate::common::{s, TempDir};

#[test]
fn evaluate_refuses_invalid_models() {
    let tmp = TempDir::new("evaluate-states");
    let data = tmp.join("data");
    phantoms(&data, 1, "2018", SIZE);
    let report = tmp.join("report");
    let table = bad_models(tmp.path())
        .into_iter()
        .map(|(path, bytes, words)| {
            let mut args = vec!["evaluate", "--model", s(&path), "--data", s(&data)];
            args.extend(["--out", s(&report)]);
            args.extend(WINDOW);
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            refusal(
                &format!("evaluate {}", path.display()),
                vec![file(&path, bytes)],
                args,
                1,
                words,
            )
        })
        .collect();
    refused(tmp.path(), table);
}
