//! [`Timed`]: an engine that runs another engine's operations and adds up, per operation, the
//! calls, the wall time and the floating-point operations ([`Tally`]); what `protokd bench`
//! breaks a forward or a step down by.
//!
//! Each call is timed from before it is forwarded to after it returns (on a host engine the
//! operation has then finished). The decorator is for host engines: a GPU engine returns
//! before its kernels finish, so its calls would be timed as launches (`protokd bench` gives no
//! breakdown there; `PROTOKD_GPU_PROFILE` times each kernel instead).
//!
//! # How the FLOPs are counted
//! Only the convolutions are counted, two per multiply-add of the dense definition, whatever
//! the kernel skips: a Conv3d with `Ci` input and `Co` output channels and a `kd x kh x kw`
//! kernel producing `V` output voxels per sample costs `2 * N * Ci * Co * kd * kh * kw * V`;
//! its input gradient and its weight gradient cost the same (each forward multiply-add has one
//! counterpart in each). A ConvTranspose3d is the adjoint of a Conv3d, so `V` is the voxel
//! count of its (smaller) input. Zero padding is counted (the output-voxel definition that
//! PyTorch's FLOP counters use). Bias additions, BatchNorm, ReLU, the losses, Adam and the
//! copies count 0: they are memory-bound passes with a handful of operations per value, and
//! the achieved GFLOP/s of a step is its convolution work over its whole time.

use super::resident::Describe;
use protokd_reference::adam::AdamScalars;
use protokd_reference::engine::Engine;
use protokd_reference::error::EngineError;
use protokd_reference::layers::conv3d::ConvGeom;
use protokd_reference::tensor::Shaped;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The engine operations, as [`Timed`] tallies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// [`Engine::conv3d_forward`].
    Conv3dForward,
    /// [`Engine::conv3d_backward_input`].
    Conv3dBackwardInput,
    /// [`Engine::conv3d_backward_weight`].
    Conv3dBackwardWeight,
    /// [`Engine::bias_backward`].
    BiasBackward,
    /// [`Engine::conv_transpose3d_forward`].
    ConvTranspose3dForward,
    /// [`Engine::conv_transpose3d_backward_input`].
    ConvTranspose3dBackwardInput,
    /// [`Engine::conv_transpose3d_backward_weight`].
    ConvTranspose3dBackwardWeight,
    /// [`Engine::batchnorm3d_forward_train`], [`Engine::batchnorm3d_relu_forward_train`].
    BatchNormTrain,
    /// [`Engine::batchnorm3d_forward_eval`], [`Engine::batchnorm3d_relu_forward_eval`].
    BatchNormEval,
    /// [`Engine::batchnorm3d_backward`].
    BatchNormBackward,
    /// [`Engine::relu_forward`], [`Engine::relu_backward`].
    Relu,
    /// [`Engine::softmax`].
    Softmax,
    /// [`Engine::ce`].
    Ce,
    /// [`Engine::dice`].
    Dice,
    /// [`Engine::kd`].
    Kd,
    /// [`Engine::proto`].
    Proto,
    /// [`Engine::adam_update`].
    Adam,
    /// [`Engine::add`], [`Engine::select_channels`], [`Engine::check_finite`].
    Elementwise,
}

/// The groups a breakdown reports ([`Op::category`]); `Other` also holds the time of a step
/// spent outside every engine call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Conv3d and ConvTranspose3d forwards.
    ForwardConv,
    /// Their input gradients.
    InputGradient,
    /// Their weight and bias gradients.
    WeightGradient,
    /// BatchNorm (fused with the ReLU or not) forward and backward, and the ReLU.
    BatchNormRelu,
    /// Softmax and the four losses with their gradients.
    Losses,
    /// The Adam update.
    Adam,
    /// Additions, channel selections, finiteness checks, and everything between the calls.
    Other,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 7] = [
        Category::ForwardConv,
        Category::InputGradient,
        Category::WeightGradient,
        Category::BatchNormRelu,
        Category::Losses,
        Category::Adam,
        Category::Other,
    ];

    /// A short name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Category::ForwardConv => "forward conv",
            Category::InputGradient => "input gradient",
            Category::WeightGradient => "weight gradient",
            Category::BatchNormRelu => "BatchNorm+ReLU",
            Category::Losses => "losses",
            Category::Adam => "Adam",
            Category::Other => "other",
        }
    }
}

