//! The training configuration: the paper's defaults (method page, sections 3 and 6), overridden
//! key by key by a JSON file, checked, and recorded in the run folder.
//!
//! The effective configuration is built as JSON: the defaults of the method ([`defaults`]),
//! then each key of the user's `--config` object replaces the default's (an unknown key is an
//! error naming it), then `val_start_epoch`, if the user did not set it, becomes
//! `max_epoch / 4` (integer division, as the authors' `max_epoch // 4`). The result must
//! deserialise into [`TrainConfig`] and pass [`TrainConfig::check`].

use crate::data::preprocess::{CropBox, BRATS_CROP};
use crate::infer::sliding_window::Window;
use crate::io::nifti::checked_size;
use crate::modality::Modalities;
use anyhow::{anyhow, bail, Context, Result};
use protokd_reference::adam::AdamConfig;
use protokd_reference::step::{StepConfig, StepMode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Largest VNet width (`n_filters`, `bench --filters`): 256, sixteen times the paper's 16. The
/// VNet's weights grow as the square of the width (about 2.4 billion parameters, 9.5 GB of f32
/// at 256, before Adam's two moments), so a wider network cannot be trained or run here.
pub const MAX_N_FILTERS: usize = 256;

/// Largest first-level activation a run may ask for, in bytes: 2^34 (16 GiB). The estimate is
/// `batch x n_filters x D x H x W` f32 values (one activation at the input resolution; the
/// VNet holds several, so a run needs some times more): the paper's training (batch 4, 16
/// filters, patch 96 x 128 x 128) needs 0.4 GB of it.
pub const MAX_ACTIVATION_BYTES: usize = 1 << 34;

/// Refuses a VNet width above [`MAX_N_FILTERS`]; `what` names the setting in the message.
pub fn check_width(filters: usize, what: &str) -> Result<()> {
    if filters > MAX_N_FILTERS {
        bail!("{what} {filters} is above the limit of {MAX_N_FILTERS} (the VNet width)");
    }
    Ok(())
}

/// Refuses a first-level activation of `batch x filters x patch` f32 values above
/// [`MAX_ACTIVATION_BYTES`] (overflow-checked); `what` names the settings in the message.
pub fn check_activation(batch: usize, filters: usize, patch: [usize; 3], what: &str) -> Result<()> {
    let factors = [batch, filters, patch[0], patch[1], patch[2], 4];
    checked_size(
        &factors,
        MAX_ACTIVATION_BYTES,
        "bytes",
        &format!("{what}: the first activation (batch x n_filters x D x H x W x 4 bytes)"),
    )
    .map(|_| ())
}

/// What is trained, and with which loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Four-modality teacher: `L_seg`, poly learning rate.
    Teacher,
    /// ProtoKD student: `L_seg + 10 L_kd + 0.1 L_proto` against a frozen teacher.
    Protokd,
    /// Pixel-KD student (the paper's ablation): `L_seg + 10 L_kd` (proto weight 0).
    Kd,
    /// Unimodal baseline: `L_seg` on the student's modalities alone.
    Baseline,
}

impl Method {
    /// The name used in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Method::Teacher => "teacher",
            Method::Protokd => "protokd",
            Method::Kd => "kd",
            Method::Baseline => "baseline",
        }
    }

    /// Whether the method distils from a teacher.
    pub(crate) fn needs_teacher(self) -> bool {
        matches!(self, Method::Protokd | Method::Kd)
    }
}

/// How the learning rate moves over epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `lr * (1 - epoch / max_epoch)^poly_power` in epoch `epoch` (0-based), the teacher's.
    Poly,
    /// `lr` throughout: the authors' student trainer computes the poly schedule but never
    /// applies it.
    Constant,
}

