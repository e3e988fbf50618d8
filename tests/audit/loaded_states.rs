// Verifies (every test in this file): R-DAT-7, R-CLI-1
//! Issue 13: `audit forward` and `audit step` validate the models they load ([`bad_models`]):
//! a negative `running_var`, a 1e30 or NaN weight, a negative `num_batches_tracked` are refused
//! with exit 1, the file, the tensor and the problem named, and no file created or changed.
//! (The audit commands take any number of classes: the 2- and 5-class models are not probed.)

use crate::bad_models::bad_models;
use crate::common::refusal::{file, refusal, refused};
use crate::common::{s, TempDir};
use protokd::io::tensorfile::{serialize, OutTensor};
use protokd_reference::Tensor;

#[test]
fn audit_forward_refuses_invalid_weights() {
    let tmp = TempDir::new("audit-states");
    let x = tmp.join("x.safetensors");
    let image = Tensor::zeros(&[1, 4, 16, 16, 16]);
    let x_bytes = serialize(&[("image".into(), OutTensor::F32(image))], None).unwrap();
    let out = tmp.join("out.safetensors");
    let table = bad_models(tmp.path())
        .into_iter()
        .filter(|(_, _, words)| !words.contains(&"need 4"))
        .map(|(path, bytes, words)| {
            let args = [
                "audit",
                "forward",
                "--weights",
                s(&path),
                "--input",
                s(&x),
                "--out",
                s(&out),
            ];
            refusal(
                &format!("audit forward {}", path.display()),
                vec![file(&path, bytes), file(&x, x_bytes.clone())],
                args,
                1,
                words,
            )
        })
        .collect();
    refused(tmp.path(), table);
}
