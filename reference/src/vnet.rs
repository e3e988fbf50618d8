//! The VNet of the method page (section 4), forward and backward, written out layer call by
//! layer call, once, for every [`Engine`] (the CPU here, a GPU in `protokd-gpu`): the functions
//! ending in `_on` take the engine; the others run on the CPU.
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

use crate::engine::{Engine, Spec};
use crate::error::EngineError;
use crate::layers::conv3d::ConvGeom;
use crate::state::{block_units, Unit, UnitKind, VNetConfig, VNetState};
use crate::tensor::Shaped;
use crate::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// What the network returns.
#[derive(Clone, Debug, PartialEq)]
pub struct VNetOutput<T = Tensor> {
    /// Output of `block_nine`, `[N, F, D, H, W]`.
    pub features: T,
    /// Output of `out_conv`, `[N, classes, D, H, W]`.
    pub logits: T,
}

/// What a training-mode unit keeps for its backward: its input and output are shared with the
/// units before and after it (an [`Arc`], not a copy; the image, the first unit's input, is
/// copied once).
struct UnitCache<E: Engine + ?Sized> {
    input: Arc<E::T>,
    bn: E::BnCache,
    output: Arc<E::T>,
}

/// Everything a training-mode forward keeps for the backward.
pub struct VNetCache<E: Engine + ?Sized = Spec> {
    units: HashMap<String, UnitCache<E>>,
    features: Arc<E::T>,
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
enum Pass<'a, E: Engine + ?Sized> {
    Eval(&'a VNetState<E::T>),
    Train(
        &'a mut VNetState<E::T>,
        &'a mut HashMap<String, UnitCache<E>>,
    ),
}

impl<E: Engine + ?Sized> Pass<'_, E> {
    fn state(&self) -> &VNetState<E::T> {
        match self {
            Pass::Eval(s) => s,
            Pass::Train(s, _) => s,
        }
    }
}

/// The conv of one unit (no BatchNorm, no ReLU).
fn unit_conv<E: Engine + ?Sized>(
    e: &E,
    state: &VNetState<E::T>,
    u: &Unit,
    x: &E::T,
) -> Result<E::T, EngineError> {
    let w = state.tensor(&format!("{}.weight", u.conv));
    let bias = || state.tensor(&format!("{}.bias", u.conv));
    match u.kind {
        UnitKind::Conv => e.conv3d_forward(x, w, None, &geom(u.kind)),
        UnitKind::Down => e.conv3d_forward(x, w, Some(bias()), &geom(u.kind)),
        UnitKind::Up => e.conv_transpose3d_forward(x, w, Some(bias()), &geom(u.kind)),
    }
}

/// `relu(batchnorm(conv(x)))` for one unit: the convolution, then BatchNorm and ReLU in one
/// engine call ([`Engine::batchnorm3d_relu_forward_eval`] / `_train`: the two layers one after
/// the other in the spec, one fused pass on the fast CPU and GPU engines). `share` gives `x` as
/// an [`Arc`] for the training cache; evaluation mode never calls it.
fn unit_forward<E: Engine + ?Sized>(
    e: &E,
    pass: &mut Pass<E>,
    u: &Unit,
    x: &E::T,
    share: impl FnOnce() -> Arc<E::T>,
) -> Result<Arc<E::T>, EngineError> {
    let z = unit_conv(e, pass.state(), u, x)?;
    match pass {
        Pass::Eval(s) => {
            let t = |what: &str| s.tensor(&format!("{}.{what}", u.bn));
            e.batchnorm3d_relu_forward_eval(
                &z,
                t("weight"),
                t("bias"),
                t("running_mean"),
                t("running_var"),
            )
            .map(Arc::new)
        }
        Pass::Train(s, caches) => {
            let (w, b, rm, rv, n) = s.batchnorm_mut(&u.bn);
            let (output, bn) = e
                .batchnorm3d_relu_forward_train(&z, w, b, rm, rv, n)
                .map_err(|err| match err {
                    EngineError::BatchTooSmall(m) => {
                        EngineError::BatchTooSmall(format!("{}: {m}", u.bn))
                    }
                    other => other,
                })?;
            let output = Arc::new(output);
            caches.insert(
                u.conv.clone(),
                UnitCache {
                    input: share(),
                    bn,
                    output: Arc::clone(&output),
                },
            );
            Ok(output)
        }
    }
}

