//! [`Cpu`]: the fast CPU engine, a value that holds the SIMD copy it runs.

use crate::loops::FastLoops;
use crate::simd::Isa;
use crate::{adam, batchnorm, conv3d, reduce};
use protokd_reference::adam::AdamScalars;
use protokd_reference::engine::{Engine, Spec};
use protokd_reference::error::EngineError;
use protokd_reference::layers::batchnorm3d::{BnCache, Then};
use protokd_reference::layers::conv3d::ConvGeom;
use protokd_reference::layers::conv_transpose3d::{
    check_transposed_weight_grad, transposed_forward_dims,
};
use protokd_reference::layers::softmax::softmax_on;
use protokd_reference::losses::{ce, dice, kd};
use protokd_reference::reduce::ChannelStep;
use protokd_reference::tensor::Shaped;
use protokd_reference::{LabelMap, Tensor};
use rayon::prelude::*;

/// The fast CPU engine: the spec's operations ([`protokd_reference::engine::Engine`]) with
/// register blocks, SIMD and threads, bit for bit the spec's. Build it with [`Cpu::new`] (the
/// best SIMD copy of this CPU) or [`Cpu::with_isa`] (a named copy: the CLI's `--simd`, tests
/// and comparisons); thread counts come from the rayon pool it runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    isa: Isa,
}

/// [`Cpu::with_isa`] was asked for a SIMD copy this CPU cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this CPU cannot run the {asked} copy of the fast CPU kernels (it can run: {usable})")]
pub struct IsaNotSupported {
    /// The copy asked for.
    pub asked: &'static str,
    /// The copies this CPU can run, comma-separated.
    pub usable: String,
}

impl Cpu {
    /// The engine on the best SIMD copy this CPU has ([`Isa::detected`]).
    pub fn new() -> Cpu {
        Cpu {
            isa: Isa::detected(),
        }
    }

