//! The engine interface: the operations the VNet and the training steps are written in.
//!
//! [`vnet`](crate::vnet) and [`step`](crate::step) are written ONCE, generic over an
//! [`Engine`]: the sequence of layer calls, the order in which gradients are added, and the
//! loss weighting live there and nowhere else. An engine supplies the operations on its own
//! tensors:
//!
//! * [`Spec`](type@Spec) (this crate): the specification's layer and loss functions of
//!   [`layers`](crate::layers), [`losses`](crate::losses) and [`adam`](crate::adam) on host
//!   [`Tensor`]s, the plain loops that every other engine is held to;
//! * the fast CPU engine (crate `protokd-cpu`, `protokd_cpu::Cpu`): the same operations on
//!   host tensors with register blocks, SIMD and threads, and the spec's bits; where it has no
//!   faster kernel it calls the spec's function;
//! * the GPU engine (crate `protokd-gpu`, `protokd_gpu::Gpu`, on CUDA or emulated): the same
//!   operations as CUDA kernels on device tensors, each giving the bits of the function of the
//!   same name here.
//!
//! Engines are values: a caller (the CLI, a test) builds the one it wants and passes it by
//! reference to [`crate::vnet`] and [`crate::step`]; nothing is selected through process-wide
//! state.
//!
//! Every method is the reference function of the same name (its docs give the formula and the
//! order of operations); the losses return the loss value together with the gradient of
//! `scale * loss` (the forward and the backward of the loss module, one after the other).
//! Errors are [`EngineError`]s: user data (non-finite values, a batch too small for BatchNorm)
//! or, on a device, its failures.

use crate::adam::AdamScalars;
use crate::error::EngineError;
use crate::layers::batchnorm3d::{self, BnCache};
use crate::layers::conv3d::{self, ConvGeom};
use crate::layers::{conv_transpose3d, relu, softmax};
use crate::losses::{ce, dice, kd, proto};
use crate::real::Real;
use crate::tensor::Shaped;
use crate::{LabelMap, Tensor};
use std::marker::PhantomData;

/// Operations on one kind of tensor; see the module docs.
pub trait Engine {
    /// The float type of its tensors and scalars (`f32` for every engine of the product; `f64`
    /// for the spec as the accuracy yardstick, [`SpecOf<f64>`]).
    type R: Real;
    /// A tensor of [`Engine::R`] values, row-major, last axis fastest.
    type T: Clone + Shaped;
    /// A batch of label maps `[N, D, H, W]`.
    type Labels;
    /// What the BatchNorm training backward needs from its forward.
    type BnCache;

