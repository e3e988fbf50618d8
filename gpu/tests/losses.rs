// Verifies (every test in this file): R-NUM-5, R-MTH-5, R-MTH-6
//! Softmax, log-softmax and the Dice, cross-entropy and KD losses (forward and backward) give
//! the reference's bits on random shapes, amplitudes, labels, scales and temperatures.

mod common;
use common::{assert_same_bits, pick, random_labels, random_tensor};
use protokd_gpu::ops::losses;
use protokd_gpu::{Device, GpuLabels, GpuTensor};
use protokd_reference::layers::softmax as rsoftmax;
use protokd_reference::losses::{
    ce_backward, ce_loss, dice_backward, dice_loss, kd_backward, kd_loss,
};
use protokd_reference::{LabelMap, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

/// Logit amplitudes: small, moderate, and large enough to spread `exp` over its range.
const AMPLITUDES: [f32; 5] = [0.1, 1.0, 3.0, 10.0, 30.0];
const SCALES: [f32; 4] = [1.0, 0.5, 10.0, 0.0];

/// One random case: logits `[N, C, D, H, W]` (N 1..2, C 2..5, each spatial axis 1..12), an
/// amplitude, and labels in `0 .. C`.
struct Case {
    logits: Tensor,
    other: Tensor,
    labels: LabelMap,
}

fn case(rng: &mut ChaCha8Rng, seed: u64) -> Case {
    let shape = [
        pick(rng, 1, 2),
        pick(rng, 2, 5),
        pick(rng, 1, 12),
        pick(rng, 1, 12),
        pick(rng, 1, 12),
    ];
    let amp = AMPLITUDES[pick(rng, 0, AMPLITUDES.len() - 1)];
    Case::new(shape, seed, amp)
}

impl Case {
    fn new(shape: [usize; 5], seed: u64, amp: f32) -> Self {
        let [n, c, d, h, w] = shape;
        Case {
            logits: random_tensor(&shape, seed, amp),
            other: random_tensor(&shape, seed + 1, amp),
            labels: random_labels([n, d, h, w], c as u8, seed + 2),
        }
    }

    /// More than two reduction blocks of positions: `N * V = 2 * 4800 > 8192`.
    fn large(seed: u64) -> Self {
        Case::new([2, 3, 12, 20, 20], seed, 10.0)
    }
}

fn random_cases(seed: u64, count: usize) -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cases: Vec<Case> = (0..count)
        .map(|k| case(&mut rng, seed * 1000 + 10 * k as u64))
        .collect();
    cases.push(Case::large(seed * 1000 + 999));
    cases
}

fn up(dev: &Device, t: &Tensor) -> GpuTensor {
    GpuTensor::upload(dev, t).unwrap()
}

fn down(dev: &Device, t: &GpuTensor) -> Tensor {
    t.download(dev).unwrap()
}

fn assert_loss(what: &str, got: f32, want: f32) {
    assert_eq!(
        got.to_bits(),
        want.to_bits(),
        "{what}: loss {got:e} vs {want:e}"
    );
}

#[test]
fn softmax_and_log_softmax_match_the_reference() {
    let dev = common::device();
    for (k, c) in random_cases(1, 40).iter().enumerate() {
        let x = up(&dev, &c.logits);
        let what = format!("case {k} {:?}", c.logits.shape);
        let p = down(&dev, &losses::softmax(&dev, &x).unwrap());
        assert_same_bits(
            &format!("softmax {what}"),
            &p,
            &rsoftmax::softmax(&c.logits),
        );
        let lp = down(&dev, &losses::log_softmax(&dev, &x).unwrap());
        assert_same_bits(
            &format!("log_softmax {what}"),
            &lp,
            &rsoftmax::log_softmax(&c.logits),
        );
    }
    // Other ranks: [N, C] and [N, C, L].
    for shape in [vec![3, 5], vec![2, 4, 7]] {
        let t = random_tensor(&shape, 77, 30.0);
        let p = down(&dev, &losses::softmax(&dev, &up(&dev, &t)).unwrap());
        assert_same_bits(&format!("softmax {shape:?}"), &p, &rsoftmax::softmax(&t));
    }
}

