//! Adam with L2 weight decay, exactly as PyTorch's `torch.optim.Adam(weight_decay=...)`
//! (single-tensor path), over every trainable parameter including BatchNorm weight and bias.
//!
//! Hyperparameters are `f64`, as PyTorch's are Python floats. Per step `t` (starting at 1),
//! the scalars are computed in `f64` and then rounded once to `f32` (to the [`Real`] type the
//! step runs in: exact for the `f64` yardstick):
//! * `b1t = beta1^t`, `b2t = beta2^t` by `t` repeated `f64` multiplications from 1.0;
//! * `step_size = lr / (1 - b1t)`; `bc2_sqrt = sqrt(1 - b2t)`.
//!
//! Then, for every element, in f32 with these roundings, in this order:
//! 1. `g = fma(weight_decay, p, grad)` (L2: the decay is added to the gradient);
//! 2. `m = fma(1 - beta1, g - m, m)` (PyTorch's `lerp_(g, 1 - beta1)`);
//! 3. `v = fma((1 - beta2) * g, g, beta2 * v)` (PyTorch's `mul_(beta2).addcmul_(g, g, 1 - beta2)`);
//! 4. `denom = sqrt(v) / bc2_sqrt + eps`;
//! 5. `p = fma(-step_size, m / denom, p)`.
//!
//! `1 - beta1`, `1 - beta2` are computed in `f64` and rounded to `f32`; `beta2`, `eps`,
//! `weight_decay` are rounded to `f32`.

use crate::real::Real;
use crate::Tensor;

/// Adam's hyperparameters (PyTorch names and defaults of the method page, section 6).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// The paper's: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-5.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-5,
        }
    }
}

/// Adam's state: the step count and both moments of every parameter, in parameter order (`T`
/// is the engine's tensor type, [`Tensor`] on the CPU).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamState<T = Tensor> {
    /// Number of steps taken.
    pub step: u64,
    /// First moments (`exp_avg`).
    pub exp_avg: Vec<T>,
    /// Second moments (`exp_avg_sq`).
    pub exp_avg_sq: Vec<T>,
}

impl<T> AdamState<T> {
    /// The same state with every moment converted by `f` (for example uploaded to a device).
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<AdamState<U>, E> {
        Ok(AdamState {
            step: self.step,
            exp_avg: self.exp_avg.iter().map(&mut f).collect::<Result<_, E>>()?,
            exp_avg_sq: self
                .exp_avg_sq
                .iter()
                .map(&mut f)
                .collect::<Result<_, E>>()?,
        })
    }
}

impl AdamState {
    /// Zero moments for parameters of these shapes.
    pub fn new<'a>(shapes: impl IntoIterator<Item = &'a [usize]>) -> Self {
        let zeros: Vec<Tensor> = shapes.into_iter().map(Tensor::zeros).collect();
        AdamState {
            step: 0,
            exp_avg: zeros.clone(),
            exp_avg_sq: zeros,
        }
    }
}

impl AdamState {
    /// Zero moments for every trainable parameter of a VNet.
    pub fn for_state(state: &crate::state::VNetState) -> Self {
        Self::new(state.parameters().map(|(_, t)| t.shape.as_slice()))
    }
}

/// `base^t` by `t` repeated multiplications from 1.0 (fixed, platform-independent order).
fn pow_by_multiplication(base: f64, t: u64) -> f64 {
    (0..t).fold(1.0, |acc, _| acc * base)
}

/// The `f32` scalars of step `t` (module docs): computed in `f64`, rounded once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars<R: Real = f32> {
    /// `lr / (1 - beta1^t)`.
    pub step_size: R,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: R,
    /// `1 - beta1`.
    pub one_minus_b1: R,
    /// `1 - beta2`.
    pub one_minus_b2: R,
    /// `beta2`.
    pub beta2: R,
    /// `eps`.
    pub eps: R,
    /// `weight_decay`.
    pub weight_decay: R,
}

impl<R: Real> AdamScalars<R> {
    /// The scalars of step `t` (starting at 1).
    pub fn for_step(cfg: &AdamConfig, t: u64) -> Self {
        AdamScalars {
            step_size: R::from_f64(cfg.lr / (1.0 - pow_by_multiplication(cfg.beta1, t))),
            bc2_sqrt: R::from_f64((1.0 - pow_by_multiplication(cfg.beta2, t)).sqrt()),
            one_minus_b1: R::from_f64(1.0 - cfg.beta1),
            one_minus_b2: R::from_f64(1.0 - cfg.beta2),
            beta2: R::from_f64(cfg.beta2),
            eps: R::from_f64(cfg.eps),
            weight_decay: R::from_f64(cfg.weight_decay),
        }
    }

    /// Steps 1-5 of the module docs on one element: returns the new `(p, m, v)`.
    #[inline(always)]
    pub fn update(&self, p: R, grad: R, m: R, v: R) -> (R, R, R) {
        let g = self.weight_decay.mul_add(p, grad);
        let m = self.one_minus_b1.mul_add(g - m, m);
        let v = (self.one_minus_b2 * g).mul_add(g, self.beta2 * v);
        let denom = v.sqrt() / self.bc2_sqrt + self.eps;
        ((-self.step_size).mul_add(m / denom, p), m, v)
    }
}

/// [`AdamScalars::update`] on every element of one host tensor, in index order.
pub fn update_tensor<R: Real>(
    p: &mut Tensor<R>,
    grad: &Tensor<R>,
    m: &mut Tensor<R>,
    v: &mut Tensor<R>,
    s: &AdamScalars<R>,
) {
    for i in 0..p.data.len() {
        (p.data[i], m.data[i], v.data[i]) = s.update(p.data[i], grad.data[i], m.data[i], v.data[i]);
    }
}

// Verifies (every test in this file): R-MTH-9
#[cfg(test)]
mod tests {
    use super::*;

    /// Three steps on one scalar against the textbook algorithm in f64 (Kingma & Ba with L2
    /// decay added to the gradient, bias-corrected).
    #[test]
    fn matches_textbook_adam() {
        let cfg = AdamConfig {
            lr: 1e-2,
            weight_decay: 1e-2,
            ..Default::default()
        };
        let mut p = Tensor::from_vec(&[2], vec![0.5, -1.5]);
        let mut st = AdamState::new([&[2usize][..]]);
        let (mut p64, mut m64, mut v64) = ([0.5f64, -1.5], [0.0f64; 2], [0.0f64; 2]);
        for step in 1..=3 {
            let grads = [0.3f64 * step as f64, -0.7];
            crate::step::adam_step(
                [&mut p],
                &[Tensor::from_vec(
                    &[2],
                    grads.iter().map(|&g| g as f32).collect(),
                )],
                &mut st,
                &cfg,
            );
            for i in 0..2 {
                let g = grads[i] + cfg.weight_decay * p64[i];
                m64[i] = cfg.beta1 * m64[i] + (1.0 - cfg.beta1) * g;
                v64[i] = cfg.beta2 * v64[i] + (1.0 - cfg.beta2) * g * g;
                let mhat = m64[i] / (1.0 - cfg.beta1.powi(step));
                let vhat = v64[i] / (1.0 - cfg.beta2.powi(step));
                p64[i] -= cfg.lr * mhat / (vhat.sqrt() + cfg.eps);
            }
        }
        for (&got, &want) in p.data.iter().zip(&p64) {
            assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert_eq!(st.step, 3);
    }
}
