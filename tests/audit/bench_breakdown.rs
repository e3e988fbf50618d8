//! `protokd bench`'s FLOP count, GFLOP/s and per-category breakdown (`src/audit/bench/`,
//! `src/engine/timed.rs`), held to PyTorch's own count of the same work.

use protokd::audit::bench::{flops, run, Peak, What, Work};
use protokd::engine::EngineKind;
use protokd_reference::state::VNetConfig;
use serde_json::Value;

/// Convolution FLOPs counted by PyTorch's `FlopCounterMode` (torch 2.15 on the CPU) for the
/// work of `protokd bench`: `python3 tools/bench/vnet_flops.py --shape S --filters F`, as
/// (shape, filters, forward, step).
const TORCH_COUNTS: [([usize; 5], usize, u64, u64); 2] = [
    ([1, 4, 16, 16, 32], 2, 13_783_040, 46_284_800),
    ([1, 4, 96, 128, 128], 16, 129_905_983_488, 506_034_388_992),
];

// Verifies: R-WFL-4
#[test]
fn flop_counts_are_pytorchs() {
    for (shape, filters, forward, step) in TORCH_COUNTS {
        let [n, c, d, h, w] = shape;
        let cfg = VNetConfig {
            in_channels: c,
            n_classes: 4,
            n_filters: filters,
        };
        assert_eq!(flops::forward(&cfg, n, [d, h, w]), forward, "{shape:?}");
        assert_eq!(flops::step(filters, n, [d, h, w]), step, "{shape:?}");
    }
}

/// The breakdown's categories in order, as (name, share, flops, GFLOP/s).
fn categories(r: &Value) -> Vec<(String, f64, u64, Option<f64>)> {
    r["breakdown"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["category"].as_str().unwrap().to_string(),
                c["share"].as_f64().unwrap(),
                c["flops"].as_u64().unwrap(),
                c["gflops_per_s"].as_f64(),
            )
        })
        .collect()
}

/// On the fast CPU engine: the record's FLOPs are PyTorch's, the breakdown's per-call tally
/// adds up to them once per timed run, its shares to 1, and the GFLOP/s and fractions of the
/// peak follow from the times.
// Verifies: R-WFL-4
#[test]
fn the_breakdown_adds_up_to_the_work() {
    let ([_, _, d, h, w], filters, forward, step) = TORCH_COUNTS[0];
    let peak = Peak::measure(None);
    assert!(peak.machine > 0.0, "measured peak {}", peak.machine);
    assert!(peak.record["cpu_model"].is_string() || !cfg!(target_os = "linux"));
    let cpu = EngineKind::Cpu.open().unwrap();
    for (what, c, expected) in [(What::Forward, 4, forward), (What::Step, 4, step)] {
        let work = Work {
            what,
            shape: [1, c, d, h, w],
            filters,
            warmup: 1,
            repeat: 2,
        };
        let r = run(&work, &cpu, &peak).unwrap();
        assert_eq!(r["flops"].as_u64(), Some(expected), "{what:?}");
        assert_eq!(r["simd"], protokd_cpu::Isa::detected().name());
        let median = r["median_s"].as_f64().unwrap();
        let gflops = r["gflops_per_s"].as_f64().unwrap();
        assert!((gflops - expected as f64 / median / 1e9).abs() <= 1e-9 * gflops);
        let fraction = r["fraction_of_peak"].as_f64().unwrap();
        assert!((fraction - gflops / peak.machine).abs() <= 1e-12);
        let cats = categories(&r);
        let names: Vec<&str> = cats.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "forward conv",
                "input gradient",
                "weight gradient",
                "BatchNorm+ReLU",
                "losses",
                "Adam",
                "other"
            ]
        );
        let shares: f64 = cats.iter().map(|c| c.1).sum();
        assert!(
            (shares - 1.0).abs() < 1e-9,
            "{what:?}: shares add up to {shares}"
        );
        assert!(cats.iter().all(|c| (0.0..=1.0).contains(&c.1)));
        let counted: u64 = cats.iter().map(|c| c.2).sum();
        assert_eq!(counted, 2 * expected, "{what:?}: two timed runs");
        for (name, _, f, g) in &cats {
            assert_eq!(
                g.is_some(),
                *f > 0,
                "{name}: GFLOP/s only where FLOPs are counted"
            );
        }
        match what {
            // A forward has no gradients, losses or Adam.
            What::Forward => {
                assert_eq!(cats[0].2, 2 * expected);
                assert!([1, 2, 4, 5].iter().all(|&i| cats[i].1 == 0.0), "{cats:?}");
                assert!(cats[3].1 > 0.0, "{cats:?}");
            }
            // A step's weight gradients cost the student's forward, its input gradients that
            // less the first convolution (1 -> F, 3x3x3): the student has one input channel.
            What::Step => {
                let student = flops::forward(
                    &VNetConfig {
                        in_channels: 1,
                        n_classes: 4,
                        n_filters: filters,
                    },
                    1,
                    [d, h, w],
                );
                let first = (2 * filters * 27 * d * h * w) as u64;
                assert_eq!(cats[2].2, 2 * student);
                assert_eq!(cats[1].2, 2 * (student - first));
                assert!(cats[3..6].iter().all(|c| c.1 > 0.0), "{cats:?}");
            }
        }
        let sha = r["result_sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 64);
    }
}
