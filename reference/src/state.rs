//! The VNet's parameters and buffers under their PyTorch `state_dict` names, and the seeded
//! initialisation.
//!
//! Names, shapes and order are exactly those of the authors' PyTorch VNet (method page,
//! section 4), so a state moves between PyTorch and protokd unchanged:
//!
//! | block | entries |
//! |---|---|
//! | `block_one` .. `block_nine` | `conv.{3j}.weight` `[out, in, 3, 3, 3]` (no bias), BatchNorm at `conv.{3j+1}` |
//! | `block_*_dw` (down) | `conv.0.weight` `[out, in, 2, 2, 2]`, `conv.0.bias`, BatchNorm at `conv.1` |
//! | `block_*_up` (up, ConvTranspose3d) | `conv.0.weight` `[in, out, 2, 2, 2]`, `conv.0.bias`, BatchNorm at `conv.1` |
//! | `out_conv` | `weight` `[classes, F, 1, 1, 1]`, `bias` `[classes]` |
//!
//! A BatchNorm at prefix `P` has `P.weight`, `P.bias`, `P.running_mean`, `P.running_var`
//! (f32, `[channels]`) and `P.num_batches_tracked` (int64 scalar), in that order.
//!
//! Initialisation (PyTorch's default distributions, from our own seeded generator so that the
//! bits are ours): a ChaCha8 stream seeded with `seed` (`rand_chacha::ChaCha8Rng::seed_from_u64`)
//! is consumed in state_dict order; every conv and conv-transpose weight value, then that
//! layer's bias values, take one `u32` each: `u = (r >> 8) * 2^-24` (in `[0, 1)`, exact),
//! `value = (2u - 1) * bound` (the subtraction is exact; one rounding in the product) with
//! `bound = 1 / sqrt(fan_in)` in f32 (`fan_in = in * kd * kh * kw` for Conv3d,
//! `weight.shape[1] * kd * kh * kw` for ConvTranspose3d, as PyTorch computes it).
//! BatchNorm: weight 1, bias 0, running mean 0, running variance 1, `num_batches_tracked` 0.

use crate::tensor::Shaped;
use crate::Tensor;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::HashMap;

/// What a VNet is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VNetConfig {
    /// Input channels (4 for the teacher, the number of modalities for a student).
    pub in_channels: usize,
    /// Output classes (4 in ProtoKD).
    pub n_classes: usize,
    /// Base width `F` (16 in the paper).
    pub n_filters: usize,
}

/// What an entry of the state is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Conv3d weight `[out, in, kd, kh, kw]`.
    ConvWeight,
    /// ConvTranspose3d weight `[in, out, kd, kh, kw]`.
    ConvTransposeWeight,
    /// Bias of a Conv3d or ConvTranspose3d.
    ConvBias,
    /// BatchNorm scale (gamma).
    BnWeight,
    /// BatchNorm shift (beta).
    BnBias,
    /// BatchNorm running mean (buffer).
    RunningMean,
    /// BatchNorm running variance (buffer).
    RunningVar,
    /// BatchNorm `num_batches_tracked` (int64 buffer).
    NumBatchesTracked,
}

impl Role {
    /// Whether Adam updates it (PyTorch `parameters()`), as opposed to a buffer.
    pub fn trainable(self) -> bool {
        matches!(
            self,
            Role::ConvWeight
                | Role::ConvTransposeWeight
                | Role::ConvBias
                | Role::BnWeight
                | Role::BnBias
        )
    }
}

/// The value of a state entry (`T` is the tensor type of the engine that holds it: [`Tensor`]
/// on the CPU).
#[derive(Clone, Debug, PartialEq)]
pub enum Value<T = Tensor> {
    /// Every entry but `num_batches_tracked`.
    F32(T),
    /// `num_batches_tracked`.
    I64(i64),
}

/// One named entry of the state_dict.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<T = Tensor> {
    /// PyTorch state_dict name.
    pub name: String,
    /// What it is.
    pub role: Role,
    /// Its value.
    pub value: Value<T>,
}

/// Name, role and shape of one entry (`[]` for `num_batches_tracked`).
#[derive(Clone, Debug, PartialEq)]
pub struct EntrySpec {
    /// PyTorch state_dict name.
    pub name: String,
    /// What it is.
    pub role: Role,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// The kinds of conv unit in the VNet (each followed by BatchNorm and ReLU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// Conv3d 3x3x3, padding 1, stride 1, no bias.
    Conv,
    /// Conv3d 2x2x2, stride 2, with bias.
    Down,
    /// ConvTranspose3d 2x2x2, stride 2, with bias.
    Up,
}