impl Op {
    /// The group the operation is reported in.
    pub fn category(self) -> Category {
        use Op::*;
        match self {
            Conv3dForward | ConvTranspose3dForward => Category::ForwardConv,
            Conv3dBackwardInput | ConvTranspose3dBackwardInput => Category::InputGradient,
            Conv3dBackwardWeight | ConvTranspose3dBackwardWeight | BiasBackward => {
                Category::WeightGradient
            }
            BatchNormTrain | BatchNormEval | BatchNormBackward | Relu => Category::BatchNormRelu,
            Softmax | Ce | Dice | Kd | Proto => Category::Losses,
            Adam => Category::Adam,
            Elementwise => Category::Other,
        }
    }
}

/// Calls, seconds and FLOPs of one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Count {
    /// Number of calls.
    pub calls: u64,
    /// Wall time of the calls, in seconds.
    pub seconds: f64,
    /// Floating-point operations (see the module docs for what is counted).
    pub flops: u64,
}

/// What a [`Timed`] engine has run since it was built or last taken ([`Timed::take`]): one
/// [`Count`] per [`Op`] that was called, in [`Op`] order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally(pub std::collections::BTreeMap<Op, Count>);

impl Tally {
    /// The counts added up per category (every category but [`Category::Other`] present).
    pub fn by_category(&self) -> Vec<(Category, Count)> {
        Category::ALL
            .iter()
            .map(|&c| {
                let sum = self.0.iter().filter(|(op, _)| op.category() == c).fold(
                    Count::default(),
                    |a, (_, b)| Count {
                        calls: a.calls + b.calls,
                        seconds: a.seconds + b.seconds,
                        flops: a.flops + b.flops,
                    },
                );
                (c, sum)
            })
            .collect()
    }

    /// The FLOPs of every call.
    pub fn flops(&self) -> u64 {
        self.0.values().map(|c| c.flops).sum()
    }
}

/// The FLOPs of a convolution (see the module docs): `2 * N * Ci * Co * kernel volume * V`,
/// with `weight` `[Co, Ci, k..]` or `[Ci, Co, k..]` and `small` the 5-D tensor whose voxels are
/// `V` (the Conv3d output, the ConvTranspose3d input).
fn conv_flops(weight: &[usize], small: &[usize]) -> u64 {
    let n = small[0];
    let voxels: usize = small[2..].iter().product();
    let weights: usize = weight.iter().product();
    2 * (n * weights * voxels) as u64
}

/// An engine that forwards every operation to `inner` and tallies it (see the module docs).
/// It names itself as `inner` does.
pub struct Timed<E: ?Sized> {
    inner: Arc<E>,
    tally: Mutex<Tally>,
}

impl<E: ?Sized> Timed<E> {
    /// `inner`, tallied from now on.
    pub fn new(inner: Arc<E>) -> Self {
        Timed {
            inner,
            tally: Mutex::new(Tally::default()),
        }
    }

    /// What was run since the last call (or since [`Timed::new`]); starts a new tally.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f`, adding its time and `flops(result)` to `op`.
    fn time<R>(
        &self,
        op: Op,
        f: impl FnOnce() -> Result<R, EngineError>,
        flops: impl FnOnce(&R) -> u64,
    ) -> Result<R, EngineError> {
        let t0 = Instant::now();
        let r = f()?;
        let seconds = t0.elapsed().as_secs_f64();
        let flops = flops(&r);
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let c = tally.0.entry(op).or_default();
        c.calls += 1;
        c.seconds += seconds;
        c.flops += flops;
        Ok(r)
    }
}

/// No FLOPs counted (see the module docs).
fn none<R>(_: &R) -> u64 {
    0
}

impl<E: Engine + ?Sized> Engine for Timed<E> {
    type R = E::R;
    type T = E::T;
    type Labels = E::Labels;
    type BnCache = E::BnCache;