/// All units of block `name` in order, on `x` (`share`: see [`unit_forward`]).
fn block_forward_with<E: Engine + ?Sized>(
    e: &E,
    pass: &mut Pass<E>,
    name: &str,
    x: &E::T,
    share: impl FnOnce() -> Arc<E::T>,
) -> Result<Arc<E::T>, EngineError> {
    let units = block_units(&pass.state().config, name);
    let mut h = unit_forward(e, pass, &units[0], x, share)?;
    for u in &units[1..] {
        h = unit_forward(e, pass, u, &h, || Arc::clone(&h))?;
    }
    Ok(h)
}

/// [`block_forward_with`] on a tensor the forward already shares.
fn block_forward<E: Engine + ?Sized>(
    e: &E,
    pass: &mut Pass<E>,
    name: &str,
    x: &Arc<E::T>,
) -> Result<Arc<E::T>, EngineError> {
    block_forward_with(e, pass, name, x, || Arc::clone(x))
}

/// The whole network, written out: `(features, logits)`, the features shared with the training
/// cache.
fn forward<E: Engine + ?Sized>(
    e: &E,
    pass: &mut Pass<E>,
    x: &E::T,
) -> Result<(Arc<E::T>, E::T), EngineError> {
    // A skip connection: `up + skip`, one addition per value.
    let add = |up: Arc<E::T>, skip: &E::T| e.add(&up, skip).map(Arc::new);
    // The image is copied only for the training cache.
    let x1 = block_forward_with(e, pass, "block_one", x, || Arc::new(x.clone()))?;
    let x1_dw = block_forward(e, pass, "block_one_dw", &x1)?;
    let x2 = block_forward(e, pass, "block_two", &x1_dw)?;
    let x2_dw = block_forward(e, pass, "block_two_dw", &x2)?;
    let x3 = block_forward(e, pass, "block_three", &x2_dw)?;
    let x3_dw = block_forward(e, pass, "block_three_dw", &x3)?;
    let x4 = block_forward(e, pass, "block_four", &x3_dw)?;
    let x4_dw = block_forward(e, pass, "block_four_dw", &x4)?;
    let x5 = block_forward(e, pass, "block_five", &x4_dw)?;
    let x5_up = add(block_forward(e, pass, "block_five_up", &x5)?, &x4)?;
    let x6 = block_forward(e, pass, "block_six", &x5_up)?;
    let x6_up = add(block_forward(e, pass, "block_six_up", &x6)?, &x3)?;
    let x7 = block_forward(e, pass, "block_seven", &x6_up)?;
    let x7_up = add(block_forward(e, pass, "block_seven_up", &x7)?, &x2)?;
    let x8 = block_forward(e, pass, "block_eight", &x7_up)?;
    let x8_up = add(block_forward(e, pass, "block_eight_up", &x8)?, &x1)?;
    let features = block_forward(e, pass, "block_nine", &x8_up)?;
    let s = pass.state();
    let logits = e.conv3d_forward(
        &features,
        s.tensor("out_conv.weight"),
        Some(s.tensor("out_conv.bias")),
        &out_conv_geom(),
    )?;
    Ok((features, logits))
}

/// Checks an input batch for this network: `[N, in_channels, D, H, W]`, `N >= 1`, each of
/// `D, H, W` a positive multiple of 16, all values finite. `name` names the tensor in errors.
pub fn check_input<E: Engine + ?Sized>(
    e: &E,
    cfg: &VNetConfig,
    name: &str,
    x: &E::T,
) -> Result<(), EngineError> {
    let shape_err = || EngineError::Shape {
        name: name.to_string(),
        got: x.shape().to_vec(),
        expected: format!("[N, {}, D, H, W] with N >= 1", cfg.in_channels),
    };
    let shape = x.shape();
    if shape.len() != 5 || shape[0] == 0 || shape[1] != cfg.in_channels {
        return Err(shape_err());
    }
    let dims = [shape[2], shape[3], shape[4]];
    if dims.iter().any(|&d| d == 0 || d % 16 != 0) {
        return Err(EngineError::NotDivisibleBy16 {
            name: name.to_string(),
            dims,
        });
    }
    e.check_finite(name, x)
}

