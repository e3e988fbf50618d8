//! [`Gpu`]: the reference's [`Engine`] on a device. Every method launches the kernels of the
//! [`ops`](crate::ops) module of the same name, which give the reference function's bits; the
//! VNet, the training steps and Adam's loop are the reference's own generic code
//! (`protokd_reference::{vnet, step, adam}`), so the sequence of operations is written once.

use crate::device::Device;
use crate::error::GpuError;
use crate::ops::batchnorm::GpuBnCache;
use crate::ops::{adam, batchnorm, conv, elementwise, losses, proto};
use crate::tensor::{GpuLabels, GpuTensor};
use protokd_reference::adam::AdamScalars;
use protokd_reference::engine::Engine;
use protokd_reference::error::EngineError;
use protokd_reference::layers::batchnorm3d::{BatchTooSmall, Then};
use protokd_reference::layers::conv3d::ConvGeom;
use protokd_reference::tensor::Shaped;

/// The engine of one device.
#[derive(Clone, Debug)]
pub struct Gpu {
    /// Where the kernels run.
    pub dev: Device,
}

impl Gpu {
    /// The engine on `dev`.
    pub fn new(dev: Device) -> Self {
        Gpu { dev }
    }
}

impl Shaped for GpuTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl Gpu {
    /// The training BatchNorm, `then` applied in the same pass; a batch with fewer than two
    /// values per channel is the reference's `BatchTooSmall`.
    fn batchnorm_train(
        &self,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        (running_mean, running_var, num_batches_tracked): (
            &mut GpuTensor,
            &mut GpuTensor,
            &mut i64,
        ),
        then: Then,
    ) -> Result<(GpuTensor, GpuBnCache), EngineError> {
        let [n, _, d, h, w] = x.dims5();
        let values_per_channel = n * d * h * w;
        if values_per_channel < 2 {
            return Err(EngineError::BatchTooSmall(
                BatchTooSmall { values_per_channel }.to_string(),
            ));
        }
        ok(batchnorm::batchnorm3d_forward_train(
            &self.dev,
            x,
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            then,
        ))
    }
}

/// Wraps a device result as the engine's.
fn ok<T>(r: Result<T, GpuError>) -> Result<T, EngineError> {
    r.map_err(EngineError::from)
}

impl Engine for Gpu {
    type R = f32;
    type T = GpuTensor;
    type Labels = GpuLabels;
    type BnCache = GpuBnCache;

