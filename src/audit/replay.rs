//! The audit commands: one forward or one training step on tensors from safetensors files,
//! with every output tensor written and its SHA-256 printed, so a third party can re-run the
//! computation and compare bits.

use crate::engine::Compute;
use crate::engine::{Step, Trainer};
use crate::io::checkpoint::{self, state_tensors, Checkpoint};
use crate::io::files::check_new;
use crate::io::tensorfile::{write_tensors, OutTensor, TensorFile};
use crate::modality::Modalities;
use anyhow::{bail, Context, Result};
use protokd_reference::adam::AdamState;
use protokd_reference::engine::Spec;
use protokd_reference::error::EngineError;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::{StepConfig, StepMode, StepReport};
use protokd_reference::vnet::check_input;
use protokd_reference::{LabelMap, Tensor};
use std::path::Path;

/// `protokd audit forward`: the network of `weights` on `image` from `input`; writes
/// `features` and `logits` to `out` ([`write_output`]: refused if it exists unless `force`).
/// Evaluation mode unless `train` (then BatchNorm uses the batch statistics; the updated
/// running statistics are not saved).
pub fn forward(
    compute: &Compute,
    weights: &Path,
    input: &Path,
    out: &Path,
    force: bool,
    train: bool,
) -> Result<Vec<(String, String)>> {
    let mut ckpt = checkpoint::load(weights)?;
    let channels = ckpt.state.config.in_channels;
    let x = read_image(
        input,
        channels,
        &format!(
            "the network in {} takes {channels} input channels",
            weights.display()
        ),
    )?;
    let y = crate::engine::forward(compute, &mut ckpt.state, &x, train)
        .map_err(|e| engine_error(e, input, &x))?;
    write_output(
        out,
        force,
        &[
            ("features".into(), OutTensor::F32(y.features)),
            ("logits".into(), OutTensor::F32(y.logits)),
        ],
    )
}

/// Writes the tensors of an audit to `out`, refused if it exists unless `force` ([`check_new`];
/// checked once the inputs are read and the computation has run, so that a bad input is
/// reported as such) and claimed as new, so a file that appears meanwhile is not replaced.
fn write_output(
    out: &Path,
    force: bool,
    tensors: &[(String, OutTensor)],
) -> Result<Vec<(String, String)>> {
    check_new(out, "--out", force)?;
    write_tensors(out, tensors, None)
}

/// An engine error about the input `x` read from `input`, with the file named; a batch too small
/// for training-mode BatchNorm also says what to change.
fn engine_error(e: EngineError, input: &Path, x: &Tensor) -> anyhow::Error {
    match e {
        EngineError::BatchTooSmall(m) => anyhow::anyhow!(
            "{}: tensor `image` of shape {:?} is too small for training mode: {m} (at the deepest level, D/16 x H/16 x W/16, each channel gets N * D/16 * H/16 * W/16 values: use a batch of N >= 2 or a larger volume)",
            input.display(),
            x.shape
        ),
        e => anyhow::Error::new(e).context(format!("{}", input.display())),
    }
}

/// Reads tensor `image` of `path` and checks it against `channels` channels (`why` says who
/// wants that many).
pub(crate) fn read_image(path: &Path, channels: usize, why: &str) -> Result<Tensor> {
    let file = TensorFile::open(path)?;
    let x = file.f32("image")?;
    if x.shape.len() == 5 && x.shape[1] != channels {
        bail!(
            "{}: tensor `image` has {} channels (shape {:?}), expected {channels}: {why}",
            path.display(),
            x.shape[1],
            x.shape,
        );
    }
    let cfg = protokd_reference::state::VNetConfig {
        in_channels: channels,
        n_classes: 1,
        n_filters: 1,
    };
    check_input(&Spec, &cfg, "image", &x).with_context(|| format!("{}", path.display()))?;
    Ok(x)
}

/// Tensor `label` `[N, 1, D, H, W]` of any integer or float dtype, holding integers in
/// `0 .. n_classes`, as a [`LabelMap`].
pub fn read_labels(file: &TensorFile, n_classes: usize) -> Result<LabelMap> {
    let (shape, values) = file.numeric("label")?;
    let p = file.path().display();
    if shape.len() != 5 || shape[1] != 1 {
        bail!("{p}: tensor `label` has shape {shape:?}, expected [N, 1, D, H, W]");
    }
    let mut data = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        if !(v.fract() == 0.0 && v >= 0.0 && v < n_classes as f64) {
            bail!("{p}: tensor `label` holds {v} at flat index {i}; labels must be integers in 0..={}", n_classes - 1);
        }
        data.push(v as u8);
    }
    Ok(LabelMap::new(
        [shape[0], shape[2], shape[3], shape[4]],
        data,
    ))
}

/// Options of `protokd audit step`.
#[derive(Clone, Debug)]
pub struct StepArgs<'a> {
    /// Student checkpoint.
    pub student: &'a Path,
    /// Teacher checkpoint (ProtoKD only).
    pub teacher: Option<&'a Path>,
    /// Batch file with `image` and `label`.
    pub batch: &'a Path,
    /// Student modalities (`None`: from the student's metadata).
    pub modality: Option<Modalities>,
    /// Output file.
    pub out: &'a Path,
    /// Replace `out` if it exists.
    pub force: bool,
    /// Loss weights, temperature, optimiser.
    pub config: StepConfig,
    /// Where the step runs.
    pub compute: &'a Compute,
}

