//! `protokd bench`: times a VNet forward or a whole ProtoKD step on seeded inputs ([`run`]),
//! on one engine or side by side on several ([`compare`]), and the deterministic inputs the
//! criterion benches share (no RNG crate: a SplitMix64 stream).
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`Work`], [`run`]: the timed runs and their record; the seeded inputs |
//! | `flops.rs` | the FLOPs of the work from the VNet's geometry |
//! | `machine.rs` | [`Peak`]: the CPU model and clock, the measured and nominal FMA peak |
//! | `breakdown.rs` | where the time went, per group of engine operations |
//! | `compare.rs` | `--engines`: the same work on several engines, table and SVG chart |
//!
//! What is timed:
//! * `forward`: evaluation-mode forward of a VNet with `C` input channels (the teacher when
//!   `C = 4`), seeded initialisation (seed 1), on an image uniform in `[-1, 1)` (seed 11);
//! * `step`: one whole ProtoKD training step (`C` must be 4): the four-channel teacher (seed 1)
//!   forward in evaluation mode, the T1ce student (seed 2) in training mode, all losses,
//!   backward and Adam, with the nested-sphere labels of [`label_map`] (every class present).
//!
//! `warmup` untimed runs, then `repeat` timed runs (wall clock); the median (of an even
//! count, the mean of the two middle values), minimum and maximum are reported, with the peak
//! resident memory of the process (Linux `VmHWM`) when known, and on a GPU the device memory in
//! use at the end (`total - free` of the driver, all processes).
//!
//! The record also holds: `flops`, the FLOPs of one run ([`flops`]); `gflops_per_s`, those over
//! the median time; on a host engine `fraction_of_peak`, that over the machine's measured FMA
//! peak (and `fraction_of_simd_peak`, over the peak of the engine's SIMD copy where `--simd`
//! named another than the best), and `breakdown` ([`breakdown`]), the timed runs' calls tallied by
//! [`crate::engine::Timed`], which a host engine runs inside; `machine` ([`Peak`]); and
//! `result_sha256`, the SHA-256 of the f32 values of the result (the last forward's logits;
//! the student's state after all the steps, in state_dict order), equal on every engine.
//!
//! With `PROTOKD_GPU_PROFILE` set, the record also holds `kernel_profile`: each GPU kernel's
//! launches and wall time over the whole run, every launch waited for
//! ([`protokd_gpu::profile`]).
//!
//! On a GPU (`--engine cuda|emulated`) the forward's model and image are uploaded once and each
//! timed forward waits for the device to finish; a step is timed as training runs it
//! ([`Trainer::step`]: the batch uploaded, the losses downloaded).

pub mod breakdown;
pub mod compare;
pub mod flops;
pub mod machine;

use crate::engine::{Compute, HostEngine, OnEngine, Resident, Timed, Trainer};
use crate::io::nifti::checked_size;
use crate::train::config::{check_activation, check_width, MAX_ACTIVATION_BYTES};
use anyhow::{bail, Context, Result};
pub use machine::Peak;
use protokd_reference::adam::AdamState;
use protokd_reference::state::{VNetConfig, VNetState, Value as StateValue};
use protokd_reference::step::StepConfig;
use protokd_reference::vnet::forward_eval_on;
use protokd_reference::{LabelMap, Tensor};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

/// SplitMix64: a tiny, well-mixed, seeded stream.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) * (2.0 / (1u64 << 24) as f32) - 1.0
    }
}

/// A tensor of the given shape with seeded values uniform in `[-scale, scale)`.
pub fn uniform(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let mut rng = SplitMix64(seed);
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.next_f32() * scale).collect())
}

/// Nested spheres around the centre of each sample: radius (relative to the half-extent of
/// each axis) below 0.3 -> 2 (NCR/NET), below 0.5 -> 1 (ET), below 0.75 -> 3 (ED), else 0.
/// Every class is present in every sample for any extent of at least 8.
pub fn label_map(n: usize, d: usize, h: usize, w: usize) -> LabelMap {
    let mut data = Vec::with_capacity(n * d * h * w);
    let rel = |i: usize, e: usize| (i as f32 + 0.5 - e as f32 / 2.0) / (e as f32 / 2.0);
    for _ in 0..n {
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let (a, b, c) = (rel(z, d), rel(y, h), rel(x, w));
                    let r = (a * a + b * b + c * c).sqrt();
                    data.push(if r < 0.3 {
                        2
                    } else if r < 0.5 {
                        1
                    } else if r < 0.75 {
                        3
                    } else {
                        0
                    });
                }
            }
        }
    }
    LabelMap::new([n, d, h, w], data)
}

/// What `protokd bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// Evaluation-mode VNet forward.
    Forward,
    /// One whole ProtoKD training step (student T1ce, four-channel teacher).
    Step,
}