/// Every setting of a training run (all keys required in the effective config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Teacher, protokd, kd or baseline.
    pub method: Method,
    /// Input modalities, comma-separated in channel order (`t1,t2,t1ce,flair` for a teacher).
    pub modalities: String,
    /// VNet width F (16).
    pub n_filters: usize,
    /// Patches per step (4).
    pub batch_size: usize,
    /// Training patch (D, H, W) = (96, 128, 128); multiples of 16.
    pub patch: [usize; 3],
    /// Epochs (1000); an epoch is `floor(training cases / batch_size)` steps.
    pub max_epoch: u64,
    /// Base learning rate (1e-3).
    pub lr: f64,
    /// Poly for the teacher, constant for students.
    pub lr_schedule: LrSchedule,
    /// Exponent of the poly schedule (0.9).
    pub poly_power: f32,
    /// Adam beta1 (0.9).
    pub beta1: f64,
    /// Adam beta2 (0.999).
    pub beta2: f64,
    /// Adam eps (1e-8).
    pub eps: f64,
    /// L2 weight decay added to the gradient (1e-5).
    pub weight_decay: f64,
    /// Weight of the pixel-wise KD loss (10; 0 for teacher and baseline).
    pub kd_weight: f32,
    /// Weight of the prototype loss (0.1; 0 for kd, teacher and baseline).
    pub proto_weight: f32,
    /// KD temperature (10).
    pub temperature: f32,
    /// First epoch (0-based) after which the model is validated (`max_epoch / 4`).
    pub val_start_epoch: u64,
    /// Validate every this many epochs from `val_start_epoch` on (1).
    pub val_every: u64,
    /// Sliding-window patch of validation (96, 128, 128).
    pub val_patch: [usize; 3],
    /// Sliding-window stride of validation (48, 64, 64).
    pub val_stride: [usize; 3],
    /// Training crop of the whole volume, half-open `[[z0, z1], [y0, y1], [x0, x1]]`
    /// (BraTS: z 5..145, y 24..216, x 24..216), or `null` for the whole volume (phantoms of
    /// other sizes).
    pub crop: Option<[[usize; 2]; 3]>,
    /// Seed of the epoch shuffles and the augmentation.
    pub seed: u64,
    /// Seed of the network's initialisation.
    pub init_seed: u64,
    /// Seed of the train / validation / test split when no split folder is given.
    pub split_seed: u64,
    /// Fraction of the cases held out for validation by the seeded split (28 / 285).
    pub val_fraction: f64,
    /// Fraction held out for testing by the seeded split (57 / 285).
    pub test_fraction: f64,
}

/// The paper's settings for `method` and its student `modalities`, as JSON.
pub fn defaults(method: Method, modalities: &Modalities) -> Value {
    let (schedule, kd, proto) = match method {
        Method::Teacher => ("poly", 0.0, 0.0),
        Method::Protokd => ("constant", 10.0, 0.1),
        Method::Kd => ("constant", 10.0, 0.0),
        Method::Baseline => ("constant", 0.0, 0.0),
    };
    let c = &BRATS_CROP;
    let crop = [0, 1, 2].map(|a| [c.start[a], c.end[a]]);
    json!({
        "method": method.name(),
        "modalities": modalities.to_string(),
        "n_filters": 16,
        "batch_size": 4,
        "patch": [96, 128, 128],
        "max_epoch": 1000,
        "lr": 1e-3,
        "lr_schedule": schedule,
        "poly_power": 0.9,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 1e-5,
        "kd_weight": kd,
        "proto_weight": proto,
        "temperature": 10.0,
        "val_every": 1,
        "val_patch": [96, 128, 128],
        "val_stride": [48, 64, 64],
        "crop": crop,
        "seed": 1337,
        "init_seed": 1337,
        "split_seed": 2018,
        "val_fraction": 28.0 / 285.0,
        "test_fraction": 57.0 / 285.0,
    })
}

