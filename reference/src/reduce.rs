//! The one canonical reduction.
//!
//! Every large sum in the crate (over batch and voxels: BatchNorm statistics, weight and bias
//! gradients, loss sums, prototypes) is computed in ONE shape, which depends only on the number
//! of terms `n`, never on the thread count or the machine:
//!
//! 1. The terms `t_0 .. t_{n-1}` are cut into blocks of [`BLOCK`] = 4096 consecutive terms (the
//!    last block may be shorter).
//! 2. Inside a block, term `i` goes to lane `i % LANES` ([`LANES`] = 16; the block start is a
//!    multiple of 16, so this is also the position inside the block modulo 16). Each lane is a
//!    sequential chain that starts at `+0.0` and takes its terms in increasing `i`:
//!    `acc = acc + t_i` for a plain sum, `acc = fma(a_i, b_i, acc)` for a sum of products.
//! 3. The 16 lanes of a block are combined by a pairwise tree:
//!    `(l0+l1), (l2+l3), .. (l14+l15)`, then the 8 results in pairs the same way, then 4, then 2.
//! 4. The block results are combined by the same pairwise tree over however many there are:
//!    at each level, element `j` of the next level is `x[2j] + x[2j+1]`, and an odd last element
//!    is carried up unchanged, until one value remains. `n == 0` gives `+0.0`.
//!
//! Why this shape: a 16-lane SIMD loop follows step 2 with one vector accumulator; threads (or
//! a GPU grid) take whole blocks; a GPU block of 16 threads per reduction block follows it
//! exactly; and the chains are short (at most 256 terms), which keeps the rounding error small.
//!
//! Here the reduction is written as the plain loop it is: [`Partials`] holds the lanes, every
//! term is added in increasing `i`, one at a time, then [`Partials::finish`] runs the two trees.
//! [`reduce_with`], [`sum`], [`dot`] and [`channel_reduction`] are that loop over a slice or
//! a term function, for any [`Real`] (`f32` in the product). (The fast engine, crate `protokd-cpu`, advances 16 lanes at once and runs
//! blocks on several threads; the shape, hence every bit, is the same.)

use crate::real::Real;

/// Number of interleaved partial sums inside one block.
pub const LANES: usize = 16;
/// Number of consecutive terms per block (a multiple of [`LANES`]).
pub const BLOCK: usize = 4096;

/// The partial sums of one canonical reduction of `n` terms: `ceil(n / BLOCK)` blocks of
/// [`LANES`] chains. Terms must be added in increasing index order per lane (adding all terms in
/// increasing `i` is the simplest way to guarantee it).
#[derive(Clone, Debug)]
pub struct Partials<R: Real = f32> {
    blocks: Vec<[R; LANES]>,
}

impl<R: Real> Partials<R> {
    /// Partial sums for a reduction of `n` terms, all chains at `+0.0`.
    pub fn new(n: usize) -> Self {
        Partials {
            blocks: vec![[R::ZERO; LANES]; n.div_ceil(BLOCK)],
        }
    }

    /// The lane that term `i` goes to: lane `i % LANES` of block `i / BLOCK`.
    #[inline(always)]
    pub fn lane(&mut self, i: usize) -> &mut R {
        &mut self.blocks[i / BLOCK][i % LANES]
    }

    /// Chain step for term `i` of a plain sum: `acc = acc + t`.
    #[inline(always)]
    pub fn add(&mut self, i: usize, t: R) {
        *self.lane(i) += t;
    }

    /// Chain step for term `i` of a sum of products: `acc = fma(a, b, acc)`.
    #[inline(always)]
    pub fn fma(&mut self, i: usize, a: R, b: R) {
        let acc = self.lane(i);
        *acc = a.mul_add(b, *acc);
    }

    /// Steps 3 and 4: the lane tree of each block, then the tree over blocks.
    pub fn finish(&self) -> R {
        let block_sums: Vec<R> = self.blocks.iter().map(|b| lane_tree(*b)).collect();
        pairwise_tree(block_sums)
    }
}

/// Step 3: `(l0+l1), (l2+l3), ...`, then the same on the 8 results, then 4, then 2.
#[inline]
pub fn lane_tree<R: Real>(mut l: [R; LANES]) -> R {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            l[j] = l[2 * j] + l[2 * j + 1];
        }
    }
    l[0]
}

/// Step 4: pairwise tree over any number of values; an odd last value is carried up unchanged.
/// An empty input gives `+0.0`.
pub fn pairwise_tree<R: Real>(mut x: Vec<R>) -> R {
    if x.is_empty() {
        return R::ZERO;
    }
    while x.len() > 1 {
        let next: Vec<R> = x
            .chunks(2)
            .map(|p| if p.len() == 2 { p[0] + p[1] } else { p[0] })
            .collect();
        x = next;
    }
    x[0]
}