impl What {
    /// `forward` or `step`.
    pub fn name(self) -> &'static str {
        match self {
            What::Forward => "forward",
            What::Step => "step",
        }
    }
}

/// The student's channel in a benched step: T1ce.
pub(crate) const STUDENT_CHANNEL: usize = 2;

/// Parses `N,C,D,H,W` (five positive integers; D, H, W multiples of 16; the f32 input at most
/// [`MAX_ACTIVATION_BYTES`], its size computed with overflow checks).
pub fn parse_shape(s: &str) -> Result<[usize; 5]> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let v: Vec<usize> = parts
        .iter()
        .map(|p| p.parse::<usize>().ok().filter(|&x| x > 0))
        .collect::<Option<_>>()
        .with_context(|| format!("--shape `{s}`: expected five positive integers N,C,D,H,W"))?;
    let Ok(shape) = <[usize; 5]>::try_from(v) else {
        bail!("--shape `{s}`: expected five values N,C,D,H,W");
    };
    if shape[2..].iter().any(|d| d % 16 != 0) {
        bail!(
            "--shape `{s}`: D, H and W must be multiples of 16 (the VNet halves them four times)"
        );
    }
    let image = [shape[0], shape[1], shape[2], shape[3], shape[4], 4];
    let what = format!("--shape `{s}`: the input (N x C x D x H x W x 4 bytes)");
    checked_size(&image, MAX_ACTIVATION_BYTES, "bytes", &what)?;
    Ok(shape)
}

/// Median (mean of the two middle values for an even count), minimum and maximum.
pub fn summary(times: &[f64]) -> (f64, f64, f64) {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let k = t.len();
    let median = if k % 2 == 1 {
        t[k / 2]
    } else {
        (t[k / 2 - 1] + t[k / 2]) / 2.0
    };
    (median, t[0], t[k - 1])
}

/// Peak resident memory of this process in bytes (`VmHWM` of `/proc/self/status`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The work `protokd bench` times, the same on every engine.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// A forward or a step.
    pub what: What,
    /// `N, C, D, H, W`.
    pub shape: [usize; 5],
    /// The VNet width.
    pub filters: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs.
    pub repeat: usize,
}

impl Work {
    /// Checks the settings (repeat, width, activation size, C = 4 for a step).
    pub fn check(&self) -> Result<()> {
        if self.repeat == 0 {
            bail!("--repeat must be at least 1");
        }
        if self.filters == 0 {
            bail!("--filters must be at least 1");
        }
        let [n, c, d, h, w] = self.shape;
        check_width(self.filters, "--filters")?;
        check_activation(n, self.filters, [d, h, w], "--shape / --filters")?;
        if self.what == What::Step && c != 4 {
            bail!("--what step needs C = 4 (the teacher's four modalities), got {c}");
        }
        Ok(())
    }

    /// The FLOPs of one run ([`flops`]).
    pub fn flops(&self) -> u64 {
        let [n, c, d, h, w] = self.shape;
        match self.what {
            What::Forward => flops::forward(
                &VNetConfig {
                    in_channels: c,
                    n_classes: 4,
                    n_filters: self.filters,
                },
                n,
                [d, h, w],
            ),
            What::Step => flops::step(self.filters, n, [d, h, w]),
        }
    }
}

