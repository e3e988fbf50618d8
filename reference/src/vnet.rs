//! The VNet of the method page (section 4), forward and backward, written out layer call by
//! layer call.
//!
//! Every unit is `conv -> BatchNorm -> ReLU` where conv is a 3x3x3 Conv3d (padding 1, no bias),
//! a 2x2x2 stride-2 Conv3d with bias (down) or a 2x2x2 stride-2 ConvTranspose3d with bias (up).
//! Skips are added after the up unit's ReLU: `x5_up = up(x5) + x4`, and likewise with x3, x2, x1.
//! The network returns `(features, logits)`: the output of `block_nine` and of `out_conv`
//! (1x1x1 Conv3d with bias).
//!
//! Backward order: the gradient reaching the features is `d_from_out_conv + d_features_extra`
//! (the prototype loss's gradient, when given). Where a tensor feeds two consumers (x1..x4 feed a
//! down unit and a skip), its gradient is `d_from_down_unit + d_from_skip`, one f32 addition per
//! element in that order. The input gradient of `block_one` is not computed (nothing needs it).

use crate::error::{check_finite, EngineError};
use crate::layers::batchnorm3d::{
    batchnorm3d_backward, batchnorm3d_forward_eval, batchnorm3d_forward_train, BnCache,
};
use crate::layers::conv3d::{
    bias_backward, conv3d_backward_input, conv3d_backward_weight, conv3d_forward, ConvGeom,
};
use crate::layers::conv_transpose3d::{
    conv_transpose3d_backward_input, conv_transpose3d_backward_weight, conv_transpose3d_forward,
};
use crate::layers::relu::{add_forward, relu_backward, relu_forward};
use crate::state::{block_units, Unit, UnitKind, VNetConfig, VNetState};
use crate::Tensor;
use std::collections::HashMap;

/// What the network returns.
#[derive(Clone, Debug, PartialEq)]
pub struct VNetOutput {
    /// Output of `block_nine`, `[N, F, D, H, W]`.
    pub features: Tensor,
    /// Output of `out_conv`, `[N, classes, D, H, W]`.
    pub logits: Tensor,
}

/// What a training-mode unit keeps for its backward.
#[derive(Clone, Debug)]
struct UnitCache {
    input: Tensor,
    bn: BnCache,
    output: Tensor,
}

/// Everything a training-mode forward keeps for the backward.
#[derive(Clone, Debug)]
pub struct VNetCache {
    units: HashMap<String, UnitCache>,
    features: Tensor,
}

/// Geometry of each unit kind and of `out_conv`.
fn geom(kind: UnitKind) -> ConvGeom {
    match kind {
        UnitKind::Conv => ConvGeom::cubic(3, 1, 1),
        UnitKind::Down | UnitKind::Up => ConvGeom::cubic(2, 2, 0),
    }
}
/// Geometry of `out_conv` (1x1x1).
fn out_conv_geom() -> ConvGeom {
    ConvGeom::cubic(1, 1, 0)
}

/// A forward pass: evaluation mode reads the state; training mode updates the BatchNorm running
/// statistics and records caches.
enum Pass<'a> {
    Eval(&'a VNetState),
    Train(&'a mut VNetState, &'a mut HashMap<String, UnitCache>),
}

impl Pass<'_> {
    fn state(&self) -> &VNetState {
        match self {
            Pass::Eval(s) => s,
            Pass::Train(s, _) => s,
        }
    }
}

/// The conv of one unit (no BatchNorm, no ReLU).
fn unit_conv(state: &VNetState, u: &Unit, x: &Tensor) -> Tensor {
    let w = state.tensor(&format!("{}.weight", u.conv));
    match u.kind {
        UnitKind::Conv => conv3d_forward(x, w, None, &geom(u.kind)),
        UnitKind::Down => conv3d_forward(
            x,
            w,
            Some(state.tensor(&format!("{}.bias", u.conv))),
            &geom(u.kind),
        ),
        UnitKind::Up => conv_transpose3d_forward(
            x,
            w,
            Some(state.tensor(&format!("{}.bias", u.conv))),
            &geom(u.kind),
        ),
    }
}

/// `relu(batchnorm(conv(x)))` for one unit.
fn unit_forward(pass: &mut Pass, u: &Unit, x: &Tensor) -> Result<Tensor, EngineError> {
    let z = unit_conv(pass.state(), u, x);
    match pass {
        Pass::Eval(s) => {
            let t = |what: &str| s.tensor(&format!("{}.{what}", u.bn));
            let y = batchnorm3d_forward_eval(
                &z,
                t("weight"),
                t("bias"),
                t("running_mean"),
                t("running_var"),
            );
            Ok(relu_forward(&y))
        }
        Pass::Train(s, caches) => {
            let (w, b, rm, rv, n) = s.batchnorm_mut(&u.bn);
            let (y, bn) = batchnorm3d_forward_train(&z, w, b, rm, rv, n)
                .map_err(|e| EngineError::BatchTooSmall(format!("{}: {e}", u.bn)))?;
            let output = relu_forward(&y);
            caches.insert(
                u.conv.clone(),
                UnitCache {
                    input: x.clone(),
                    bn,
                    output: output.clone(),
                },
            );
            Ok(output)
        }
    }
}