/// The canonical reduction of `n` terms given by a chain step `step(acc, i) -> acc'` (which must
/// compute `acc + t_i` or `fma(a_i, b_i, acc)`): for `i = 0, 1, .. n - 1`, lane
/// `i % LANES` of block `i / BLOCK` becomes `step(lane, i)`; then the trees.
pub fn reduce_with<R: Real>(n: usize, step: impl Fn(R, usize) -> R) -> R {
    let mut p = Partials::new(n);
    for i in 0..n {
        let lane = p.lane(i);
        *lane = step(*lane, i);
    }
    p.finish()
}

/// Canonical sum of a slice.
pub fn sum<R: Real>(x: &[R]) -> R {
    reduce_with(x.len(), |acc, i| acc + x[i])
}

/// Canonical sum of products `a_i * b_i` (each step one fma). Panics if the lengths differ
/// (a programming error, not a user error).
pub fn dot<R: Real>(a: &[R], b: &[R]) -> R {
    assert_eq!(a.len(), b.len(), "dot: length mismatch");
    reduce_with(a.len(), |acc, i| a[i].mul_add(b[i], acc))
}

/// Canonical sum of `t(i)` for `i < n`.
pub fn sum_by<R: Real>(n: usize, t: impl Fn(usize) -> R) -> R {
    reduce_with(n, |acc, i| acc + t(i))
}

/// The chain step of a per-channel reduction ([`channel_reduction`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChannelStep<R: Real = f32> {
    /// `lane = lane + a_i`.
    Sum,
    /// `lane = fma(d, d, lane)` with `d = a_i - mean` (one rounded subtraction).
    SquaredDeviation(R),
    /// `lane = fma(a_i, b_i, lane)`.
    Dot,
}

/// The canonical reduction over channel `ch` of `[N, C, V]` data `a` (and `b` for
/// [`ChannelStep::Dot`]): `M = N V` terms, term `i` the value at `(i / V, ch, i % V)`.
pub fn channel_reduction<R: Real>(
    a: &[R],
    b: &[R],
    (n, c, v): (usize, usize, usize),
    ch: usize,
    step: ChannelStep<R>,
) -> R {
    let at = |data: &[R], i: usize| data[((i / v) * c + ch) * v + i % v];
    let m = n * v;
    match step {
        ChannelStep::Sum => sum_by(m, |i| at(a, i)),
        ChannelStep::SquaredDeviation(mean) => reduce_with(m, |acc, i| {
            let d = at(a, i) - mean;
            d.mul_add(d, acc)
        }),
        ChannelStep::Dot => reduce_with(m, |acc, i| at(a, i).mul_add(at(b, i), acc)),
    }
}

// Verifies (every test in this file): R-NUM-2
#[cfg(test)]
mod tests {
    use super::*;

    /// The shape written out by hand for a small case: 40 terms, one block,
    /// lane l = t_l + t_{l+16} (+ t_{l+32} for l < 8), then the tree.
    #[test]
    fn shape_of_a_small_sum() {
        let t: Vec<f32> = (0..40).map(|i| 1.0 / (i as f32 + 1.0)).collect();
        let mut lanes = [0.0f32; 16];
        for (i, v) in t.iter().enumerate() {
            lanes[i % 16] += v;
        }
        let mut level: Vec<f32> = lanes.to_vec();
        while level.len() > 1 {
            level = level.chunks(2).map(|p| p[0] + p[1]).collect();
        }
        assert_eq!(sum(&t).to_bits(), level[0].to_bits());
    }

    #[test]
    fn partials_equal_reduce_with() {
        let n = 3 * BLOCK + 77;
        let a: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| ((i * 104729) % 997) as f32 * 1e-2).collect();
        let mut p = Partials::new(n);
        for i in 0..n {
            p.fma(i, a[i], b[i]);
        }
        assert_eq!(p.finish().to_bits(), dot(&a, &b).to_bits());
    }

    #[test]
    fn odd_block_counts_carry_the_last_value() {
        assert_eq!(pairwise_tree::<f32>(vec![]), 0.0);
        assert_eq!(pairwise_tree::<f32>(vec![1.0, 2.0, 4.0]), 7.0);
        // Levels: [1e8 + 1, -1e8 + 1, 1] = [1e8, -1e8, 1] (f32 ulp at 1e8 is 8), then [0, 1],
        // then 1; a left-to-right sum would give 2.
        assert_eq!(pairwise_tree::<f32>(vec![1e8, 1.0, -1e8, 1.0, 1.0]), 1.0);
    }
}