/// One conv unit: its PyTorch prefix for the conv (`<block>.conv.<3j>`) and the BatchNorm
/// (`<block>.conv.<3j+1>`), kind and channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// Prefix of the conv entries, e.g. `block_two.conv.3`.
    pub conv: String,
    /// Prefix of the BatchNorm entries, e.g. `block_two.conv.4`.
    pub bn: String,
    /// Conv, down or up.
    pub kind: UnitKind,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
}

/// The VNet blocks in order: (name, kind, input channels, output channels, number of units),
/// with `F = n_filters` and `C = in_channels`.
pub fn blocks(cfg: &VNetConfig) -> Vec<(&'static str, UnitKind, usize, usize, usize)> {
    let f = cfg.n_filters;
    use UnitKind::*;
    vec![
        ("block_one", Conv, cfg.in_channels, f, 1),
        ("block_one_dw", Down, f, 2 * f, 1),
        ("block_two", Conv, 2 * f, 2 * f, 2),
        ("block_two_dw", Down, 2 * f, 4 * f, 1),
        ("block_three", Conv, 4 * f, 4 * f, 3),
        ("block_three_dw", Down, 4 * f, 8 * f, 1),
        ("block_four", Conv, 8 * f, 8 * f, 3),
        ("block_four_dw", Down, 8 * f, 16 * f, 1),
        ("block_five", Conv, 16 * f, 16 * f, 3),
        ("block_five_up", Up, 16 * f, 8 * f, 1),
        ("block_six", Conv, 8 * f, 8 * f, 3),
        ("block_six_up", Up, 8 * f, 4 * f, 1),
        ("block_seven", Conv, 4 * f, 4 * f, 3),
        ("block_seven_up", Up, 4 * f, 2 * f, 1),
        ("block_eight", Conv, 2 * f, 2 * f, 2),
        ("block_eight_up", Up, 2 * f, f, 1),
        ("block_nine", Conv, f, f, 1),
    ]
}

/// The units of block `name` (the first unit maps `cin -> cout`, later ones `cout -> cout`).
pub fn block_units(cfg: &VNetConfig, name: &str) -> Vec<Unit> {
    let (_, kind, cin, cout, n) = blocks(cfg)
        .into_iter()
        .find(|b| b.0 == name)
        .unwrap_or_else(|| panic!("no VNet block named {name}"));
    (0..n)
        .map(|j| Unit {
            conv: format!("{name}.conv.{}", 3 * j),
            bn: format!("{name}.conv.{}", 3 * j + 1),
            kind,
            cin: if j == 0 { cin } else { cout },
            cout,
        })
        .collect()
}

/// Every state_dict entry of a VNet with this config, in PyTorch's order.
pub fn state_dict_spec(cfg: &VNetConfig) -> Vec<EntrySpec> {
    let mut spec = Vec::new();
    let mut push =
        |name: String, role: Role, shape: Vec<usize>| spec.push(EntrySpec { name, role, shape });
    for (block, ..) in blocks(cfg) {
        for u in block_units(cfg, block) {
            let (role, k) = match u.kind {
                UnitKind::Conv => (Role::ConvWeight, 3),
                UnitKind::Down => (Role::ConvWeight, 2),
                UnitKind::Up => (Role::ConvTransposeWeight, 2),
            };
            let wshape = match u.kind {
                UnitKind::Up => vec![u.cin, u.cout, k, k, k],
                _ => vec![u.cout, u.cin, k, k, k],
            };
            push(format!("{}.weight", u.conv), role, wshape);
            if u.kind != UnitKind::Conv {
                push(format!("{}.bias", u.conv), Role::ConvBias, vec![u.cout]);
            }
            push(format!("{}.weight", u.bn), Role::BnWeight, vec![u.cout]);
            push(format!("{}.bias", u.bn), Role::BnBias, vec![u.cout]);
            push(
                format!("{}.running_mean", u.bn),
                Role::RunningMean,
                vec![u.cout],
            );
            push(
                format!("{}.running_var", u.bn),
                Role::RunningVar,
                vec![u.cout],
            );
            push(
                format!("{}.num_batches_tracked", u.bn),
                Role::NumBatchesTracked,
                vec![],
            );
        }
    }
    push(
        "out_conv.weight".into(),
        Role::ConvWeight,
        vec![cfg.n_classes, cfg.n_filters, 1, 1, 1],
    );
    push("out_conv.bias".into(), Role::ConvBias, vec![cfg.n_classes]);
    spec
}

/// A VNet's whole state (parameters and buffers), in state_dict order. `T` is the tensor type
/// of the engine that holds it ([`Tensor`] on the CPU; a device tensor on a GPU).
#[derive(Clone, Debug, PartialEq)]
pub struct VNetState<T = Tensor> {
    /// What the network is built for.
    pub config: VNetConfig,
    entries: Vec<Entry<T>>,
    index: HashMap<String, usize>,
}