/// The effective configuration: [`defaults`] overridden by `overrides` (a JSON object; `source`
/// names it in errors), then checked. `method` and `modalities` come from the command line; an
/// override that contradicts them is an error.
pub fn effective(
    method: Method,
    modalities: &Modalities,
    overrides: Option<(&Value, &str)>,
) -> Result<TrainConfig> {
    let mut merged = defaults(method, modalities);
    let base = merged.as_object_mut().expect("defaults are an object");
    let mut val_start_given = false;
    if let Some((value, source)) = overrides {
        let obj = value
            .as_object()
            .ok_or_else(|| anyhow!("{source}: the configuration must be a JSON object"))?;
        for (key, v) in obj {
            if key == "val_start_epoch" {
                val_start_given = true;
            } else if !base.contains_key(key) {
                let mut keys: Vec<&str> = base.keys().map(String::as_str).collect();
                keys.push("val_start_epoch");
                keys.sort_unstable();
                bail!(
                    "{source}: unknown key `{key}`; the keys are {}",
                    keys.join(", ")
                );
            }
            if (key == "method" || key == "modalities") && *v != base[key] {
                bail!(
                    "{source}: `{key}` = {v} contradicts the command line ({}); set it there",
                    base[key]
                );
            }
            base.insert(key.clone(), v.clone());
        }
    }
    let source = overrides.map_or("the default configuration", |(_, s)| s);
    if !val_start_given {
        let max_epoch = base["max_epoch"].as_u64().ok_or_else(|| {
            anyhow!(
                "{source}: `max_epoch` = {} is not a whole number",
                base["max_epoch"]
            )
        })?;
        base.insert("val_start_epoch".into(), json!(max_epoch / 4));
    }
    let cfg: TrainConfig = serde_json::from_value(merged.clone()).map_err(|e| {
        let key = mistyped_key(&merged).map_or(String::new(), |k| format!(" of `{k}`"));
        anyhow!("{source}: invalid value{key}: {e}")
    })?;
    cfg.check().with_context(|| source.to_string())?;
    Ok(cfg)
}

/// The first key of `merged` (an effective configuration that does not deserialise) whose value
/// alone makes the defaults fail to deserialise: the key a type error is about (serde's
/// message names the expected type but not the key).
fn mistyped_key(merged: &Value) -> Option<String> {
    let obj = merged.as_object()?;
    let method: Method = serde_json::from_value(obj.get("method")?.clone()).ok()?;
    let modalities = Modalities::parse(obj.get("modalities")?.as_str()?).ok()?;
    let mut base = defaults(method, &modalities);
    base["val_start_epoch"] = json!(0);
    obj.iter()
        .find(|(key, v)| {
            let mut one = base.clone();
            one[key.as_str()] = (*v).clone();
            serde_json::from_value::<TrainConfig>(one).is_err()
        })
        .map(|(key, _)| key.clone())
}

/// Refuses `v` unless it is a finite number >= 0 (an f32 is compared exactly as an f64; the
/// message shows `v` as given).
fn non_negative<T: Copy + Into<f64> + std::fmt::Display>(key: &str, v: T) -> Result<()> {
    let x: f64 = v.into();
    if !(x.is_finite() && x >= 0.0) {
        bail!("`{key}` = {v} must be a finite number >= 0");
    }
    Ok(())
}

impl TrainConfig {
    /// Checks every value's range; errors name the key and the value. In this order: the
    /// modalities (all four for a teacher), the sizes (`check_sizes`), the optimiser's and the
    /// losses' numbers (`check_numbers`), the split's fractions, the crop (`check_crop`).
    pub fn check(&self) -> Result<()> {
        let m = self.student_modalities()?;
        if self.method == Method::Teacher && m != Modalities::all() {
            bail!(
                "a teacher takes all four modalities, not `{}`",
                self.modalities
            );
        }
        self.check_sizes()?;
        self.check_numbers()?;
        let fractions = self.val_fraction + self.test_fraction;
        if !(0.0..=1.0).contains(&self.val_fraction)
            || !(0.0..=1.0).contains(&self.test_fraction)
            || fractions >= 1.0
        {
            bail!(
                "`val_fraction` = {} and `test_fraction` = {} must be in [0, 1] with a sum below 1",
                self.val_fraction,
                self.test_fraction
            );
        }
        self.check_crop()
    }

