// Verifies (every test in this file): R-NUM-4, R-NUM-2
//! The ProtoKD losses, forward and backward (method page, section 5).
//!
//! | module | loss | forward | backward (gradient w.r.t.) |
//! |---|---|---|---|
//! | [`dice`] | soft Dice over the batch, mean of `1 - dice_c` over the classes | [`dice_loss`] | [`dice_backward`] (logits) |
//! | [`ce`] | class-weighted cross-entropy, `w_c = 1 - n_c / n` | [`ce_loss`] | [`ce_backward`] (logits) |
//! | [`kd`] | pixel-wise KD, `mean(q * (log q - log_softmax(s / T)))` | [`kd_loss`] | [`kd_backward`] (student logits only) |
//! | [`proto`] | prototype (I2FV) loss, `mean((M_s - M_t)^2)` | [`proto_loss`] | [`proto_backward`] (student features only) |
//!
//! The training step combines them as `L = L_ce + L_dice + 10 * L_kd + 0.1 * L_proto`.
//!
//! Conventions shared by every module:
//! * Logits are `[N, C, D, H, W]`, labels a [`LabelMap`](crate::LabelMap) `[N, D, H, W]` with
//!   values in `0 .. C`, features `[N, F, D, H, W]`; `V = D * H * W`. A "position" is one
//!   `(n, voxel)` pair, numbered `i = n * V + v` (the flat index of the label map).
//! * Every sum over batch and voxels is ONE canonical reduction of [`crate::reduce`] whose
//!   terms are taken in increasing flat index of the tensor named in the module's doc. Short
//!   sums over classes or feature channels are sequential chains in ascending index order
//!   from `+0.0`; products are accumulated with one fused multiply-add per term.
//! * `exp` and `ln` are [`crate::mathfn`]'s in `f32` ([`crate::Real`]); softmax and
//!   log-softmax (and their backward) are [`crate::layers::softmax`]'s.
//! * Each backward takes an upstream `scale: R` and returns the gradient of
//!   `scale * loss`; where the scale enters the order of operations is stated in its doc.
//!   Multiplying `scale` by a power of two multiplies every gradient value by the same power
//!   exactly (barring overflow and underflow); the tests assert it.
//! * Shape mismatches and labels outside `0 .. C` are programming errors here (user data is
//!   checked where it enters the engine) and panic with a message.
//! * No gradient ever flows into the teacher: [`kd_backward`] and [`proto_backward`] return
//!   the student's gradient only, and there is no teacher output at all.
//! * Results do not depend on the number of threads (rayon is used across independent
//!   outputs and inside the canonical reduction, whose shape is fixed).

pub mod ce;
pub mod dice;
pub mod kd;
pub mod proto;

#[cfg(test)]
mod test_support;

use crate::tensor::Shaped;

pub use ce::{ce_backward, ce_loss, CeForward};
pub use dice::{dice_backward, dice_loss, DiceForward};
pub use kd::{kd_backward, kd_loss, KdForward};
pub use proto::{proto_backward, proto_loss, ProtoForward};

/// Smoothing added to the Dice numerator and denominator.
pub const DICE_SMOOTH: f32 = 1e-5;
/// Smoothing added to a class's voxel count when the prototype divides by it.
pub const PROTO_EPS: f32 = 1e-5;
/// Lower clamp on each vector norm in the cosine similarity (PyTorch `cosine_similarity`
/// with `eps = 1e-5`: each norm is clamped on its own).
pub const COS_EPS: f32 = 1e-5;

/// `(N, C, V)` of a `[N, C, D, H, W]` tensor, with `V = D * H * W`.
pub(crate) fn ncv<R: crate::Real>(t: &crate::Tensor<R>) -> (usize, usize, usize) {
    let [n, c, d, h, w] = t.dims5();
    (n, c, d * h * w)
}

/// Panics unless `labels` is `[N, D, H, W]` for the `[N, C, D, H, W]` tensor `t` and every
/// label is below `n_classes` (when given).
pub fn check_labels<R: crate::Real>(
    what: &str,
    t: &crate::Tensor<R>,
    labels: &crate::LabelMap,
    n_classes: Option<usize>,
) {
    let [n, _, d, h, w] = t.dims5();
    assert_eq!(
        labels.dims,
        [n, d, h, w],
        "{what}: label map {:?} does not match tensor {:?}",
        labels.dims,
        t.shape
    );
    if let Some(c) = n_classes {
        if let Some((i, &y)) = labels
            .data
            .iter()
            .enumerate()
            .find(|(_, &y)| y as usize >= c)
        {
            panic!("{what}: label {y} at flat index {i} is not in 0..{c}");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Thread-count independence of every loss, forward and backward.
    use super::test_support::{random_labels, random_tensor};
    use super::*;

    /// Every output bit of every loss on data large enough for several reduction blocks
    /// (`N * V = 10240` positions, `40960` logits).
    fn all_bits() -> Vec<u32> {
        let s = random_tensor(&[2, 4, 8, 16, 40], 11, 2.0);
        let t = random_tensor(&[2, 4, 8, 16, 40], 12, 2.0);
        let fs = random_tensor(&[2, 3, 8, 16, 40], 13, 1.0);
        let ft = random_tensor(&[2, 3, 8, 16, 40], 14, 1.0);
        let y = random_labels([2, 8, 16, 40], 4, 15);
        let mut bits = Vec::new();
        let d = dice_loss(&s, &y);
        bits.push(d.loss.to_bits());
        bits.extend(dice_backward(&d, &y, 1.0).data.iter().map(|v| v.to_bits()));
        let c = ce_loss(&s, &y);
        bits.push(c.loss.to_bits());
        bits.extend(ce_backward(&c, &y, 1.0).data.iter().map(|v| v.to_bits()));
        let k = kd_loss(&s, &t, 10.0);
        bits.push(k.loss.to_bits());
        bits.extend(kd_backward(&k, 10.0).data.iter().map(|v| v.to_bits()));
        let p = proto_loss(&fs, &ft, &y);
        bits.push(p.loss.to_bits());
        bits.extend(proto_backward(&p, 0.1).data.iter().map(|v| v.to_bits()));
        bits
    }

    #[test]
    fn same_bits_for_every_thread_count() {
        let runs: Vec<Vec<u32>> = crate::testutil::thread_pools(&[1, 3, 8])
            .iter()
            .map(|p| p.install(all_bits))
            .collect();
        assert!(runs.iter().all(|r| r == &runs[0]));
    }
}