/// Checks every f32 entry of a state for NaN or infinity.
pub fn check_state<E: Engine + ?Sized>(e: &E, state: &VNetState<E::T>) -> Result<(), EngineError> {
    for entry in state.entries() {
        if let crate::state::Value::F32(t) = &entry.value {
            e.check_finite(&entry.name, t)?;
        }
    }
    Ok(())
}

/// Evaluation-mode forward (BatchNorm uses the running statistics; the state is not changed).
pub fn forward_eval_on<E: Engine + ?Sized>(
    e: &E,
    state: &VNetState<E::T>,
    x: &E::T,
) -> Result<VNetOutput<E::T>, EngineError> {
    check_input(e, &state.config, "image", x)?;
    let (features, logits) = forward(e, &mut Pass::Eval(state), x)?;
    Ok(VNetOutput {
        // Nothing else holds them in evaluation mode: no copy.
        features: Arc::unwrap_or_clone(features),
        logits,
    })
}

/// [`forward_eval_on`] on the CPU.
pub fn forward_eval(state: &VNetState, x: &Tensor) -> Result<VNetOutput, EngineError> {
    forward_eval_on(&Spec, state, x)
}

/// Training-mode forward: BatchNorm normalises with the batch statistics and updates the running
/// statistics and `num_batches_tracked`; returns the cache for [`backward_on`].
#[allow(clippy::type_complexity)]
pub fn forward_train_on<E: Engine + ?Sized>(
    e: &E,
    state: &mut VNetState<E::T>,
    x: &E::T,
) -> Result<(VNetOutput<E::T>, VNetCache<E>), EngineError> {
    check_input(e, &state.config, "image", x)?;
    let mut units = HashMap::new();
    let (features, logits) = forward(e, &mut Pass::Train(state, &mut units), x)?;
    // The caller's features are a copy: the cache keeps them for the backward.
    let out = VNetOutput {
        features: (*features).clone(),
        logits,
    };
    Ok((out, VNetCache { units, features }))
}

/// [`forward_train_on`] on the CPU.
pub fn forward_train(
    state: &mut VNetState,
    x: &Tensor,
) -> Result<(VNetOutput, VNetCache), EngineError> {
    forward_train_on(&Spec, state, x)
}

/// Gradients by parameter name, filled by the backward.
type Grads<T> = HashMap<String, T>;

/// Backward through one unit: returns the gradient w.r.t. the unit input when `need_input`.
fn unit_backward<E: Engine + ?Sized>(
    e: &E,
    state: &VNetState<E::T>,
    cache: &VNetCache<E>,
    u: &Unit,
    dy: &E::T,
    grads: &mut Grads<E::T>,
    need_input: bool,
) -> Result<Option<E::T>, EngineError> {
    let c = &cache.units[&u.conv];
    let d_bn_out = e.relu_backward(dy, &c.output)?;
    let (dz, d_gamma, d_beta) =
        e.batchnorm3d_backward(&d_bn_out, state.tensor(&format!("{}.weight", u.bn)), &c.bn)?;
    grads.insert(format!("{}.weight", u.bn), d_gamma);
    grads.insert(format!("{}.bias", u.bn), d_beta);
    let w = state.tensor(&format!("{}.weight", u.conv));
    let g = geom(u.kind);
    let (dw, dx) = match u.kind {
        UnitKind::Conv | UnitKind::Down => {
            let s = c.input.shape();
            let input_dims = [s[2], s[3], s[4]];
            (
                e.conv3d_backward_weight(&c.input, &dz, &g)?,
                match need_input {
                    true => Some(e.conv3d_backward_input(&dz, w, &g, input_dims)?),
                    false => None,
                },
            )
        }
        UnitKind::Up => (
            e.conv_transpose3d_backward_weight(&c.input, &dz, &g)?,
            match need_input {
                true => Some(e.conv_transpose3d_backward_input(&dz, w, &g)?),
                false => None,
            },
        ),
    };
    grads.insert(format!("{}.weight", u.conv), dw);
    if u.kind != UnitKind::Conv {
        grads.insert(format!("{}.bias", u.conv), e.bias_backward(&dz)?);
    }
    Ok(dx)
}

