//! `train --resume-from CKPT.pth`: a new run that continues another trainer's run (the
//! authors' PyTorch trainer) from its resumable checkpoint `{"state_dict": ...,
//! "optimizer": optimizer.state_dict(), ...}`.
//!
//! The run folder starts as a fresh run's (record, split lists, empty metrics), but its first
//! state is the checkpoint's model and Adam state ([`TorchFile::adam`](crate::io::torchfile::TorchFile::adam): moments mapped onto the
//! parameters, one step count) instead of the seeded initialisation, and its progress is Adam's
//! step `t`: `global_step = t`, `epochs_done = t / steps_per_epoch`, `step_in_epoch =
//! t % steps_per_epoch`. So the next step is Adam's step `t + 1`, with the learning rate of
//! epoch `epochs_done`, and the run then saves and resumes (`--resume`) as any other.
//!
//! Checked before the run folder is touched, each refusal naming the file: the checkpoint holds
//! an optimiser state; the model is the run's (input channels = modalities, `n_filters` of the
//! config, 4 classes) and its values and moments within their rules; Adam's `betas`, `eps` and
//! `weight_decay` equal the config's (another optimiser would not continue the run); `t` is
//! below the run's last step. A learning rate other than the schedule's at that epoch (the
//! other trainer's schedule may differ) is a warning on standard error, not a refusal: the
//! run's schedule is used.

use super::config::TrainConfig;
use super::run::{Progress, RunState};
use crate::io::checkpoint::{self, first_invalid};
use crate::io::tensorfile::TensorFile;
use anyhow::{bail, Result};
use protokd_reference::state::VNetConfig;
use std::path::Path;

/// The state a run resumed from the checkpoint `path` starts with, for a network of `net`
/// trained by `cfg` with `steps_per_epoch` steps per epoch; and the file's SHA-256.
pub(super) fn imported(
    path: &Path,
    net: VNetConfig,
    cfg: &TrainConfig,
    steps_per_epoch: u64,
) -> Result<(RunState, String)> {
    let p = path.display();
    let file = TensorFile::open(path)?;
    let Some(torch) = file.torch() else {
        bail!(
            "--resume-from {p}: not a PyTorch checkpoint; to continue a protokd run, pass its \
             folder to --resume"
        );
    };
    let ck = checkpoint::load(path)?;
    let got = ck.state.config;
    if got != net {
        bail!(
            "--resume-from {p}: the model takes {} input channel(s) with n_filters {} and {} \
             classes, but the run trains {} channel(s) ({}) with n_filters {} and {} classes",
            got.in_channels,
            got.n_filters,
            got.n_classes,
            net.in_channels,
            cfg.modalities,
            net.n_filters,
            net.n_classes
        );
    }
    let Some(adam) = torch.adam(&ck.state)? else {
        bail!(
            "--resume-from {p}: no optimiser state (`optimizer` with Adam's `state`); a bare \
             state_dict cannot continue a run"
        );
    };
    if let Some(bad) = first_invalid(&ck.state, Some(&adam.state)) {
        bail!("--resume-from {p}: {bad}");
    }
    let h = adam.hyper;
    for (key, theirs, ours) in [
        ("betas[0] / beta1", h.beta1, cfg.beta1),
        ("betas[1] / beta2", h.beta2, cfg.beta2),
        ("eps", h.eps, cfg.eps),
        ("weight_decay", h.weight_decay, cfg.weight_decay),
    ] {
        if theirs != ours {
            bail!(
                "--resume-from {p}: Adam's {key} is {theirs} there but {ours} in the run's \
                 config; set it in --config to continue that run"
            );
        }
    }
    let t = adam.state.step;
    let total = steps_per_epoch.saturating_mul(cfg.max_epoch);
    if t >= total {
        bail!(
            "--resume-from {p}: Adam has taken {t} step(s), but the run has {total} in all \
             ({steps_per_epoch} per epoch x {} epochs): nothing is left to train",
            cfg.max_epoch
        );
    }
    let progress = Progress {
        epochs_done: t / steps_per_epoch,
        step_in_epoch: t % steps_per_epoch,
        global_step: t,
        best: None,
    };
    let lr = cfg.lr_at(progress.epochs_done);
    if h.lr != lr {
        eprintln!(
            "warning: {p} records lr {}, the run's schedule gives {lr} in epoch {} (0-based); \
             continuing with the run's schedule",
            h.lr, progress.epochs_done
        );
    }
    let state = RunState {
        state: ck.state,
        adam: adam.state,
        progress,
    };
    Ok((state, torch.sha256().to_string()))
}