/// PyTorch's default `fan_in` of a conv or conv-transpose weight (see the module docs).
fn fan_in(spec: &EntrySpec) -> usize {
    spec.shape[1] * spec.shape[2..].iter().product::<usize>()
}

impl<T: Shaped> VNetState<T> {
    /// A state from entries in exactly `state_dict_spec(config)` order with matching shapes.
    /// Panics otherwise (checkpoint loading validates user files before calling this).
    pub fn from_entries(config: VNetConfig, entries: Vec<Entry<T>>) -> Self {
        let spec = state_dict_spec(&config);
        assert_eq!(spec.len(), entries.len(), "VNetState: entry count");
        for (s, e) in spec.iter().zip(&entries) {
            assert_eq!(
                (&s.name, s.role),
                (&e.name, e.role),
                "VNetState: entry order"
            );
            if let Value::F32(t) = &e.value {
                assert_eq!(t.shape(), s.shape, "VNetState: shape of {}", s.name);
            }
        }
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        VNetState {
            config,
            entries,
            index,
        }
    }

    /// The same state with every f32 entry converted by `f` (for example uploaded to a device),
    /// in state_dict order; the first error stops the conversion.
    pub fn try_map<U: Shaped, E>(
        &self,
        mut f: impl FnMut(&str, &T) -> Result<U, E>,
    ) -> Result<VNetState<U>, E> {
        let entries = self
            .entries
            .iter()
            .map(|e| {
                Ok(Entry {
                    name: e.name.clone(),
                    role: e.role,
                    value: match &e.value {
                        Value::F32(t) => Value::F32(f(&e.name, t)?),
                        Value::I64(n) => Value::I64(*n),
                    },
                })
            })
            .collect::<Result<Vec<_>, E>>()?;
        Ok(VNetState::from_entries(self.config, entries))
    }

    /// All entries, in state_dict order.
    pub fn entries(&self) -> &[Entry<T>] {
        &self.entries
    }

    /// The f32 entry `name`. Panics if there is none (names come from [`state_dict_spec`]).
    pub fn tensor(&self, name: &str) -> &T {
        match &self.entries[self.position(name)].value {
            Value::F32(t) => t,
            Value::I64(_) => panic!("{name} is not an f32 entry"),
        }
    }

    /// Mutable access to the f32 entry `name`.
    pub fn tensor_mut(&mut self, name: &str) -> &mut T {
        let i = self.position(name);
        match &mut self.entries[i].value {
            Value::F32(t) => t,
            Value::I64(_) => panic!("{name} is not an f32 entry"),
        }
    }

    /// Mutable access to the BatchNorm at `prefix`: `(weight, bias, running_mean, running_var,
    /// num_batches_tracked)`.
    #[allow(clippy::type_complexity)]
    pub fn batchnorm_mut(&mut self, prefix: &str) -> (&T, &T, &mut T, &mut T, &mut i64) {
        let i = self.position(&format!("{prefix}.weight"));
        match &mut self.entries[i..i + 5] {
            [Entry {
                value: Value::F32(w),
                ..
            }, Entry {
                value: Value::F32(b),
                ..
            }, Entry {
                value: Value::F32(rm),
                ..
            }, Entry {
                value: Value::F32(rv),
                ..
            }, Entry {
                value: Value::I64(n),
                ..
            }] => (&*w, &*b, rm, rv, n),
            _ => panic!("{prefix} is not a BatchNorm"),
        }
    }

    /// The trainable tensors in state_dict order (PyTorch `named_parameters()`).
    pub fn parameters(&self) -> impl Iterator<Item = (&str, &T)> {
        self.entries
            .iter()
            .filter(|e| e.role.trainable())
            .map(|e| match &e.value {
                Value::F32(t) => (e.name.as_str(), t),
                Value::I64(_) => unreachable!("trainable entries are f32"),
            })
    }

    /// Mutable trainable tensors in state_dict order.
    pub fn parameters_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries
            .iter_mut()
            .filter(|e| e.role.trainable())
            .map(|e| match &mut e.value {
                Value::F32(t) => t,
                Value::I64(_) => unreachable!("trainable entries are f32"),
            })
    }

    fn position(&self, name: &str) -> usize {
        *self
            .index
            .get(name)
            .unwrap_or_else(|| panic!("no state entry named {name}"))
    }
}

