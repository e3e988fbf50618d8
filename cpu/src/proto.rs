//! Fast prototype loss, forward and backward: the spec's arithmetic
//! ([`protokd_reference::losses::proto`], whose module docs give the formulas and every order)
//! with the voxels spread over threads and SIMD lanes.
//!
//! # What is the same
//! Every per-voxel value is the spec's chain: `|a|` is the fma chain over the channels in
//! ascending order from `+0.0` then one IEEE `sqrt`, `â_c = a_c / max(|a|, 1e-5)`, the cosine
//! `M[k, v]` the fma chain over the channels, the direct gradient `dâ_c` the fma chain over the
//! kept classes, and the norm backward the spec's two branches. The prototypes, the loss and
//! `dp̂` are the spec's canonical reductions on the engine's [`FastLoops`]. So every output has
//! the spec's bits, for every thread count and SIMD copy.
//!
//! # What is faster
//! The spec runs the voxels of one sample one after the other, each channel column gathered
//! into a small buffer. Here each pass runs over chunks of [`CHUNK`] consecutive voxels in
//! parallel, and inside a chunk the innermost loop runs over the voxels, reading each channel
//! row contiguously, so that the compiler computes [`CHUNK`]-wide rows of independent chains
//! on SIMD lanes (the engine's copy, [`Isa::run`](crate::simd::Isa::run)). The passes write
//! separate arrays (norms, then `â` per channel, then the cosine maps; in the backward
//! `s = â . dâ` per voxel, then the gradient per channel), so every parallel task owns the rows
//! it writes.

use crate::loops::FastLoops;
use protokd_reference::loops::Loops;
use protokd_reference::losses::proto::{kept_classes, norm_backward, prototypes, KeptClasses};
use protokd_reference::losses::{check_labels, COS_EPS};
use protokd_reference::tensor::Shaped;
use protokd_reference::{LabelMap, Tensor};
use rayon::prelude::*;

/// Voxels per parallel task and per row of SIMD chains.
const CHUNK: usize = 1024;

/// One network's side of the forward (the spec's `Side`), for the samples `[N, ..]`.
struct Side {
    /// `â`, `[N, F, V]`.
    unit: Vec<f32>,
    /// `|a|`, `[N, V]`.
    norms: Vec<f32>,
    /// `p̂`, `[N, K, F]`.
    unit_protos: Vec<f32>,
    /// `|proto|`, `[N, K]`.
    proto_norms: Vec<f32>,
    /// `M`, `[N, K, V]`.
    map: Vec<f32>,
}

/// `|a|` for the voxels `v0 .. v0 + out.len()` of one sample's features `x` `[F, V]`.
fn chunk_norms(x: &[f32], nf: usize, v: usize, v0: usize, out: &mut [f32]) {
    out.fill(0.0);
    for ch in 0..nf {
        let row = &x[ch * v + v0..ch * v + v0 + out.len()];
        for (acc, &a) in out.iter_mut().zip(row) {
            *acc = a.mul_add(a, *acc);
        }
    }
    for n in out.iter_mut() {
        *n = n.sqrt();
    }
}

