//! The machine `protokd bench` ran on: the CPU model and clock (Linux `/proc/cpuinfo`), and its
//! fused multiply-add peak, measured per SIMD copy and nominal ([`protokd_cpu::peak`]).

use protokd_cpu::{peak, Isa};
use serde_json::{json, Value};

/// The first value of `key` in `/proc/cpuinfo` (`None` where there is no such file or line).
fn cpuinfo(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The CPU as `/proc/cpuinfo` names it (`model name` on x86-64, `Model` or `Hardware` on Arm).
pub fn cpu_model() -> Option<String> {
    ["model name", "Model", "Hardware"]
        .into_iter()
        .find_map(cpuinfo)
}

/// The clock in GHz as `/proc/cpuinfo` reports it for the first CPU (`cpu MHz`), which turbo
/// and power states move.
pub fn cpu_ghz() -> Option<f64> {
    cpuinfo("cpu MHz")?
        .parse::<f64>()
        .ok()
        .filter(|m| m.is_finite() && *m > 0.0)
        .map(|m| m / 1e3)
}

/// The machine's FMA peak, measured on every thread of the pool for the best SIMD copy
/// ([`Isa::detected`]) and for `simd` (the copy the engine ran, if another), and nominal at
/// [`cpu_ghz`]. The best copy's measured peak is the machine's peak.
pub struct Peak {
    /// Measured GFLOP/s of the best copy.
    pub machine: f64,
    /// JSON record: CPU, clock, copies and peaks.
    pub record: Value,
}

impl Peak {
    /// Measures the peak (about a second; see [`peak::measure`]).
    pub fn measure(simd: Option<Isa>) -> Peak {
        let best = Isa::detected();
        let threads = rayon::current_num_threads();
        let machine = peak::measure(best).unwrap_or(f64::NAN);
        let engine_copy = simd
            .filter(|&s| s != best)
            .and_then(|s| Some((s, peak::measure(s)?)));
        let ghz = cpu_ghz();
        Peak {
            machine,
            record: json!({
                "cpu_model": cpu_model(),
                "cpu_ghz": ghz,
                "threads": threads,
                "best_simd": best.name(),
                "fma_lanes": peak::fma_lanes(best),
                "measured_peak_gflops_per_s": machine,
                "nominal_peak_gflops_per_s": ghz.and_then(|g| peak::nominal_gflops(best, threads, g)),
                "engine_simd_peak_gflops_per_s": engine_copy.map(|(_, p)| p),
                "engine_simd": engine_copy.map(|(s, _)| s.name()),
            }),
        }
    }
}