/// All units of block `name` in order.
fn block_forward(pass: &mut Pass, name: &str, x: &Tensor) -> Result<Tensor, EngineError> {
    let units = block_units(&pass.state().config, name);
    let mut h = unit_forward(pass, &units[0], x)?;
    for u in &units[1..] {
        h = unit_forward(pass, u, &h)?;
    }
    Ok(h)
}

/// The whole network, written out.
fn forward(pass: &mut Pass, x: &Tensor) -> Result<VNetOutput, EngineError> {
    let x1 = block_forward(pass, "block_one", x)?;
    let x1_dw = block_forward(pass, "block_one_dw", &x1)?;
    let x2 = block_forward(pass, "block_two", &x1_dw)?;
    let x2_dw = block_forward(pass, "block_two_dw", &x2)?;
    let x3 = block_forward(pass, "block_three", &x2_dw)?;
    let x3_dw = block_forward(pass, "block_three_dw", &x3)?;
    let x4 = block_forward(pass, "block_four", &x3_dw)?;
    let x4_dw = block_forward(pass, "block_four_dw", &x4)?;
    let x5 = block_forward(pass, "block_five", &x4_dw)?;
    let x5_up = add_forward(&block_forward(pass, "block_five_up", &x5)?, &x4);
    let x6 = block_forward(pass, "block_six", &x5_up)?;
    let x6_up = add_forward(&block_forward(pass, "block_six_up", &x6)?, &x3);
    let x7 = block_forward(pass, "block_seven", &x6_up)?;
    let x7_up = add_forward(&block_forward(pass, "block_seven_up", &x7)?, &x2);
    let x8 = block_forward(pass, "block_eight", &x7_up)?;
    let x8_up = add_forward(&block_forward(pass, "block_eight_up", &x8)?, &x1);
    let features = block_forward(pass, "block_nine", &x8_up)?;
    let s = pass.state();
    let logits = conv3d_forward(
        &features,
        s.tensor("out_conv.weight"),
        Some(s.tensor("out_conv.bias")),
        &out_conv_geom(),
    );
    Ok(VNetOutput { features, logits })
}

/// Checks an input batch for this network: `[N, in_channels, D, H, W]`, `N >= 1`, each of
/// `D, H, W` a positive multiple of 16, all values finite. `name` names the tensor in errors.
pub fn check_input(cfg: &VNetConfig, name: &str, x: &Tensor) -> Result<(), EngineError> {
    let shape_err = || EngineError::Shape {
        name: name.to_string(),
        got: x.shape.clone(),
        expected: format!("[N, {}, D, H, W] with N >= 1", cfg.in_channels),
    };
    if x.shape.len() != 5 || x.shape[0] == 0 || x.shape[1] != cfg.in_channels {
        return Err(shape_err());
    }
    let dims = [x.shape[2], x.shape[3], x.shape[4]];
    if dims.iter().any(|&d| d == 0 || d % 16 != 0) {
        return Err(EngineError::NotDivisibleBy16 {
            name: name.to_string(),
            dims,
        });
    }
    check_finite(name, x)
}

/// Checks every f32 entry of a state for NaN or infinity.
pub fn check_state(state: &VNetState) -> Result<(), EngineError> {
    for e in state.entries() {
        if let crate::state::Value::F32(t) = &e.value {
            check_finite(&e.name, t)?;
        }
    }
    Ok(())
}

/// Evaluation-mode forward (BatchNorm uses the running statistics; the state is not changed).
pub fn forward_eval(state: &VNetState, x: &Tensor) -> Result<VNetOutput, EngineError> {
    check_input(&state.config, "image", x)?;
    forward(&mut Pass::Eval(state), x)
}

/// Training-mode forward: BatchNorm normalises with the batch statistics and updates the running
/// statistics and `num_batches_tracked`; returns the cache for [`backward`].
pub fn forward_train(
    state: &mut VNetState,
    x: &Tensor,
) -> Result<(VNetOutput, VNetCache), EngineError> {
    check_input(&state.config, "image", x)?;
    let mut units = HashMap::new();
    let out = forward(&mut Pass::Train(state, &mut units), x)?;
    let cache = VNetCache {
        units,
        features: out.features.clone(),
    };
    Ok((out, cache))
}

/// Gradients by parameter name, filled by the backward.
type Grads = HashMap<String, Tensor>;

