//! Bad models for the refusal tests of issue 13, made from a small valid one (n_filters 4,
//! four channels, no metadata like a PyTorch state_dict): a negative `running_var`, a 1e30
//! weight, a NaN weight, a negative `num_batches_tracked`, 2 and 5 classes. Included by the
//! targets that load models (`#[path]`), each with its own `common`.

#![allow(dead_code)]

use crate::common::workflow::state;
use protokd::io::checkpoint::state_tensors;
use protokd::io::tensorfile::{serialize, OutTensor};
use protokd_reference::state::{VNetConfig, VNetState};
use std::path::{Path, PathBuf};

/// A checkpoint's tensors, by name.
pub type Tensors = Vec<(String, OutTensor)>;

/// The bytes of a checkpoint (no metadata, like PyTorch's) of `st` with `edit` applied to its
/// tensors.
pub fn edited(st: &VNetState, edit: &dyn Fn(&mut Tensors)) -> Vec<u8> {
    let mut t = state_tensors(st, "");
    edit(&mut t);
    serialize(&t, None).unwrap()
}

/// Sets value `i` of f32 tensor `name` to `v`.
pub fn set_value(t: &mut [(String, OutTensor)], name: &str, i: usize, v: f32) {
    let (_, x) = t.iter_mut().find(|(n, _)| n == name).unwrap();
    match x {
        OutTensor::F32(x) => x.data[i] = v,
        OutTensor::I64(_) => panic!("{name} is not f32"),
    }
}

/// The bad models (file name, bytes, words of the message), from a seeded four-channel model.
pub fn bad_models(dir: &Path) -> Vec<(PathBuf, Vec<u8>, Vec<&'static str>)> {
    let st = state(4, 4, 7);
    let classes = |n| {
        VNetState::init(
            VNetConfig {
                in_channels: 4,
                n_classes: n,
                n_filters: 4,
            },
            7,
        )
    };
    let var = "block_two.conv.1.running_var";
    let w = "block_one.conv.0.weight";
    vec![
        (
            dir.join("negvar.safetensors"),
            edited(&st, &|t| set_value(t, var, 2, -0.5)),
            vec![
                "negvar.safetensors",
                var,
                "-0.5",
                "flat index 2",
                "negative",
            ],
        ),
        (
            dir.join("huge.safetensors"),
            edited(&st, &|t| set_value(t, w, 3, 1e30)),
            vec![
                "huge.safetensors",
                w,
                "flat index 3",
                "magnitudes above 1e6",
            ],
        ),
        (
            dir.join("nan.safetensors"),
            edited(&st, &|t| set_value(t, w, 0, f32::NAN)),
            vec!["nan.safetensors", w, "NaN", "non-finite"],
        ),
        (
            dir.join("nbt.safetensors"),
            edited(&st, &|t| {
                let (_, x) = t
                    .iter_mut()
                    .find(|(n, _)| n.ends_with("num_batches_tracked"))
                    .unwrap();
                *x = OutTensor::I64(-1);
            }),
            vec!["nbt.safetensors", "num_batches_tracked", "-1", "negative"],
        ),
        (
            dir.join("two.safetensors"),
            edited(&classes(2), &|_| {}),
            vec![
                "two.safetensors",
                "2 classes",
                "`out_conv.weight`",
                "need 4",
            ],
        ),
        (
            dir.join("five.safetensors"),
            edited(&classes(5), &|_| {}),
            vec![
                "five.safetensors",
                "5 classes",
                "`out_conv.weight`",
                "need 4",
            ],
        ),
    ]
}