#[test]
fn dice_matches_the_reference() {
    let dev = common::device();
    for (k, c) in random_cases(2, 40).iter().enumerate() {
        let x = up(&dev, &c.logits);
        let y = GpuLabels::upload(&dev, &c.labels).unwrap();
        let fwd = dice_loss(&c.logits, &c.labels);
        for scale in SCALES {
            let what = format!("dice case {k} {:?} scale {scale}", c.logits.shape);
            let (loss, ds) = losses::dice(&dev, &x, &y, scale).unwrap();
            assert_loss(&what, loss, fwd.loss);
            assert_same_bits(
                &what,
                &down(&dev, &ds),
                &dice_backward(&fwd, &c.labels, scale),
            );
        }
    }
}

#[test]
fn ce_matches_the_reference() {
    let dev = common::device();
    let mut cases = random_cases(3, 40);
    // A class absent from the batch (weight 1, count 0).
    let mut absent = Case::new([2, 4, 3, 5, 7], 4242, 3.0);
    absent.labels = random_labels([2, 3, 5, 7], 3, 4243);
    cases.push(absent);
    for (k, c) in cases.iter().enumerate() {
        let x = up(&dev, &c.logits);
        let y = GpuLabels::upload(&dev, &c.labels).unwrap();
        let fwd = ce_loss(&c.logits, &c.labels);
        for scale in SCALES {
            let what = format!("ce case {k} {:?} scale {scale}", c.logits.shape);
            let (loss, ds) = losses::ce(&dev, &x, &y, scale).unwrap();
            assert_loss(&what, loss, fwd.loss);
            assert_same_bits(
                &what,
                &down(&dev, &ds),
                &ce_backward(&fwd, &c.labels, scale),
            );
        }
    }
}

/// A batch of one class: `W == 0`, so the loss is `0` and the gradient `+0.0` everywhere.
#[test]
fn ce_single_class_batch_gives_zero() {
    let dev = common::device();
    let shape = [2, 4, 3, 5, 6];
    let s = random_tensor(&shape, 700, 3.0);
    let labels = LabelMap::new([2, 3, 5, 6], vec![2; 180]);
    let fwd = ce_loss(&s, &labels);
    assert_eq!(fwd.weight_sum, 0.0);
    let y = GpuLabels::upload(&dev, &labels).unwrap();
    let (loss, ds) = losses::ce(&dev, &up(&dev, &s), &y, 1.0).unwrap();
    assert_loss("single class", loss, fwd.loss);
    assert_same_bits(
        "single class",
        &down(&dev, &ds),
        &ce_backward(&fwd, &labels, 1.0),
    );
}

#[test]
#[should_panic(expected = "labels are not in 0..3")]
fn ce_refuses_labels_outside_the_classes() {
    let dev = common::device();
    let s = random_tensor(&[1, 3, 2, 2, 2], 1, 1.0);
    let labels = LabelMap::new([1, 2, 2, 2], vec![0, 1, 2, 3, 0, 1, 2, 0]);
    let y = GpuLabels::upload(&dev, &labels).unwrap();
    let _ = losses::ce(&dev, &up(&dev, &s), &y, 1.0);
}

#[test]
fn kd_matches_the_reference() {
    let dev = common::device();
    let mut cases = random_cases(4, 30);
    // Teacher probabilities of 0, skipped terms: at position 1 by underflow (log q finite); at
    // position 0 with log q = (-3e38 - 3e38) - ln S = -inf at T = 1, where an fma with q = 0
    // would give NaN.
    let mut zero_q = Case::new([1, 3, 2, 3, 4], 5150, 4.0);
    zero_q.other.data[1] = -2000.0;
    zero_q.other.data[0] = -3e38;
    zero_q.other.data[24] = 3e38;
    cases.push(zero_q);
    for (k, c) in cases.iter().enumerate() {
        let (s, t) = (up(&dev, &c.logits), up(&dev, &c.other));
        for temperature in [1.0f32, 10.0] {
            let fwd = kd_loss(&c.logits, &c.other, temperature);
            for scale in SCALES {
                let what = format!(
                    "kd case {k} {:?} T {temperature} scale {scale}",
                    c.logits.shape
                );
                let (loss, ds) = losses::kd(&dev, &s, &t, temperature, scale).unwrap();
                assert_loss(&what, loss, fwd.loss);
                assert_same_bits(&what, &down(&dev, &ds), &kd_backward(&fwd, scale));
            }
        }
    }
}