    fn conv3d_forward(
        &self,
        x: &E::T,
        w: &E::T,
        bias: Option<&E::T>,
        g: &ConvGeom,
    ) -> Result<E::T, EngineError> {
        self.time(
            Op::Conv3dForward,
            || self.inner.conv3d_forward(x, w, bias, g),
            |y| conv_flops(w.shape(), y.shape()),
        )
    }
    fn conv3d_backward_input(
        &self,
        dy: &E::T,
        w: &E::T,
        g: &ConvGeom,
        input_dims: [usize; 3],
    ) -> Result<E::T, EngineError> {
        self.time(
            Op::Conv3dBackwardInput,
            || self.inner.conv3d_backward_input(dy, w, g, input_dims),
            |_| conv_flops(w.shape(), dy.shape()),
        )
    }
    fn conv3d_backward_weight(
        &self,
        x: &E::T,
        dy: &E::T,
        g: &ConvGeom,
    ) -> Result<E::T, EngineError> {
        self.time(
            Op::Conv3dBackwardWeight,
            || self.inner.conv3d_backward_weight(x, dy, g),
            |dw| conv_flops(dw.shape(), dy.shape()),
        )
    }
    fn bias_backward(&self, dy: &E::T) -> Result<E::T, EngineError> {
        self.time(Op::BiasBackward, || self.inner.bias_backward(dy), none)
    }
    fn conv_transpose3d_forward(
        &self,
        x: &E::T,
        w: &E::T,
        bias: Option<&E::T>,
        g: &ConvGeom,
    ) -> Result<E::T, EngineError> {
        self.time(
            Op::ConvTranspose3dForward,
            || self.inner.conv_transpose3d_forward(x, w, bias, g),
            |_| conv_flops(w.shape(), x.shape()),
        )
    }
    fn conv_transpose3d_backward_input(
        &self,
        dy: &E::T,
        w: &E::T,
        g: &ConvGeom,
    ) -> Result<E::T, EngineError> {
        self.time(
            Op::ConvTranspose3dBackwardInput,
            || self.inner.conv_transpose3d_backward_input(dy, w, g),
            |dx| conv_flops(w.shape(), dx.shape()),
        )
    }
    fn conv_transpose3d_backward_weight(
        &self,
        x: &E::T,
        dy: &E::T,
        g: &ConvGeom,
    ) -> Result<E::T, EngineError> {
        self.time(
            Op::ConvTranspose3dBackwardWeight,
            || self.inner.conv_transpose3d_backward_weight(x, dy, g),
            |dw| conv_flops(dw.shape(), x.shape()),
        )
    }
    fn batchnorm3d_forward_train(
        &self,
        x: &E::T,
        weight: &E::T,
        bias: &E::T,
        running_mean: &mut E::T,
        running_var: &mut E::T,
        num_batches_tracked: &mut i64,
    ) -> Result<(E::T, E::BnCache), EngineError> {
        self.time(
            Op::BatchNormTrain,
            || {
                self.inner.batchnorm3d_forward_train(
                    x,
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    num_batches_tracked,
                )
            },
            none,
        )
    }
    fn batchnorm3d_forward_eval(
        &self,
        x: &E::T,
        weight: &E::T,
        bias: &E::T,
        running_mean: &E::T,
        running_var: &E::T,
    ) -> Result<E::T, EngineError> {
        self.time(
            Op::BatchNormEval,
            || {
                self.inner
                    .batchnorm3d_forward_eval(x, weight, bias, running_mean, running_var)
            },
            none,
        )
    }
    fn batchnorm3d_relu_forward_train(
        &self,
        x: &E::T,
        weight: &E::T,
        bias: &E::T,
        running_mean: &mut E::T,
        running_var: &mut E::T,
        num_batches_tracked: &mut i64,
    ) -> Result<(E::T, E::BnCache), EngineError> {
        self.time(
            Op::BatchNormTrain,
            || {
                self.inner.batchnorm3d_relu_forward_train(
                    x,
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    num_batches_tracked,
                )
            },
            none,
        )
    }
    fn batchnorm3d_relu_forward_eval(
        &self,
        x: &E::T,
        weight: &E::T,
        bias: &E::T,
        running_mean: &E::T,
        running_var: &E::T,
    ) -> Result<E::T, EngineError> {
        self.time(
            Op::BatchNormEval,
            || {
                self.inner
                    .batchnorm3d_relu_forward_eval(x, weight, bias, running_mean, running_var)
            },
            none,
        )
    }
    fn batchnorm3d_backward(
        &self,
        dy: &E::T,
        weight: &E::T,
        cache: &E::BnCache,
    ) -> Result<(E::T, E::T, E::T), EngineError> {
        self.time(
            Op::BatchNormBackward,
            || self.inner.batchnorm3d_backward(dy, weight, cache),
            none,
        )
    }
    fn relu_forward(&self, x: &E::T) -> Result<E::T, EngineError> {
        self.time(Op::Relu, || self.inner.relu_forward(x), none)
    }
    fn relu_backward(&self, dy: &E::T, y: &E::T) -> Result<E::T, EngineError> {
        self.time(Op::Relu, || self.inner.relu_backward(dy, y), none)
    }
    fn add(&self, a: &E::T, b: &E::T) -> Result<E::T, EngineError> {
        self.time(Op::Elementwise, || self.inner.add(a, b), none)
    }
    fn select_channels(&self, x: &E::T, channels: &[usize]) -> Result<E::T, EngineError> {
        self.time(
            Op::Elementwise,
            || self.inner.select_channels(x, channels),
            none,
        )
    }
    fn softmax(&self, x: &E::T) -> Result<E::T, EngineError> {
        self.time(Op::Softmax, || self.inner.softmax(x), none)
    }
    fn ce(
        &self,
        logits: &E::T,
        labels: &E::Labels,
        scale: E::R,
    ) -> Result<(E::R, E::T), EngineError> {
        self.time(Op::Ce, || self.inner.ce(logits, labels, scale), none)
    }
    fn dice(
        &self,
        logits: &E::T,
        labels: &E::Labels,
        scale: E::R,
    ) -> Result<(E::R, E::T), EngineError> {
        self.time(Op::Dice, || self.inner.dice(logits, labels, scale), none)
    }
    fn kd(
        &self,
        student_logits: &E::T,
        teacher_logits: &E::T,
        temperature: E::R,
        scale: E::R,
    ) -> Result<(E::R, E::T), EngineError> {
        self.time(
            Op::Kd,
            || {
                self.inner
                    .kd(student_logits, teacher_logits, temperature, scale)
            },
            none,
        )
    }
    fn proto(
        &self,
        student_features: &E::T,
        teacher_features: &E::T,
        labels: &E::Labels,
        scale: E::R,
    ) -> Result<(E::R, E::T), EngineError> {
        self.time(
            Op::Proto,
            || {
                self.inner
                    .proto(student_features, teacher_features, labels, scale)
            },
            none,
        )
    }
    fn adam_update(
        &self,
        p: &mut E::T,
        grad: &E::T,
        m: &mut E::T,
        v: &mut E::T,
        s: &AdamScalars<E::R>,
    ) -> Result<(), EngineError> {
        self.time(Op::Adam, || self.inner.adam_update(p, grad, m, v, s), none)
    }
    fn check_finite(&self, name: &str, x: &E::T) -> Result<(), EngineError> {
        self.time(Op::Elementwise, || self.inner.check_finite(name, x), none)
    }
}