/// Steps 2-4 of the spec for one network's features `[N, F, V]`.
fn side(l: &FastLoops, f: &Tensor, labels: &LabelMap, kept: &[usize], den: &[f32]) -> Side {
    let [n, nf, ..] = f.dims5();
    let v = labels.voxels();
    let nk = kept.len();
    let isa = l.isa;
    // Step 2: the spec's own, on the engine's reductions.
    let (unit_protos, proto_norms) = prototypes(l, f, labels, kept, den);

    // Step 3: the norms, then `â` row by row.
    let mut norms = vec![0.0f32; n * v];
    norms.par_chunks_mut(v).enumerate().for_each(|(b, nb)| {
        let x = &f.data[b * nf * v..(b + 1) * nf * v];
        nb.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
            isa.run(
                #[inline(always)]
                || chunk_norms(x, nf, v, c * CHUNK, out),
            )
        });
    });
    let mut unit = vec![0.0f32; n * nf * v];
    unit.par_chunks_mut(v).enumerate().for_each(|(row, out)| {
        let b = row / nf;
        let x = &f.data[row * v..(row + 1) * v];
        let nb = &norms[b * v..(b + 1) * v];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
            let r = c * CHUNK..c * CHUNK + o.len();
            isa.run(
                #[inline(always)]
                || {
                    for ((u, &a), &norm) in o.iter_mut().zip(&x[r.clone()]).zip(&nb[r.clone()]) {
                        *u = a / if norm < COS_EPS { COS_EPS } else { norm };
                    }
                },
            )
        });
    });

    // Step 4: `M[n, kk, v]`, the chain over the channels.
    let mut map = vec![0.0f32; n * nk * v];
    map.par_chunks_mut(v).enumerate().for_each(|(row, out)| {
        let b = row / nk;
        let u = &unit[b * nf * v..(b + 1) * nf * v];
        let p = &unit_protos[row * nf..(row + 1) * nf];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
            let v0 = c * CHUNK;
            isa.run(
                #[inline(always)]
                || {
                    o.fill(0.0);
                    for (ch, &pc) in p.iter().enumerate() {
                        let ur = &u[ch * v + v0..ch * v + v0 + o.len()];
                        for (acc, &uv) in o.iter_mut().zip(ur) {
                            *acc = uv.mul_add(pc, *acc);
                        }
                    }
                },
            )
        });
    });
    Side {
        unit,
        norms,
        unit_protos,
        proto_norms,
        map,
    }
}

/// What the direct term of the backward reads.
struct DirectTerm<'a> {
    /// `d = M_s - M_t`, `[N, K, V]`.
    diff: &'a [f32],
    /// `p̂`, `[N, K, F]`.
    unit_protos: &'a [f32],
    /// `c = 2 scale / (N |K| V)`: `gM = c * d`.
    c: f32,
    nk: usize,
    nf: usize,
    v: usize,
}

impl DirectTerm<'_> {
    /// `dâ[n, ch, v]` for the voxels `v0 .. v0 + out.len()`: the chain
    /// `acc = fma(gM[n, kk, v], p̂[n, kk, ch], acc)` over the kept classes from `+0.0`.
    /// Inlined into the caller's SIMD context.
    #[inline(always)]
    fn d_unit(&self, b: usize, ch: usize, v0: usize, out: &mut [f32]) {
        let (nk, v) = (self.nk, self.v);
        out.fill(0.0);
        for kk in 0..nk {
            let p = self.unit_protos[(b * nk + kk) * self.nf + ch];
            let g = &self.diff[(b * nk + kk) * v + v0..(b * nk + kk) * v + v0 + out.len()];
            for (acc, &gv) in out.iter_mut().zip(g) {
                *acc = (self.c * gv).mul_add(p, *acc);
            }
        }
    }
}

