//! `protokd convert`: a PyTorch checkpoint written as protokd's ([`protokd::io::convert`]).

use anyhow::Result;
use clap::Args;
use protokd::io::console::say;
use protokd::io::convert::convert;
use protokd::modality::Modalities;
use std::path::PathBuf;

/// Arguments of `protokd convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// PyTorch checkpoint written by torch.save (zip or legacy format): a state_dict, or a
    /// dictionary holding it under `state_dict` or `model` (and Adam's state under `optimizer`).
    #[arg(value_name = "IN.pth")]
    input: PathBuf,
    /// protokd checkpoint to write; with Adam's state in IN, OUT's stem + `.optim.safetensors`
    /// too.
    #[arg(value_name = "OUT.safetensors")]
    out: PathBuf,
    /// The model's input modalities, recorded in OUT (needed unless it takes all four).
    #[arg(long, value_name = "t1ce")]
    modality: Option<String>,
    /// Replace existing outputs (never IN).
    #[arg(long)]
    force: bool,
}

/// `protokd convert`: converts, then says what it wrote.
pub fn run(a: ConvertArgs) -> Result<()> {
    let modality = a.modality.as_deref().map(Modalities::parse).transpose()?;
    let c = convert(&a.input, &a.out, modality.as_ref(), a.force)?;
    say(&format!(
        "wrote {} from {} (PyTorch {} format)",
        c.model.display(),
        a.input.display(),
        c.format
    ))?;
    if let Some((path, step)) = c.optimiser {
        say(&format!(
            "wrote {} (Adam's state after {step} step(s))",
            path.display()
        ))?;
    }
    Ok(())
}