    fn conv3d_forward(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        g: &ConvGeom,
    ) -> Result<GpuTensor, EngineError> {
        ok(conv::conv3d_forward(&self.dev, x, w, bias, g))
    }
    fn conv3d_backward_input(
        &self,
        dy: &GpuTensor,
        w: &GpuTensor,
        g: &ConvGeom,
        input_dims: [usize; 3],
    ) -> Result<GpuTensor, EngineError> {
        ok(conv::conv3d_backward_input(&self.dev, dy, w, g, input_dims))
    }
    fn conv3d_backward_weight(
        &self,
        x: &GpuTensor,
        dy: &GpuTensor,
        g: &ConvGeom,
    ) -> Result<GpuTensor, EngineError> {
        ok(conv::conv3d_backward_weight(&self.dev, x, dy, g))
    }
    fn bias_backward(&self, dy: &GpuTensor) -> Result<GpuTensor, EngineError> {
        ok(conv::bias_backward(&self.dev, dy))
    }
    fn conv_transpose3d_forward(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        g: &ConvGeom,
    ) -> Result<GpuTensor, EngineError> {
        ok(conv::conv_transpose3d_forward(&self.dev, x, w, bias, g))
    }
    fn conv_transpose3d_backward_input(
        &self,
        dy: &GpuTensor,
        w: &GpuTensor,
        g: &ConvGeom,
    ) -> Result<GpuTensor, EngineError> {
        ok(conv::conv_transpose3d_backward_input(&self.dev, dy, w, g))
    }
    fn conv_transpose3d_backward_weight(
        &self,
        x: &GpuTensor,
        dy: &GpuTensor,
        g: &ConvGeom,
    ) -> Result<GpuTensor, EngineError> {
        ok(conv::conv_transpose3d_backward_weight(&self.dev, x, dy, g))
    }
    fn batchnorm3d_forward_train(
        &self,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        running_mean: &mut GpuTensor,
        running_var: &mut GpuTensor,
        num_batches_tracked: &mut i64,
    ) -> Result<(GpuTensor, GpuBnCache), EngineError> {
        self.batchnorm_train(
            x,
            weight,
            bias,
            (running_mean, running_var, num_batches_tracked),
            Then::Nothing,
        )
    }
    /// Fused: `bn_normalize` applies the ReLU in the same pass.
    fn batchnorm3d_relu_forward_train(
        &self,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        running_mean: &mut GpuTensor,
        running_var: &mut GpuTensor,
        num_batches_tracked: &mut i64,
    ) -> Result<(GpuTensor, GpuBnCache), EngineError> {
        self.batchnorm_train(
            x,
            weight,
            bias,
            (running_mean, running_var, num_batches_tracked),
            Then::Relu,
        )
    }
    fn batchnorm3d_forward_eval(
        &self,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        running_mean: &GpuTensor,
        running_var: &GpuTensor,
    ) -> Result<GpuTensor, EngineError> {
        ok(batchnorm::batchnorm3d_forward_eval(
            &self.dev,
            x,
            weight,
            bias,
            running_mean,
            running_var,
            Then::Nothing,
        ))
    }
    /// Fused, as the training one.
    fn batchnorm3d_relu_forward_eval(
        &self,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        running_mean: &GpuTensor,
        running_var: &GpuTensor,
    ) -> Result<GpuTensor, EngineError> {
        ok(batchnorm::batchnorm3d_forward_eval(
            &self.dev,
            x,
            weight,
            bias,
            running_mean,
            running_var,
            Then::Relu,
        ))
    }
    fn batchnorm3d_backward(
        &self,
        dy: &GpuTensor,
        weight: &GpuTensor,
        cache: &GpuBnCache,
    ) -> Result<(GpuTensor, GpuTensor, GpuTensor), EngineError> {
        ok(batchnorm::batchnorm3d_backward(
            &self.dev, dy, weight, cache,
        ))
    }
    fn relu_forward(&self, x: &GpuTensor) -> Result<GpuTensor, EngineError> {
        ok(elementwise::relu_forward(&self.dev, x))
    }
    fn relu_backward(&self, dy: &GpuTensor, y: &GpuTensor) -> Result<GpuTensor, EngineError> {
        ok(elementwise::relu_backward(&self.dev, dy, y))
    }
    fn add(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor, EngineError> {
        ok(elementwise::add(&self.dev, a, b))
    }
    fn select_channels(&self, x: &GpuTensor, channels: &[usize]) -> Result<GpuTensor, EngineError> {
        ok(elementwise::select_channels(&self.dev, x, channels))
    }
    fn softmax(&self, x: &GpuTensor) -> Result<GpuTensor, EngineError> {
        ok(losses::softmax(&self.dev, x))
    }
    fn ce(
        &self,
        logits: &GpuTensor,
        labels: &GpuLabels,
        scale: f32,
    ) -> Result<(f32, GpuTensor), EngineError> {
        ok(losses::ce(&self.dev, logits, labels, scale))
    }
    fn dice(
        &self,
        logits: &GpuTensor,
        labels: &GpuLabels,
        scale: f32,
    ) -> Result<(f32, GpuTensor), EngineError> {
        ok(losses::dice(&self.dev, logits, labels, scale))
    }
    fn kd(
        &self,
        student_logits: &GpuTensor,
        teacher_logits: &GpuTensor,
        temperature: f32,
        scale: f32,
    ) -> Result<(f32, GpuTensor), EngineError> {
        ok(losses::kd(
            &self.dev,
            student_logits,
            teacher_logits,
            temperature,
            scale,
        ))
    }
    fn proto(
        &self,
        student_features: &GpuTensor,
        teacher_features: &GpuTensor,
        labels: &GpuLabels,
        scale: f32,
    ) -> Result<(f32, GpuTensor), EngineError> {
        ok(proto::proto(
            &self.dev,
            student_features,
            teacher_features,
            labels,
            scale,
        ))
    }
    fn adam_update(
        &self,
        p: &mut GpuTensor,
        grad: &GpuTensor,
        m: &mut GpuTensor,
        v: &mut GpuTensor,
        s: &AdamScalars,
    ) -> Result<(), EngineError> {
        (*p, *m, *v) = ok(adam::adam_update(&self.dev, p, grad, m, v, s))?;
        Ok(())
    }
    /// Counts NaNs and infinities on the device; only when there is one is the tensor
    /// downloaded, to report the first (the same error as the CPU engine's).
    fn check_finite(&self, name: &str, x: &GpuTensor) -> Result<(), EngineError> {
        if ok(elementwise::count_non_finite(&self.dev, x))? == 0 {
            return Ok(());
        }
        protokd_reference::error::check_finite(name, &ok(x.download(&self.dev))?)
    }
}