/// The prototype loss and the gradient of `scale * L_proto` with respect to the student
/// features: [`protokd_reference::losses::proto::proto_loss`] then `proto_backward`, with their
/// bits (module docs).
pub(crate) fn proto(
    l: &FastLoops,
    student: &Tensor,
    teacher: &Tensor,
    labels: &LabelMap,
    scale: f32,
) -> (f32, Tensor) {
    assert_eq!(
        student.shape, teacher.shape,
        "proto_loss: student and teacher features differ in shape"
    );
    check_labels("proto_loss", student, labels, None);
    let [n, nf, ..] = student.dims5();
    let v = labels.voxels();
    let KeptClasses {
        classes: kept,
        index: kept_index,
        den,
    } = kept_classes(labels);
    let nk = kept.len();
    let mut grad = Tensor::zeros(&student.shape);
    if nk == 0 {
        return (0.0, grad);
    }
    let st = side(l, student, labels, &kept, &den);
    let tm = side(l, teacher, labels, &kept, &den).map;

    // Step 5: `d = M_s - M_t`, the loss.
    let mut diff = st.map.clone();
    diff.par_iter_mut().zip(&tm).for_each(|(s, &t)| *s -= t);
    let len = diff.len();
    let sum = l.reduce_with(
        len,
        #[inline(always)]
        |acc, j| diff[j].mul_add(diff[j], acc),
    );
    let loss = sum / len as f32;

    // Backward step 1 and step 3 (the prototype term): e[n, kk, ch].
    let c = (2.0 * scale) / len as f32;
    let d_unit_protos: Vec<f32> = (0..n * nk * nf)
        .into_par_iter()
        .map(|idx| {
            let (b, kk, ch) = (idx / (nk * nf), (idx / nf) % nk, idx % nf);
            let unit = &st.unit[(b * nf + ch) * v..(b * nf + ch + 1) * v];
            let g = &diff[(b * nk + kk) * v..(b * nk + kk + 1) * v];
            l.reduce_with(
                v,
                #[inline(always)]
                |acc, vox| (c * g[vox]).mul_add(unit[vox], acc),
            )
        })
        .collect();
    let mut e = vec![0.0f32; n * nk * nf];
    for (j, out) in e.chunks_mut(nf).enumerate() {
        let range = j * nf..(j + 1) * nf;
        norm_backward(
            &st.unit_protos[range.clone()],
            st.proto_norms[j],
            &d_unit_protos[range],
            out,
        );
        for x in out.iter_mut() {
            *x /= den[j];
        }
    }

    // Backward step 2 (the direct term) and step 4. `dâ_ch` of a voxel is the chain over the
    // kept classes; it is computed where it is needed (the same bits each time): once for
    // `s = â . dâ` per voxel, then per channel for the gradient.
    let isa = l.isa;
    let rows = DirectTerm {
        diff: &diff,
        unit_protos: &st.unit_protos,
        c,
        nk,
        nf,
        v,
    };
    let mut dots = vec![0.0f32; n * v];
    dots.par_chunks_mut(v).enumerate().for_each(|(b, sb)| {
        sb.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(cidx, out)| {
                let v0 = cidx * CHUNK;
                isa.run(
                    #[inline(always)]
                    || {
                        let mut du = vec![0.0f32; out.len()];
                        out.fill(0.0);
                        for ch in 0..nf {
                            rows.d_unit(b, ch, v0, &mut du);
                            let u = &st.unit
                                [(b * nf + ch) * v + v0..(b * nf + ch) * v + v0 + out.len()];
                            for ((acc, &uv), &g) in out.iter_mut().zip(u).zip(&du) {
                                *acc = uv.mul_add(g, *acc);
                            }
                        }
                    },
                )
            });
    });
    grad.data
        .par_chunks_mut(v)
        .enumerate()
        .for_each(|(row, out)| {
            let (b, ch) = (row / nf, row % nf);
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(cidx, o)| {
                let r = cidx * CHUNK..cidx * CHUNK + o.len();
                isa.run(
                    #[inline(always)]
                    || {
                        rows.d_unit(b, ch, r.start, o);
                        let u = &st.unit[row * v..(row + 1) * v][r.clone()];
                        let norms = &st.norms[b * v..(b + 1) * v][r.clone()];
                        let s = &dots[b * v..(b + 1) * v][r.clone()];
                        let y = &labels.data[b * v..(b + 1) * v][r.clone()];
                        for (i, g) in o.iter_mut().enumerate() {
                            let da = if norms[i] < COS_EPS {
                                *g / COS_EPS
                            } else {
                                (-u[i]).mul_add(s[i], *g) / norms[i]
                            };
                            *g = match kept_index[y[i] as usize] {
                                None => da,
                                Some(kk) => da + e[(b * nk + kk) * nf + ch],
                            };
                        }
                    },
                )
            });
        });
    (loss, grad)
}