/// Runs the benchmark and returns its JSON record (see the module docs); `peak` is this
/// machine's FMA peak, which the achieved GFLOP/s of a host engine is a fraction of.
pub fn run(work: &Work, compute: &Compute, peak: &Peak) -> Result<Value> {
    work.check()?;
    let Work {
        what,
        shape,
        filters,
        warmup,
        repeat,
    } = *work;
    let [n, c, d, h, w] = shape;
    let net = |in_channels: usize, seed: u64| {
        VNetState::init(
            VNetConfig {
                in_channels,
                n_classes: 4,
                n_filters: filters,
            },
            seed,
        )
    };
    // A host engine runs inside `Timed`, which gives the breakdown.
    let timed = match compute {
        Compute::Host(e) => Some(Arc::new(Timed::new(e.clone()))),
        Compute::Gpu(_) => None,
    };
    let timed_compute = timed
        .clone()
        .map(|t| Compute::Host(t as Arc<dyn HostEngine>));
    let on = timed_compute.as_ref().unwrap_or(compute);
    let image = uniform(&shape, 11, 1.0);
    let mut timer = Timer {
        warmup,
        times: Vec::with_capacity(repeat),
        timed: timed.as_deref(),
    };
    let result_sha256 = match what {
        What::Forward => {
            let model = net(c, 1);
            on.run(TimeForward {
                model: &model,
                image: &image,
                runs: warmup + repeat,
                timer: &mut timer,
            })?
        }
        // One whole step as training runs it: the batch is uploaded, the losses come back.
        What::Step => {
            let teacher = net(4, 1);
            let student = net(1, 2);
            let adam = AdamState::for_state(&student);
            let mut trainer = Trainer::new(on, student, adam, Some(&teacher))?;
            let labels = label_map(n, d, h, w);
            for k in 0..warmup + repeat {
                timer.time(k, || {
                    trainer.step(&image, &labels, &[STUDENT_CHANNEL], &StepConfig::default())?;
                    Ok(())
                })?;
            }
            state_sha256(&trainer.state()?)
        }
    };
    let times = timer.times;
    let (median, min, max) = summary(&times);
    let flops = work.flops();
    let gflops = flops as f64 / median / 1e9;
    let host = timed.is_some();
    let breakdown = timed.map(|t| breakdown::rows(&t.take(), times.iter().sum(), peak.machine));
    Ok(json!({
        "what": what.name(),
        "shape": shape,
        "filters": filters,
        "device": compute.kind(),
        "device_description": compute.describe(),
        "device_memory_in_use_bytes": compute.info().memory_in_use()?,
        "simd": compute.info().simd(),
        "threads": rayon::current_num_threads(),
        "warmup": warmup,
        "repeat": repeat,
        "times_s": times,
        "median_s": median,
        "min_s": min,
        "max_s": max,
        "flops": flops,
        "gflops_per_s": gflops,
        "fraction_of_peak": host.then(|| gflops / peak.machine),
        "fraction_of_simd_peak": peak.record["engine_simd_peak_gflops_per_s"]
            .as_f64()
            .filter(|_| host)
            .map(|p| gflops / p),
        "machine": peak.record,
        "breakdown": breakdown,
        "result_sha256": result_sha256,
        "peak_rss_bytes": peak_rss_bytes(),
        "kernel_profile": protokd_gpu::profile::report().map(|rows| rows
            .into_iter()
            .map(|(k, n, t)| json!({"kernel": k, "launches": n, "seconds": t}))
            .collect::<Vec<_>>()),
        "protokd_version": env!("CARGO_PKG_VERSION"),
    }))
}

/// SHA-256 (lower-case hex) of the f32 values of `tensors`, little-endian, one after the other.
fn tensors_sha256<'t>(tensors: impl IntoIterator<Item = &'t Tensor>) -> String {
    let mut h = Sha256::new();
    for t in tensors {
        for v in &t.data {
            h.update(v.to_le_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

/// SHA-256 of a state's f32 entries in state_dict order (the result of the benched steps).
fn state_sha256(state: &VNetState) -> String {
    tensors_sha256(state.entries().iter().filter_map(|e| match &e.value {
        StateValue::F32(t) => Some(t),
        StateValue::I64(_) => None,
    }))
}

/// Wall-clock times of the runs after the warm-up; the tally of a [`Timed`] engine restarts
/// with the first timed run.
struct Timer<'a> {
    warmup: usize,
    times: Vec<f64>,
    timed: Option<&'a Timed<dyn HostEngine>>,
}

impl Timer<'_> {
    /// Runs `run` (the `k`-th run, from 0) and records its time unless it is a warm-up run.
    fn time(&mut self, k: usize, run: impl FnOnce() -> Result<()>) -> Result<()> {
        if let (true, Some(t)) = (k == self.warmup, self.timed) {
            t.take();
        }
        let t0 = Instant::now();
        run()?;
        if k >= self.warmup {
            self.times.push(t0.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

/// The timed forwards on one engine: the model and the image are moved to the engine once;
/// each timed forward ends when the engine has finished it (nothing is downloaded). Returns
/// the SHA-256 of the last forward's logits ([`tensors_sha256`]), downloaded after the runs.
struct TimeForward<'a, 't> {
    model: &'a VNetState,
    image: &'a Tensor,
    runs: usize,
    timer: &'a mut Timer<'t>,
}

impl OnEngine<'_> for TimeForward<'_, '_> {
    type Output = Result<String>;
    fn run<E: Resident + ?Sized>(self, e: &E) -> Result<String> {
        let model = self
            .model
            .try_map(|_, t| e.upload(t).map(Cow::into_owned))?;
        let x = e.upload(self.image)?;
        let mut last = None;
        for k in 0..self.runs {
            self.timer.time(k, || {
                last = Some(forward_eval_on(e, &model, &x)?);
                Ok(e.synchronize()?)
            })?;
        }
        let logits = last.context("no forward ran")?.logits;
        Ok(tensors_sha256([&*e.download(&logits)?]))
    }
}

// Verifies (every test in this file): R-WFL-4
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_shape_parsing() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(parse_shape("1,4,16,32,48").unwrap(), [1, 4, 16, 32, 48]);
        for bad in ["1,4,16,32", "1,4,16,32,40", "1,0,16,16,16", "a,4,16,16,16"] {
            assert!(parse_shape(bad).is_err(), "{bad}");
        }
    }
}