    /// `n_filters`, `batch_size`, `max_epoch` and `val_every` at least 1; the patches positive
    /// multiples of 16; the validation window valid ([`Window::check`]: strides 1 to the patch);
    /// the memory of training and validation within [`check_activation`]'s limits.
    fn check_sizes(&self) -> Result<()> {
        let positive = [
            ("n_filters", self.n_filters),
            ("batch_size", self.batch_size),
        ];
        for (key, v) in positive {
            if v == 0 {
                bail!("`{key}` must be at least 1");
            }
        }
        if self.max_epoch == 0 || self.val_every == 0 {
            bail!("`max_epoch` and `val_every` must be at least 1");
        }
        for (key, p) in [("patch", self.patch), ("val_patch", self.val_patch)] {
            if p.iter().any(|&d| d == 0 || d % 16 != 0) {
                bail!("`{key}` = {p:?}: every size must be a positive multiple of 16");
            }
        }
        if self.val_stride.contains(&0) {
            bail!(
                "`val_stride` = {:?}: strides must be positive",
                self.val_stride
            );
        }
        let window = Window {
            patch: self.val_patch,
            stride: self.val_stride,
        };
        window.check().with_context(|| {
            format!(
                "`val_patch` = {:?}, `val_stride` = {:?}",
                self.val_patch, self.val_stride
            )
        })?;
        check_width(self.n_filters, "`n_filters`")?;
        check_activation(
            self.batch_size,
            self.n_filters,
            self.patch,
            "`n_filters`, `batch_size` and `patch`",
        )?;
        check_activation(
            1,
            self.n_filters,
            self.val_patch,
            "`n_filters` and `val_patch`",
        )
    }

    /// `lr`, `eps` and `weight_decay` finite and >= 0, and finite as f32 (the engine's type);
    /// `beta1` and `beta2` in [0, 1);
    /// `kd_weight`, `proto_weight` and `poly_power` finite and >= 0; `temperature` > 0; both
    /// weights 0 for a method without teacher.
    fn check_numbers(&self) -> Result<()> {
        for (key, v) in [
            ("lr", self.lr),
            ("eps", self.eps),
            ("weight_decay", self.weight_decay),
        ] {
            non_negative(key, v)?;
            if !(v as f32).is_finite() {
                bail!(
                    "config `{key}` = {v:e} is not finite as f32 (the engine computes in f32, \
                     whose largest value is {:e})",
                    f32::MAX
                );
            }
        }
        for (key, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                bail!("`{key}` = {v} must lie in [0, 1)");
            }
        }
        for (key, v) in [
            ("kd_weight", self.kd_weight),
            ("proto_weight", self.proto_weight),
            ("poly_power", self.poly_power),
        ] {
            non_negative(key, v)?;
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!("`temperature` = {} must be > 0", self.temperature);
        }
        if !self.method.needs_teacher() && (self.kd_weight != 0.0 || self.proto_weight != 0.0) {
            bail!(
                "method {} has no teacher: `kd_weight` and `proto_weight` must be 0",
                self.method.name()
            );
        }
        Ok(())
    }

    /// Each range of the crop, if any, non-empty and at least as long as the patch.
    fn check_crop(&self) -> Result<()> {
        if let Some(b) = self.crop_box() {
            for (axis, (lo, hi)) in ["z", "y", "x"].iter().zip(b.start.into_iter().zip(b.end)) {
                if lo >= hi {
                    bail!("`crop`: the {axis} range {lo}..{hi} is empty");
                }
            }
            for (axis, (&p, n)) in ["z", "y", "x"].iter().zip(self.patch.iter().zip(b.shape())) {
                if p > n {
                    bail!("`patch` is {p} along {axis} but the crop keeps only {n} voxels");
                }
            }
        }
        Ok(())
    }

    /// The input modalities.
    pub(crate) fn student_modalities(&self) -> Result<Modalities> {
        Modalities::parse(&self.modalities).context("`modalities`")
    }

    /// The crop as a [`CropBox`], if any.
    pub(crate) fn crop_box(&self) -> Option<CropBox> {
        self.crop.map(|r| CropBox {
            start: r.map(|a| a[0]),
            end: r.map(|a| a[1]),
        })
    }

    /// The learning rate of 0-based `epoch`: `lr` for a constant schedule; for poly,
    /// `lr * (1 - epoch / max_epoch)^poly_power`, evaluated as
    /// `f = 1 - epoch / max_epoch` (f64 division and subtraction, then rounded to f32, so that
    /// the last epochs keep their relative precision), then
    /// `f^p = exp(p * ln f)` with the reference's own `exp` and `ln` (no platform libm; `0^p = 0`),
    /// then `lr * (f^p as f64)` in f64.
    pub(crate) fn lr_at(&self, epoch: u64) -> f64 {
        match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Poly => {
                use protokd_reference::mathfn::{exp, ln};
                let f = (1.0 - epoch as f64 / self.max_epoch as f64) as f32;
                let factor = if f <= 0.0 {
                    0.0
                } else {
                    exp(self.poly_power * ln(f))
                };
                self.lr * factor as f64
            }
        }
    }

    /// The engine's step configuration in `epoch`.
    pub(crate) fn step_config(&self, epoch: u64) -> StepConfig {
        StepConfig {
            mode: match self.method {
                Method::Teacher => StepMode::Teacher,
                Method::Baseline => StepMode::Baseline,
                Method::Protokd | Method::Kd => StepMode::ProtoKd,
            },
            kd_weight: self.kd_weight,
            proto_weight: self.proto_weight,
            temperature: self.temperature,
            adam: AdamConfig {
                lr: self.lr_at(epoch),
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
            },
        }
    }
}