impl<E: Describe + ?Sized> Describe for Timed<E> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn simd(&self) -> Option<&'static str> {
        self.inner.simd()
    }
    fn memory_in_use(&self) -> Result<Option<u64>, EngineError> {
        self.inner.memory_in_use()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::engine::Spec;
    use protokd_reference::Tensor;

    /// A 3x3x3 Conv3d 2 -> 3 on 1 x 2 x 4^3 (padding 1): 2 * 2 * 3 * 27 * 64 FLOPs in each of
    /// its three passes; a ConvTranspose3d 2 -> 3 (2x2x2, stride 2) on 1 x 2 x 2^3:
    /// 2 * 2 * 3 * 8 * 8.
    // Verifies: R-WFL-4
    #[test]
    fn convolutions_are_counted_by_their_multiply_adds() {
        let e = Timed::new(Arc::new(Spec));
        let g = ConvGeom::cubic(3, 1, 1);
        let x = Tensor::zeros(&[1, 2, 4, 4, 4]);
        let w = Tensor::zeros(&[3, 2, 3, 3, 3]);
        let y = e.conv3d_forward(&x, &w, None, &g).unwrap();
        e.conv3d_backward_input(&y, &w, &g, [4; 3]).unwrap();
        e.conv3d_backward_weight(&x, &y, &g).unwrap();
        let t = e.take();
        for op in [
            Op::Conv3dForward,
            Op::Conv3dBackwardInput,
            Op::Conv3dBackwardWeight,
        ] {
            assert_eq!(t.0[&op].flops, 2 * 2 * 3 * 27 * 64, "{op:?}");
            assert_eq!(t.0[&op].calls, 1);
        }
        let g = ConvGeom::cubic(2, 2, 0);
        let x = Tensor::zeros(&[1, 2, 2, 2, 2]);
        let w = Tensor::zeros(&[2, 3, 2, 2, 2]);
        let y = e.conv_transpose3d_forward(&x, &w, None, &g).unwrap();
        e.conv_transpose3d_backward_input(&y, &w, &g).unwrap();
        e.conv_transpose3d_backward_weight(&x, &y, &g).unwrap();
        let t = e.take();
        assert_eq!(t.flops(), 3 * 2 * 2 * 3 * 8 * 8);
        assert_eq!(t.0.len(), 3);
        assert!(e.take().0.is_empty(), "take starts a new tally");
    }
}