impl VNetState {
    /// PyTorch-default initialisation from `seed` (module docs give the exact procedure).
    pub fn init(config: VNetConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let spec = state_dict_spec(&config);
        let mut bound = 0.0f32;
        let entries = spec
            .iter()
            .map(|s| {
                let numel: usize = s.shape.iter().product();
                let value = match s.role {
                    Role::ConvWeight | Role::ConvTransposeWeight | Role::ConvBias => {
                        if s.role != Role::ConvBias {
                            bound = 1.0 / (fan_in(s) as f32).sqrt();
                        }
                        let data = (0..numel)
                            .map(|_| {
                                let u = ((rng.next_u32() >> 8) as f32) * (1.0 / 16_777_216.0);
                                (2.0 * u - 1.0) * bound
                            })
                            .collect();
                        Value::F32(Tensor::from_vec(&s.shape, data))
                    }
                    Role::BnWeight | Role::RunningVar => {
                        Value::F32(Tensor::from_vec(&s.shape, vec![1.0; numel]))
                    }
                    Role::BnBias | Role::RunningMean => Value::F32(Tensor::zeros(&s.shape)),
                    Role::NumBatchesTracked => Value::I64(0),
                };
                Entry {
                    name: s.name.clone(),
                    role: s.role,
                    value,
                }
            })
            .collect();
        Self::from_entries(config, entries)
    }
}

// Verifies (every test in this file): R-MTH-3
#[cfg(test)]
mod tests {
    use super::*;

    const CFG: VNetConfig = VNetConfig {
        in_channels: 4,
        n_classes: 4,
        n_filters: 16,
    };

    /// The parameter count, computed independently from the method page's table: 3x3x3 convs
    /// without bias, down/up convs with bias, two BatchNorm parameters per unit.
    #[test]
    fn parameter_count_matches_the_table() {
        let f = 16usize;
        let conv = |i: usize, o: usize| o * i * 27 + 2 * o;
        let down = |i: usize, o: usize| o * i * 8 + o + 2 * o;
        let expect = conv(4, f)
            + down(f, 2 * f)
            + 2 * conv(2 * f, 2 * f)
            + down(2 * f, 4 * f)
            + 3 * conv(4 * f, 4 * f)
            + down(4 * f, 8 * f)
            + 3 * conv(8 * f, 8 * f)
            + down(8 * f, 16 * f)
            + 3 * conv(16 * f, 16 * f)
            + down(16 * f, 8 * f)
            + 3 * conv(8 * f, 8 * f)
            + down(8 * f, 4 * f)
            + 3 * conv(4 * f, 4 * f)
            + down(4 * f, 2 * f)
            + 2 * conv(2 * f, 2 * f)
            + down(2 * f, f)
            + conv(f, f)
            + (4 * f + 4);
        let s = VNetState::init(CFG, 0);
        let got: usize = s.parameters().map(|(_, t)| t.numel()).sum();
        assert_eq!(got, expect);
    }

    #[test]
    fn names_follow_pytorch() {
        let spec = state_dict_spec(&CFG);
        let names: Vec<&str> = spec.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[0], "block_one.conv.0.weight");
        assert_eq!(names[1], "block_one.conv.1.weight");
        assert_eq!(names[5], "block_one.conv.1.num_batches_tracked");
        assert_eq!(names[6], "block_one_dw.conv.0.weight");
        assert_eq!(names[7], "block_one_dw.conv.0.bias");
        assert!(names.contains(&"block_three.conv.7.running_var"));
        assert!(names.contains(&"block_five_up.conv.0.weight"));
        assert_eq!(names[names.len() - 1], "out_conv.bias");
        let up = spec
            .iter()
            .find(|s| s.name == "block_five_up.conv.0.weight")
            .unwrap();
        assert_eq!(up.shape, vec![256, 128, 2, 2, 2]);
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let a = VNetState::init(CFG, 7);
        assert_eq!(a, VNetState::init(CFG, 7));
        assert_ne!(a, VNetState::init(CFG, 8));
        let w = a.tensor("block_two.conv.0.weight");
        let bound = 1.0 / ((32 * 27) as f32).sqrt();
        assert!(w.data.iter().all(|v| v.abs() <= bound));
        // Uniform on [-b, b): the mean of |v| is close to b/2.
        let mean_abs = w.data.iter().map(|v| v.abs() as f64).sum::<f64>() / w.numel() as f64;
        assert!((mean_abs / bound as f64 - 0.5).abs() < 0.02, "{mean_abs}");
        let up = a.tensor("block_eight_up.conv.0.bias");
        let up_bound = 1.0 / ((16 * 8) as f32).sqrt();
        assert!(up.data.iter().all(|v| v.abs() <= up_bound));
        assert!(up
            .data
            .iter()
            .any(|v| v.abs() > 1.0 / ((32 * 8) as f32).sqrt()));
    }
}