    /// The engine on the copy `isa`, if this CPU can run it ([`Isa::usable`]).
    pub fn with_isa(isa: Isa) -> Result<Cpu, IsaNotSupported> {
        let usable = Isa::usable();
        if usable.contains(&isa) {
            Ok(Cpu { isa })
        } else {
            Err(IsaNotSupported {
                asked: isa.name(),
                usable: usable
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// The SIMD copy this engine runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The column maps and canonical reductions of softmax and the losses, on this copy.
    fn loops(&self) -> FastLoops {
        FastLoops { isa: self.isa }
    }
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu::new()
    }
}

/// Every operation is the spec's function of the same name, with its bits: the convolutions,
/// BatchNorm (fused with the ReLU where the VNet asks), the per-channel reductions and Adam run
/// this crate's kernels; softmax and the losses run the spec's code on this crate's column maps
/// and reductions (`FastLoops`, module `loops`); ReLU, the skip addition, channel selection and the
/// finiteness check call the spec's functions.
impl Engine for Cpu {
    type R = f32;
    type T = Tensor;
    type Labels = LabelMap;
    type BnCache = BnCache;

    fn conv3d_forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        g: &ConvGeom,
    ) -> Result<Tensor, EngineError> {
        Ok(conv3d::conv3d_forward(self.isa, x, w, bias, g))
    }
    fn conv3d_backward_input(
        &self,
        dy: &Tensor,
        w: &Tensor,
        g: &ConvGeom,
        input_dims: [usize; 3],
    ) -> Result<Tensor, EngineError> {
        Ok(conv3d::conv3d_backward_input(
            self.isa, dy, w, g, input_dims, None,
        ))
    }
    fn conv3d_backward_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        g: &ConvGeom,
    ) -> Result<Tensor, EngineError> {
        Ok(conv3d::conv3d_backward_weight(self.isa, x, dy, g))
    }
    /// Channels in parallel, each the fast per-channel canonical sum.
    fn bias_backward(&self, dy: &Tensor) -> Result<Tensor, EngineError> {
        let [n, c, d, h, w] = dy.dims5();
        let db: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let ncv = (n, c, d * h * w);
                reduce::channel_reduction(self.isa, &dy.data, &[], ncv, ch, ChannelStep::Sum)
            })
            .collect();
        Ok(Tensor::from_vec(&[c], db))
    }
    /// The spec's identity: the fast Conv3d input gradient, then `+ bias` (added by the tile
    /// after each chain: the spec's one addition per value).
    fn conv_transpose3d_forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        g: &ConvGeom,
    ) -> Result<Tensor, EngineError> {
        let out_dims = transposed_forward_dims(x, w, bias, g);
        Ok(conv3d::conv3d_backward_input(
            self.isa,
            x,
            w,
            g,
            out_dims,
            bias.map(|b| b.data.as_slice()),
        ))
    }
    /// The spec's identity: the fast Conv3d forward of `dy`.
    fn conv_transpose3d_backward_input(
        &self,
        dy: &Tensor,
        w: &Tensor,
        g: &ConvGeom,
    ) -> Result<Tensor, EngineError> {
        Ok(conv3d::conv3d_forward(self.isa, dy, w, None, g))
    }
    /// The spec's identity: the fast Conv3d weight gradient of `(dy, x)`.
    fn conv_transpose3d_backward_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        g: &ConvGeom,
    ) -> Result<Tensor, EngineError> {
        check_transposed_weight_grad(x, dy, g);
        Ok(conv3d::conv3d_backward_weight(self.isa, dy, x, g))
    }
    fn batchnorm3d_forward_train(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        running_mean: &mut Tensor,
        running_var: &mut Tensor,
        num_batches_tracked: &mut i64,
    ) -> Result<(Tensor, BnCache), EngineError> {
        batchnorm::forward_train(
            self.isa,
            x,
            (weight, bias),
            (running_mean, running_var, num_batches_tracked),
            Then::Nothing,
        )
        .map_err(EngineError::from)
    }
    fn batchnorm3d_forward_eval(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
    ) -> Result<Tensor, EngineError> {
        Ok(batchnorm::forward_eval(
            self.isa,
            x,
            (weight, bias),
            (running_mean, running_var),
            Then::Nothing,
        ))
    }
    /// Fused: one pass writes `relu(fma(xhat, weight, bias))` (the BatchNorm output is never
    /// stored).
    fn batchnorm3d_relu_forward_train(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        running_mean: &mut Tensor,
        running_var: &mut Tensor,
        num_batches_tracked: &mut i64,
    ) -> Result<(Tensor, BnCache), EngineError> {
        batchnorm::forward_train(
            self.isa,
            x,
            (weight, bias),
            (running_mean, running_var, num_batches_tracked),
            Then::Relu,
        )
        .map_err(EngineError::from)
    }
    /// Fused, as the training one.
    fn batchnorm3d_relu_forward_eval(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
    ) -> Result<Tensor, EngineError> {
        Ok(batchnorm::forward_eval(
            self.isa,
            x,
            (weight, bias),
            (running_mean, running_var),
            Then::Relu,
        ))
    }
    fn batchnorm3d_backward(
        &self,
        dy: &Tensor,
        weight: &Tensor,
        cache: &BnCache,
    ) -> Result<(Tensor, Tensor, Tensor), EngineError> {
        Ok(batchnorm::backward(self.isa, dy, weight, cache))
    }
    fn relu_forward(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        Spec.relu_forward(x)
    }
    fn relu_backward(&self, dy: &Tensor, y: &Tensor) -> Result<Tensor, EngineError> {
        Spec.relu_backward(dy, y)
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
        Spec.add(a, b)
    }
    fn select_channels(&self, x: &Tensor, channels: &[usize]) -> Result<Tensor, EngineError> {
        Spec.select_channels(x, channels)
    }
    fn softmax(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        Ok(softmax_on(&self.loops(), x))
    }
    fn ce(
        &self,
        logits: &Tensor,
        labels: &LabelMap,
        scale: f32,
    ) -> Result<(f32, Tensor), EngineError> {
        let l = self.loops();
        let f = ce::ce_loss_on(&l, logits, labels);
        Ok((f.loss, ce::ce_backward_on(&l, &f, labels, scale)))
    }
    fn dice(
        &self,
        logits: &Tensor,
        labels: &LabelMap,
        scale: f32,
    ) -> Result<(f32, Tensor), EngineError> {
        let l = self.loops();
        let f = dice::dice_loss_on(&l, logits, labels);
        Ok((f.loss, dice::dice_backward_on(&l, &f, labels, scale)))
    }
    fn kd(
        &self,
        student_logits: &Tensor,
        teacher_logits: &Tensor,
        temperature: f32,
        scale: f32,
    ) -> Result<(f32, Tensor), EngineError> {
        let f = kd::kd_loss_on(&self.loops(), student_logits, teacher_logits, temperature);
        Ok((f.loss, kd::kd_backward(&f, scale)))
    }
    fn proto(
        &self,
        student_features: &Tensor,
        teacher_features: &Tensor,
        labels: &LabelMap,
        scale: f32,
    ) -> Result<(f32, Tensor), EngineError> {
        Ok(crate::proto::proto(
            &self.loops(),
            student_features,
            teacher_features,
            labels,
            scale,
        ))
    }
    fn adam_update(
        &self,
        p: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        s: &AdamScalars,
    ) -> Result<(), EngineError> {
        adam::update_tensor(self.isa, p, grad, m, v, s);
        Ok(())
    }
    fn check_finite(&self, name: &str, x: &Tensor) -> Result<(), EngineError> {
        Spec.check_finite(name, x)
    }
}