/// `protokd audit step`: one training step, no augmentation; writes the losses, the gradients
/// and the updated state.
pub fn step(a: &StepArgs) -> Result<Vec<(String, String)>> {
    let student = checkpoint::load(a.student)?;
    let cfg = student.state.config;
    let modalities = step_modalities(a, &student)?;
    let teacher = step_teacher(a, cfg)?;
    let (image, labels) = read_batch(a, cfg)?;
    let adam = AdamState::for_state(&student.state);
    let mut trainer = Trainer::new(a.compute, student.state, adam, teacher.as_ref())?;
    let report = trainer
        .run(Step {
            image: &image,
            labels: &labels,
            channels: modalities.channels(),
            cfg: &a.config,
            grads: true,
        })
        .map_err(|e| engine_error(e, a.batch, &image))?;
    let state = trainer.state()?;
    write_output(a.out, a.force, &step_outputs(report, &state))
}

/// The student's modalities: all four for `--mode teacher`, else `--modality` or the
/// checkpoint's record (both, they must agree); their count must be the student's channels.
pub(crate) fn step_modalities(a: &StepArgs, student: &Checkpoint) -> Result<Modalities> {
    let cfg = student.state.config;
    let modalities = match (a.config.mode, &a.modality, &student.modalities) {
        (StepMode::Teacher, Some(m), _) if *m != Modalities::all() => {
            bail!("--mode teacher trains on all four modalities; --modality {m} does not apply")
        }
        (StepMode::Teacher, ..) => Modalities::all(),
        (_, Some(m), Some(recorded)) if m != recorded => bail!(
            "--modality {m} disagrees with the student checkpoint {}, which was made for `{recorded}`",
            a.student.display()
        ),
        (_, Some(m), _) => m.clone(),
        (_, None, Some(recorded)) => recorded.clone(),
        (_, None, None) => bail!(
            "the student checkpoint {} does not record its modalities: give --modality (t1, t2, t1ce, flair or a comma-separated subset)",
            a.student.display()
        ),
    };
    if modalities.channels().len() != cfg.in_channels {
        bail!(
            "the student {} takes {} input channels but the step feeds it {} ({modalities})",
            a.student.display(),
            cfg.in_channels,
            modalities.channels().len()
        );
    }
    Ok(modalities)
}

/// The teacher of `--mode protokd` (four channels, the student's classes); none otherwise.
pub(crate) fn step_teacher(a: &StepArgs, cfg: VNetConfig) -> Result<Option<VNetState>> {
    Ok(match (a.config.mode, a.teacher) {
        (StepMode::ProtoKd, None) => bail!(
            "--mode protokd needs --teacher T.safetensors (a four-channel checkpoint); --mode baseline trains the student alone"
        ),
        (StepMode::ProtoKd, Some(t)) => {
            let teacher = checkpoint::load(t)?.state;
            if teacher.config.in_channels != 4 || teacher.config.n_classes != cfg.n_classes {
                bail!(
                    "the teacher {} takes {} channels and has {} classes; expected 4 channels and {} classes (the student's)",
                    t.display(),
                    teacher.config.in_channels,
                    teacher.config.n_classes,
                    cfg.n_classes
                );
            }
            Some(teacher)
        }
        (mode, Some(_)) => bail!("--teacher is only used with --mode protokd, not {mode:?}"),
        (_, None) => None,
    })
}

/// The batch: `image` `[N, 4, D, H, W]` and `label` `[N, 1, D, H, W]` on the same grid.
pub(crate) fn read_batch(a: &StepArgs, cfg: VNetConfig) -> Result<(Tensor, LabelMap)> {
    let file = TensorFile::open(a.batch)?;
    let image = read_image(
        a.batch,
        4,
        "a batch holds all four modalities (T1, T2, T1ce, FLAIR) in channel order",
    )?;
    let labels = read_labels(&file, cfg.n_classes)?;
    let (is, ls) = (&image.shape, file.shape("label")?);
    if [ls[0], ls[2], ls[3], ls[4]] != [is[0], is[2], is[3], is[4]] {
        bail!(
            "{}: tensor `label` has shape {ls:?} but tensor `image` has shape {is:?}; expected label shape {:?}",
            a.batch.display(),
            [is[0], 1, is[2], is[3], is[4]]
        );
    }
    Ok((image, labels))
}

/// What `audit step` writes: `loss.*`, then `grad.<name>` per parameter, then `param.<name>`
/// (the updated state).
fn step_outputs(report: StepReport, state: &VNetState) -> Vec<(String, OutTensor)> {
    let mut out: Vec<(String, OutTensor)> = report
        .losses
        .named()
        .into_iter()
        .map(|(n, v)| {
            (
                format!("loss.{n}"),
                OutTensor::F32(Tensor::from_vec(&[], vec![v])),
            )
        })
        .collect();
    let names: Vec<String> = state.parameters().map(|(n, _)| n.to_string()).collect();
    out.extend(
        names
            .into_iter()
            .zip(report.grads)
            .map(|(n, g)| (format!("grad.{n}"), OutTensor::F32(g))),
    );
    out.extend(state_tensors(state, "param."));
    out
}