    /// [`conv3d::conv3d_forward`].
    fn conv3d_forward(
        &self,
        x: &Self::T,
        w: &Self::T,
        bias: Option<&Self::T>,
        g: &ConvGeom,
    ) -> Result<Self::T, EngineError>;
    /// [`conv3d::conv3d_backward_input`].
    fn conv3d_backward_input(
        &self,
        dy: &Self::T,
        w: &Self::T,
        g: &ConvGeom,
        input_dims: [usize; 3],
    ) -> Result<Self::T, EngineError>;
    /// [`conv3d::conv3d_backward_weight`].
    fn conv3d_backward_weight(
        &self,
        x: &Self::T,
        dy: &Self::T,
        g: &ConvGeom,
    ) -> Result<Self::T, EngineError>;
    /// [`conv3d::bias_backward`].
    fn bias_backward(&self, dy: &Self::T) -> Result<Self::T, EngineError>;
    /// [`conv_transpose3d::conv_transpose3d_forward`].
    fn conv_transpose3d_forward(
        &self,
        x: &Self::T,
        w: &Self::T,
        bias: Option<&Self::T>,
        g: &ConvGeom,
    ) -> Result<Self::T, EngineError>;
    /// [`conv_transpose3d::conv_transpose3d_backward_input`].
    fn conv_transpose3d_backward_input(
        &self,
        dy: &Self::T,
        w: &Self::T,
        g: &ConvGeom,
    ) -> Result<Self::T, EngineError>;
    /// [`conv_transpose3d::conv_transpose3d_backward_weight`].
    fn conv_transpose3d_backward_weight(
        &self,
        x: &Self::T,
        dy: &Self::T,
        g: &ConvGeom,
    ) -> Result<Self::T, EngineError>;
    /// [`batchnorm3d::batchnorm3d_forward_train`]; a batch with fewer than two values per
    /// channel is [`EngineError::BatchTooSmall`] (changing nothing).
    #[allow(clippy::too_many_arguments)]
    fn batchnorm3d_forward_train(
        &self,
        x: &Self::T,
        weight: &Self::T,
        bias: &Self::T,
        running_mean: &mut Self::T,
        running_var: &mut Self::T,
        num_batches_tracked: &mut i64,
    ) -> Result<(Self::T, Self::BnCache), EngineError>;
    /// [`batchnorm3d::batchnorm3d_forward_eval`].
    fn batchnorm3d_forward_eval(
        &self,
        x: &Self::T,
        weight: &Self::T,
        bias: &Self::T,
        running_mean: &Self::T,
        running_var: &Self::T,
    ) -> Result<Self::T, EngineError>;
    /// `relu(batchnorm(x))` in training mode, the cache being BatchNorm's (what every VNet
    /// unit runs). The specification, and the default: [`Engine::batchnorm3d_forward_train`]
    /// then [`Engine::relu_forward`]. The fast CPU and GPU engines fuse the two passes (the
    /// BatchNorm output is never stored), with the same bits.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm3d_relu_forward_train(
        &self,
        x: &Self::T,
        weight: &Self::T,
        bias: &Self::T,
        running_mean: &mut Self::T,
        running_var: &mut Self::T,
        num_batches_tracked: &mut i64,
    ) -> Result<(Self::T, Self::BnCache), EngineError> {
        let (y, cache) = self.batchnorm3d_forward_train(
            x,
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
        )?;
        Ok((self.relu_forward(&y)?, cache))
    }
    /// `relu(batchnorm(x))` in evaluation mode. The specification, and the default:
    /// [`Engine::batchnorm3d_forward_eval`] then [`Engine::relu_forward`] (fused likewise by
    /// the fast CPU and GPU engines).
    fn batchnorm3d_relu_forward_eval(
        &self,
        x: &Self::T,
        weight: &Self::T,
        bias: &Self::T,
        running_mean: &Self::T,
        running_var: &Self::T,
    ) -> Result<Self::T, EngineError> {
        let y = self.batchnorm3d_forward_eval(x, weight, bias, running_mean, running_var)?;
        self.relu_forward(&y)
    }
    /// [`batchnorm3d::batchnorm3d_backward`]: `(dx, dweight, dbias)`.
    #[allow(clippy::type_complexity)]
    fn batchnorm3d_backward(
        &self,
        dy: &Self::T,
        weight: &Self::T,
        cache: &Self::BnCache,
    ) -> Result<(Self::T, Self::T, Self::T), EngineError>;
    /// [`relu::relu_forward`].
    fn relu_forward(&self, x: &Self::T) -> Result<Self::T, EngineError>;
    /// [`relu::relu_backward`] (from the forward's output `y`).
    fn relu_backward(&self, dy: &Self::T, y: &Self::T) -> Result<Self::T, EngineError>;
    /// [`relu::add_forward`]: `a + b` element by element.
    fn add(&self, a: &Self::T, b: &Self::T) -> Result<Self::T, EngineError>;
    /// [`Tensor::select_channels`].
    fn select_channels(&self, x: &Self::T, channels: &[usize]) -> Result<Self::T, EngineError>;
    /// [`softmax::softmax`] over the channel axis.
    fn softmax(&self, x: &Self::T) -> Result<Self::T, EngineError>;
    /// [`ce::ce_loss`] and [`ce::ce_backward`] with `scale`.
    fn ce(
        &self,
        logits: &Self::T,
        labels: &Self::Labels,
        scale: Self::R,
    ) -> Result<(Self::R, Self::T), EngineError>;
    /// [`dice::dice_loss`] and [`dice::dice_backward`] with `scale`.
    fn dice(
        &self,
        logits: &Self::T,
        labels: &Self::Labels,
        scale: Self::R,
    ) -> Result<(Self::R, Self::T), EngineError>;
    /// [`kd::kd_loss`] and [`kd::kd_backward`] with `scale` (gradient w.r.t. the student).
    fn kd(
        &self,
        student_logits: &Self::T,
        teacher_logits: &Self::T,
        temperature: Self::R,
        scale: Self::R,
    ) -> Result<(Self::R, Self::T), EngineError>;
    /// [`proto::proto_loss`] and [`proto::proto_backward`] with `scale` (gradient w.r.t. the
    /// student features).
    fn proto(
        &self,
        student_features: &Self::T,
        teacher_features: &Self::T,
        labels: &Self::Labels,
        scale: Self::R,
    ) -> Result<(Self::R, Self::T), EngineError>;
    /// [`AdamScalars::update`] on every element: new `(p, m, v)` in place.
    fn adam_update(
        &self,
        p: &mut Self::T,
        grad: &Self::T,
        m: &mut Self::T,
        v: &mut Self::T,
        s: &AdamScalars<Self::R>,
    ) -> Result<(), EngineError>;
    /// [`crate::error::check_finite`]: the first NaN or infinity, as an error naming `name`.
    fn check_finite(&self, name: &str, x: &Self::T) -> Result<(), EngineError>;
}