/// Backward through one unit: returns the gradient w.r.t. the unit input when `need_input`.
fn unit_backward(
    state: &VNetState,
    cache: &VNetCache,
    u: &Unit,
    dy: &Tensor,
    grads: &mut Grads,
    need_input: bool,
) -> Option<Tensor> {
    let c = &cache.units[&u.conv];
    let d_bn_out = relu_backward(dy, &c.output);
    let (dz, d_gamma, d_beta) =
        batchnorm3d_backward(&d_bn_out, state.tensor(&format!("{}.weight", u.bn)), &c.bn);
    grads.insert(format!("{}.weight", u.bn), d_gamma);
    grads.insert(format!("{}.bias", u.bn), d_beta);
    let w = state.tensor(&format!("{}.weight", u.conv));
    let g = geom(u.kind);
    let (dw, dx) = match u.kind {
        UnitKind::Conv | UnitKind::Down => {
            let input_dims = [c.input.shape[2], c.input.shape[3], c.input.shape[4]];
            (
                conv3d_backward_weight(&c.input, &dz, &g),
                need_input.then(|| conv3d_backward_input(&dz, w, &g, input_dims)),
            )
        }
        UnitKind::Up => (
            conv_transpose3d_backward_weight(&c.input, &dz, &g),
            need_input.then(|| conv_transpose3d_backward_input(&dz, w, &g)),
        ),
    };
    grads.insert(format!("{}.weight", u.conv), dw);
    if u.kind != UnitKind::Conv {
        grads.insert(format!("{}.bias", u.conv), bias_backward(&dz));
    }
    dx
}

/// Backward through all units of block `name`, last unit first.
fn block_backward(
    state: &VNetState,
    cache: &VNetCache,
    name: &str,
    dy: &Tensor,
    grads: &mut Grads,
    need_input: bool,
) -> Option<Tensor> {
    let units = block_units(&state.config, name);
    let mut d = dy.clone();
    for (i, u) in units.iter().enumerate().rev() {
        match unit_backward(state, cache, u, &d, grads, need_input || i > 0) {
            Some(dx) => d = dx,
            None => return None,
        }
    }
    Some(d)
}

/// Backward of a training-mode forward: the gradient of every trainable parameter, in
/// [`VNetState::parameters`] order, given the gradient w.r.t. the logits and, optionally, an
/// extra gradient w.r.t. the features.
pub fn backward(
    state: &VNetState,
    cache: &VNetCache,
    d_logits: &Tensor,
    d_features_extra: Option<&Tensor>,
) -> Vec<Tensor> {
    let mut grads = Grads::new();
    let bwd = |name: &str, dy: &Tensor, grads: &mut Grads| {
        block_backward(state, cache, name, dy, grads, true).expect("input gradient requested")
    };
    let f = &cache.features;
    grads.insert(
        "out_conv.weight".into(),
        conv3d_backward_weight(f, d_logits, &out_conv_geom()),
    );
    grads.insert("out_conv.bias".into(), bias_backward(d_logits));
    let mut d_features = conv3d_backward_input(
        d_logits,
        state.tensor("out_conv.weight"),
        &out_conv_geom(),
        [f.shape[2], f.shape[3], f.shape[4]],
    );
    if let Some(extra) = d_features_extra {
        d_features = add_forward(&d_features, extra);
    }
    let d_x8_up = bwd("block_nine", &d_features, &mut grads);
    let d_x8 = bwd("block_eight_up", &d_x8_up, &mut grads);
    let d_x7_up = bwd("block_eight", &d_x8, &mut grads);
    let d_x7 = bwd("block_seven_up", &d_x7_up, &mut grads);
    let d_x6_up = bwd("block_seven", &d_x7, &mut grads);
    let d_x6 = bwd("block_six_up", &d_x6_up, &mut grads);
    let d_x5_up = bwd("block_six", &d_x6, &mut grads);
    let d_x5 = bwd("block_five_up", &d_x5_up, &mut grads);
    let d_x4_dw = bwd("block_five", &d_x5, &mut grads);
    let d_x4 = add_forward(&bwd("block_four_dw", &d_x4_dw, &mut grads), &d_x5_up);
    let d_x3_dw = bwd("block_four", &d_x4, &mut grads);
    let d_x3 = add_forward(&bwd("block_three_dw", &d_x3_dw, &mut grads), &d_x6_up);
    let d_x2_dw = bwd("block_three", &d_x3, &mut grads);
    let d_x2 = add_forward(&bwd("block_two_dw", &d_x2_dw, &mut grads), &d_x7_up);
    let d_x1_dw = bwd("block_two", &d_x2, &mut grads);
    let d_x1 = add_forward(&bwd("block_one_dw", &d_x1_dw, &mut grads), &d_x8_up);
    block_backward(state, cache, "block_one", &d_x1, &mut grads, false);
    state
        .parameters()
        .map(|(name, _)| {
            grads
                .remove(name)
                .unwrap_or_else(|| panic!("no gradient for {name}"))
        })
        .collect()
}