/// Backward through all units of block `name`, last unit first.
fn block_backward<E: Engine + ?Sized>(
    e: &E,
    state: &VNetState<E::T>,
    cache: &VNetCache<E>,
    name: &str,
    dy: &E::T,
    grads: &mut Grads<E::T>,
    need_input: bool,
) -> Result<Option<E::T>, EngineError> {
    let units = block_units(&state.config, name);
    let mut d = dy.clone();
    for (i, u) in units.iter().enumerate().rev() {
        match unit_backward(e, state, cache, u, &d, grads, need_input || i > 0)? {
            Some(dx) => d = dx,
            None => return Ok(None),
        }
    }
    Ok(Some(d))
}

/// Backward of a training-mode forward: the gradient of every trainable parameter, in
/// [`VNetState::parameters`] order, given the gradient w.r.t. the logits and, optionally, an
/// extra gradient w.r.t. the features.
pub fn backward_on<E: Engine + ?Sized>(
    e: &E,
    state: &VNetState<E::T>,
    cache: &VNetCache<E>,
    d_logits: &E::T,
    d_features_extra: Option<&E::T>,
) -> Result<Vec<E::T>, EngineError> {
    let mut grads = Grads::new();
    let bwd = |name: &str, dy: &E::T, grads: &mut Grads<E::T>| {
        block_backward(e, state, cache, name, dy, grads, true)
            .map(|d| d.expect("input gradient requested"))
    };
    let f = &cache.features;
    let fs = f.shape();
    grads.insert(
        "out_conv.weight".into(),
        e.conv3d_backward_weight(f, d_logits, &out_conv_geom())?,
    );
    grads.insert("out_conv.bias".into(), e.bias_backward(d_logits)?);
    let mut d_features = e.conv3d_backward_input(
        d_logits,
        state.tensor("out_conv.weight"),
        &out_conv_geom(),
        [fs[2], fs[3], fs[4]],
    )?;
    if let Some(extra) = d_features_extra {
        d_features = e.add(&d_features, extra)?;
    }
    let d_x8_up = bwd("block_nine", &d_features, &mut grads)?;
    let d_x8 = bwd("block_eight_up", &d_x8_up, &mut grads)?;
    let d_x7_up = bwd("block_eight", &d_x8, &mut grads)?;
    let d_x7 = bwd("block_seven_up", &d_x7_up, &mut grads)?;
    let d_x6_up = bwd("block_seven", &d_x7, &mut grads)?;
    let d_x6 = bwd("block_six_up", &d_x6_up, &mut grads)?;
    let d_x5_up = bwd("block_six", &d_x6, &mut grads)?;
    let d_x5 = bwd("block_five_up", &d_x5_up, &mut grads)?;
    let d_x4_dw = bwd("block_five", &d_x5, &mut grads)?;
    let d_x4 = e.add(&bwd("block_four_dw", &d_x4_dw, &mut grads)?, &d_x5_up)?;
    let d_x3_dw = bwd("block_four", &d_x4, &mut grads)?;
    let d_x3 = e.add(&bwd("block_three_dw", &d_x3_dw, &mut grads)?, &d_x6_up)?;
    let d_x2_dw = bwd("block_three", &d_x3, &mut grads)?;
    let d_x2 = e.add(&bwd("block_two_dw", &d_x2_dw, &mut grads)?, &d_x7_up)?;
    let d_x1_dw = bwd("block_two", &d_x2, &mut grads)?;
    let d_x1 = e.add(&bwd("block_one_dw", &d_x1_dw, &mut grads)?, &d_x8_up)?;
    block_backward(e, state, cache, "block_one", &d_x1, &mut grads, false)?;
    Ok(state
        .parameters()
        .map(|(name, _)| {
            grads
                .remove(name)
                .unwrap_or_else(|| panic!("no gradient for {name}"))
        })
        .collect())
}

/// [`backward_on`] on the CPU.
pub fn backward(
    state: &VNetState,
    cache: &VNetCache,
    d_logits: &Tensor,
    d_features_extra: Option<&Tensor>,
) -> Vec<Tensor> {
    backward_on(&Spec, state, cache, d_logits, d_features_extra)
        .expect("the CPU engine does not fail in the backward")
}