/// The specification as an engine: this crate's functions on host [`Tensor`]s of `R` values.
/// It never fails but for user data. [`Spec`](type@Spec) is the product's (`f32`); `SpecOf<f64>` is the
/// same text evaluated in `f64`, the yardstick of the accuracy report.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecOf<R>(PhantomData<R>);

impl<R> SpecOf<R> {
    /// The spec evaluated in `R`.
    pub const fn new() -> Self {
        SpecOf(PhantomData)
    }
}

/// The specification in `f32`: the product's bits.
pub type Spec = SpecOf<f32>;

/// The value of the type [`Spec`](type@Spec), so that `Spec` reads the same as a type and as an engine.
#[allow(non_upper_case_globals)]
pub const Spec: Spec = SpecOf::new();

impl<R: Real> Engine for SpecOf<R> {
    type R = R;
    type T = Tensor<R>;
    type Labels = LabelMap;
    type BnCache = BnCache<R>;

    fn conv3d_forward(
        &self,
        x: &Tensor<R>,
        w: &Tensor<R>,
        bias: Option<&Tensor<R>>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        Ok(conv3d::conv3d_forward(x, w, bias, g))
    }
    fn conv3d_backward_input(
        &self,
        dy: &Tensor<R>,
        w: &Tensor<R>,
        g: &ConvGeom,
        input_dims: [usize; 3],
    ) -> Result<Tensor<R>, EngineError> {
        Ok(conv3d::conv3d_backward_input(dy, w, g, input_dims))
    }
    fn conv3d_backward_weight(
        &self,
        x: &Tensor<R>,
        dy: &Tensor<R>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        Ok(conv3d::conv3d_backward_weight(x, dy, g))
    }
    fn bias_backward(&self, dy: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        Ok(conv3d::bias_backward(dy))
    }
    fn conv_transpose3d_forward(
        &self,
        x: &Tensor<R>,
        w: &Tensor<R>,
        bias: Option<&Tensor<R>>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        Ok(conv_transpose3d::conv_transpose3d_forward(x, w, bias, g))
    }
    fn conv_transpose3d_backward_input(
        &self,
        dy: &Tensor<R>,
        w: &Tensor<R>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        Ok(conv_transpose3d::conv_transpose3d_backward_input(dy, w, g))
    }
    fn conv_transpose3d_backward_weight(
        &self,
        x: &Tensor<R>,
        dy: &Tensor<R>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        Ok(conv_transpose3d::conv_transpose3d_backward_weight(x, dy, g))
    }
    fn batchnorm3d_forward_train(
        &self,
        x: &Tensor<R>,
        weight: &Tensor<R>,
        bias: &Tensor<R>,
        running_mean: &mut Tensor<R>,
        running_var: &mut Tensor<R>,
        num_batches_tracked: &mut i64,
    ) -> Result<(Tensor<R>, BnCache<R>), EngineError> {
        batchnorm3d::batchnorm3d_forward_train(
            x,
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
        )
        .map_err(EngineError::from)
    }
    fn batchnorm3d_forward_eval(
        &self,
        x: &Tensor<R>,
        weight: &Tensor<R>,
        bias: &Tensor<R>,
        running_mean: &Tensor<R>,
        running_var: &Tensor<R>,
    ) -> Result<Tensor<R>, EngineError> {
        Ok(batchnorm3d::batchnorm3d_forward_eval(
            x,
            weight,
            bias,
            running_mean,
            running_var,
        ))
    }
    fn batchnorm3d_backward(
        &self,
        dy: &Tensor<R>,
        weight: &Tensor<R>,
        cache: &BnCache<R>,
    ) -> Result<(Tensor<R>, Tensor<R>, Tensor<R>), EngineError> {
        Ok(batchnorm3d::batchnorm3d_backward(dy, weight, cache))
    }
    fn relu_forward(&self, x: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        Ok(relu::relu_forward(x))
    }
    fn relu_backward(&self, dy: &Tensor<R>, y: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        Ok(relu::relu_backward(dy, y))
    }
    fn add(&self, a: &Tensor<R>, b: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        Ok(relu::add_forward(a, b))
    }
    fn select_channels(&self, x: &Tensor<R>, channels: &[usize]) -> Result<Tensor<R>, EngineError> {
        Ok(x.select_channels(channels))
    }
    fn softmax(&self, x: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        Ok(softmax::softmax(x))
    }
    fn ce(
        &self,
        logits: &Tensor<R>,
        labels: &LabelMap,
        scale: R,
    ) -> Result<(R, Tensor<R>), EngineError> {
        let f = ce::ce_loss(logits, labels);
        Ok((f.loss, ce::ce_backward(&f, labels, scale)))
    }
    fn dice(
        &self,
        logits: &Tensor<R>,
        labels: &LabelMap,
        scale: R,
    ) -> Result<(R, Tensor<R>), EngineError> {
        let f = dice::dice_loss(logits, labels);
        Ok((f.loss, dice::dice_backward(&f, labels, scale)))
    }
    fn kd(
        &self,
        student_logits: &Tensor<R>,
        teacher_logits: &Tensor<R>,
        temperature: R,
        scale: R,
    ) -> Result<(R, Tensor<R>), EngineError> {
        let f = kd::kd_loss(student_logits, teacher_logits, temperature);
        Ok((f.loss, kd::kd_backward(&f, scale)))
    }
    fn proto(
        &self,
        student_features: &Tensor<R>,
        teacher_features: &Tensor<R>,
        labels: &LabelMap,
        scale: R,
    ) -> Result<(R, Tensor<R>), EngineError> {
        let f = proto::proto_loss(student_features, teacher_features, labels);
        Ok((f.loss, proto::proto_backward(&f, scale)))
    }
    fn adam_update(
        &self,
        p: &mut Tensor<R>,
        grad: &Tensor<R>,
        m: &mut Tensor<R>,
        v: &mut Tensor<R>,
        s: &AdamScalars<R>,
    ) -> Result<(), EngineError> {
        crate::adam::update_tensor(p, grad, m, v, s);
        Ok(())
    }
    fn check_finite(&self, name: &str, x: &Tensor<R>) -> Result<(), EngineError> {
        crate::error::check_finite(name, x)
    }
}
