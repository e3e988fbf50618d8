//! Issue 13: every model `segment` loads is validated ([`bad_models`]): each bad checkpoint is
//! refused with exit 1, a message naming the file, the tensor and the problem, and no file
//! created or changed.

use crate::bad_models::bad_models;
use crate::common::refusal::{file, refusal, refused};
use crate::common::workflow::{phantoms, SIZE, WINDOW};
use crate::common::{s, TempDir};

#[test]
fn segment_refuses_invalid_models() {
    let tmp = TempDir::new("segment-states");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2018", SIZE);
    let case = data.join(&ids[0]);
    let out = tmp.join("seg.nii.gz");
    let table = bad_models(tmp.path())
        .into_iter()
        .map(|(path, bytes, words)| {
            let mut args = vec!["segment", "--model", s(&path), "--input", s(&case)];
            args.extend(["--out", s(&out)]);
            args.extend(WINDOW);
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            refusal(
                &format!("segment {}", path.display()),
                vec![file(&path, bytes)],
                args,
                1,
                words,
            )
        })
        .collect();
    refused(tmp.path(), table);
}