// Verifies (every test in this file): R-MTH-9, R-WFL-1
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers() {
        let t = effective(Method::Teacher, &Modalities::all(), None).unwrap();
        assert_eq!(t.batch_size, 4);
        assert_eq!(t.patch, [96, 128, 128]);
        assert_eq!(t.max_epoch, 1000);
        assert_eq!(t.val_start_epoch, 250);
        assert_eq!(t.lr_schedule, LrSchedule::Poly);
        assert_eq!(t.crop_box(), Some(BRATS_CROP));
        let s = effective(Method::Protokd, &Modalities::parse("t1ce").unwrap(), None).unwrap();
        assert_eq!(s.lr_schedule, LrSchedule::Constant);
        assert_eq!(
            (s.kd_weight, s.proto_weight, s.temperature),
            (10.0, 0.1, 10.0)
        );
        assert_eq!(s.step_config(500).adam, AdamConfig::default());
        let k = effective(Method::Kd, &Modalities::parse("t2").unwrap(), None).unwrap();
        assert_eq!((k.kd_weight, k.proto_weight), (10.0, 0.0));
    }

    // Verifies: R-CLI-1
    #[test]
    fn overrides_apply_and_bad_keys_are_named() {
        let m = Modalities::parse("t1ce").unwrap();
        let o = json!({"max_epoch": 8, "n_filters": 4, "crop": null});
        let c = effective(Method::Baseline, &m, Some((&o, "cfg.json"))).unwrap();
        assert_eq!((c.max_epoch, c.val_start_epoch, c.n_filters), (8, 2, 4));
        assert_eq!(c.crop_box(), None);
        let o = json!({"max_epoch": 8, "val_start_epoch": 0});
        let c = effective(Method::Baseline, &m, Some((&o, "cfg.json"))).unwrap();
        assert_eq!(c.val_start_epoch, 0);
        for (bad, needle) in [
            (json!({"epochs": 3}), "unknown key `epochs`"),
            (json!({"patch": [96, 100, 128]}), "multiple of 16"),
            (json!({"method": "teacher"}), "contradicts the command line"),
            (json!({"kd_weight": 1.0}), "has no teacher"),
            (json!({"lr": "fast"}), "invalid value"),
            (json!([1, 2]), "must be a JSON object"),
        ] {
            let e = effective(Method::Baseline, &m, Some((&bad, "cfg.json"))).unwrap_err();
            let msg = format!("{e:#}");
            assert!(
                msg.contains(needle) && msg.contains("cfg.json"),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn poly_schedule_follows_its_formula() {
        let t = effective(Method::Teacher, &Modalities::all(), None).unwrap();
        assert_eq!(t.lr_at(0), 1e-3);
        assert_eq!(t.lr_at(1000), 0.0);
        for epoch in [1u64, 250, 500, 999] {
            let exact = 1e-3 * (1.0 - epoch as f64 / 1000.0).powf(0.9);
            let got = t.lr_at(epoch);
            assert!(
                ((got - exact) / exact).abs() < 1e-6,
                "{epoch}: {got} vs {exact}"
            );
        }
    }
}
