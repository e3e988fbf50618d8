//! Operational qualification: the engines against the spec and the recorded bits.
//!
//! * OQ-1 ([`engines_match_spec`]): `protokd verify`'s golden suite
//!   ([`crate::audit::verify::verify_engines`]) on every engine asked for; one finding per engine
//!   (the engines not available are listed, with why, in the installation section).
//! * OQ-2 ([`thread_counts`]): the example step (`examples/audit/`: a T1ce student, a teacher and
//!   a 2 x 4 x 16^3 batch) on the fast CPU engine in pools of 1, 2 and all threads: one SHA-256
//!   ([`step_hash`]) for all.
//! * OQ-3 ([`example_step`]): that SHA-256 is the one `tests/engine/reproducibility.rs` records
//!   (its `STEP_HASH`, read from that file so that the record has one home).
//! * OQ-4 ([`golden_snapshots`]): each golden patch's seeded forward and step
//!   ([`crate::audit::golden::seeded_run`]) give the text of its insta snapshot in
//!   `tests/audit/snapshots/` ([`snapshot_text`]), line for line.

use super::Finding;
use crate::audit::golden::seeded_run;
use crate::audit::replay::read_labels;
use crate::audit::verify::{line, patches, verify_engines};
use crate::engine::{Compute, EngineKind, Step, Trainer};
use crate::io::checkpoint;
use crate::io::hash::sha256_hex;
use crate::io::tensorfile::TensorFile;
use anyhow::{bail, Context, Result};
use protokd_reference::adam::AdamState;
use protokd_reference::state::Value as Entry;
use protokd_reference::step::StepConfig;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::path::Path;

/// OQ-1: the golden suite on each engine against the spec, bit for bit.
pub fn engines_match_spec(
    tree: &Path,
    engines: &[Compute],
) -> Result<Vec<(String, super::Finding)>> {
    let results = verify_engines(&tree.join("golden"), engines)?;
    let mut found = Vec::new();
    for e in engines {
        let mine: Vec<_> = results.iter().filter(|c| c.engine == e.kind()).collect();
        let differing: Vec<String> = mine
            .iter()
            .filter(|c| c.differing > 0)
            .map(|c| line(c))
            .collect();
        let values: usize = mine.iter().map(|c| c.elements).sum();
        let detail = if differing.is_empty() {
            format!(
                "{} of {} comparisons identical to the spec ({values} values; {})",
                mine.len(),
                mine.len(),
                e.describe()
            )
        } else {
            differing.join("; ")
        };
        let figures = json!({
            "description": e.describe(),
            "comparisons": mine.len(),
            "values": values,
            "differing": mine.iter().filter(|c| c.differing > 0).map(|c| json!({
                "patch": c.patch, "operation": c.operation, "differing": c.differing,
                "max_ulp": c.max_ulp, "max_abs": c.max_abs,
            })).collect::<Vec<_>>(),
        });
        found.push((
            e.kind().to_string(),
            Finding::new(differing.is_empty(), detail, figures),
        ));
    }
    Ok(found)
}

/// SHA-256 over every output of the example step in `examples/audit/` on `compute`, in a fixed
/// order: the six losses (total, seg, dice, ce, kd, proto), every gradient, every entry of the
/// updated student state (f32 little-endian bytes; counts as i64 little-endian), as
/// `tests/engine/reproducibility.rs` records it.
pub fn step_hash(compute: &Compute, tree: &Path) -> Result<String> {
    let dir = tree.join("examples/audit");
    let student = checkpoint::load(&dir.join("student.safetensors"))?.state;
    let teacher = checkpoint::load(&dir.join("teacher.safetensors"))?.state;
    let batch = TensorFile::open(&dir.join("batch.safetensors"))?;
    let image = batch.f32("image")?;
    let labels = read_labels(&batch, 4)?;
    let adam = AdamState::for_state(&student);
    let mut trainer = Trainer::new(compute, student, adam, Some(&teacher))?;
    let r = trainer.run(Step {
        image: &image,
        labels: &labels,
        channels: &[2],
        cfg: &StepConfig::default(),
        grads: true,
    })?;
    let mut h = Sha256::new();
    let l = r.losses;
    for v in [l.total, l.seg, l.dice, l.ce, l.kd, l.proto] {
        h.update(v.to_le_bytes());
    }
    for g in &r.grads {
        g.data.iter().for_each(|v| h.update(v.to_le_bytes()));
    }
    for e in trainer.state()?.entries() {
        match &e.value {
            Entry::F32(t) => t.data.iter().for_each(|v| h.update(v.to_le_bytes())),
            Entry::I64(n) => h.update(n.to_le_bytes()),
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The thread counts of OQ-2: 1, 2 and all cores (once each, in that order).
fn thread_counts_here() -> Vec<usize> {
    let all = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut counts = vec![1, 2, all];
    counts.dedup();
    counts
}

/// [`step_hash`] on the fast CPU engine in a pool of `threads` workers.
fn step_hash_with(threads: usize, tree: &Path) -> Result<String> {
    let cpu = EngineKind::Cpu.open()?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start a thread pool")?
        .install(|| step_hash(&cpu, tree))
}

/// OQ-2: the example step's SHA-256 with 1, 2 and all threads; passes when they are one.
pub fn thread_counts(tree: &Path) -> Result<Vec<(String, Finding)>> {
    let hashes: Vec<(usize, String)> = thread_counts_here()
        .into_iter()
        .map(|t| Ok((t, step_hash_with(t, tree)?)))
        .collect::<Result<_>>()?;
    let same = hashes.iter().all(|(_, h)| *h == hashes[0].1);
    let all = std::thread::available_parallelism().map_or(1, |c| c.get());
    let detail = hashes
        .iter()
        .map(|(t, h)| format!("{t} threads: {h}"))
        .collect::<Vec<_>>()
        .join("; ")
        + &format!(" (all cores: {all})");
    let figures = json!(hashes
        .iter()
        .map(|(t, h)| json!({"threads": t, "sha256": h}))
        .collect::<Vec<_>>());
    Ok(vec![(String::new(), Finding::new(same, detail, figures))])
}

/// Where the example step's SHA-256 is recorded.
const STEP_RECORD: &str = "tests/engine/reproducibility.rs";

/// The `STEP_HASH` constant of [`STEP_RECORD`].
fn recorded_step_hash(tree: &Path) -> Result<String> {
    let path = tree.join(STEP_RECORD);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    const KEY: &str = "const STEP_HASH: &str = \"";
    let Some(rest) = text.find(KEY).map(|i| &text[i + KEY.len()..]) else {
        bail!("{}: no `{KEY}...\"` line", path.display());
    };
    Ok(rest.split('"').next().unwrap_or_default().to_string())
}

/// OQ-3: the example step on the fast CPU engine gives the recorded SHA-256.
pub fn example_step(tree: &Path) -> Result<Vec<(String, Finding)>> {
    let want = recorded_step_hash(tree)?;
    let got = step_hash(&EngineKind::Cpu.open()?, tree)?;
    let detail = if got == want {
        format!("SHA-256 {got}, as {STEP_RECORD} records")
    } else {
        format!("SHA-256 {got}, but {STEP_RECORD} records {want}")
    };
    Ok(vec![(
        String::new(),
        Finding::new(
            got == want,
            detail,
            json!({"sha256": got, "recorded": want, "record": STEP_RECORD}),
        ),
    )])
}

/// SHA-256 of f32 values as little-endian bytes.
fn le_hash(values: impl Iterator<Item = f32>) -> String {
    sha256_hex(&values.flat_map(f32::to_le_bytes).collect::<Vec<u8>>())
}

/// The recorded values of one golden patch, as its snapshot holds them: the seeded teacher's
/// features and logits (SHA-256), the six losses of the step (value and bits), the gradients
/// and the updated student (SHA-256).
pub fn snapshot_text(
    compute: &Compute,
    image: &protokd_reference::Tensor,
    labels: &protokd_reference::LabelMap,
) -> Result<String> {
    let (y, r, student) = seeded_run(compute, image, labels)?;
    let mut out = String::new();
    let f = y.features.data.iter().copied();
    writeln!(out, "teacher.features sha256 {}", le_hash(f))?;
    writeln!(
        out,
        "teacher.logits   sha256 {}",
        le_hash(y.logits.data.iter().copied())
    )?;
    for (name, v) in r.losses.named() {
        writeln!(out, "loss.{name:<5} {v:?} (bits {:08x})", v.to_bits())?;
    }
    let grads = r.grads.iter().flat_map(|g| g.data.iter().copied());
    writeln!(out, "gradients        sha256 {}", le_hash(grads))?;
    let params = student
        .parameters()
        .flat_map(|(_, t)| t.data.iter().copied());
    writeln!(out, "updated params   sha256 {}", le_hash(params))?;
    Ok(out)
}

/// The body of an insta snapshot file (after its second `---` line).
fn snapshot_body(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match text.splitn(3, "---\n").nth(2) {
        Some(body) => Ok(body.to_string()),
        None => bail!(
            "{}: not an insta snapshot (no `---` header)",
            path.display()
        ),
    }
}

/// OQ-4: each golden patch on the fast CPU engine gives the text of its snapshot; a failure
/// names the snapshot file and its first differing line.
pub fn golden_snapshots(tree: &Path) -> Result<Vec<(String, Finding)>> {
    let cpu = EngineKind::Cpu.open()?;
    let mut found = Vec::new();
    for (id, image, labels) in patches(&tree.join("golden"))? {
        let rel = format!("tests/audit/snapshots/audit__golden__{id}.snap");
        let want = snapshot_body(&tree.join(&rel))?;
        let got = snapshot_text(&cpu, &image, &labels)?;
        let differ = want
            .lines()
            .zip(got.lines())
            .find(|(w, g)| w.trim_end() != g.trim_end());
        let same = differ.is_none() && want.trim_end().lines().count() == got.lines().count();
        let detail = match differ {
            None if same => format!("as {rel} records"),
            None => format!(
                "{rel} has {} lines, the run gives {}",
                want.lines().count(),
                got.lines().count()
            ),
            Some((w, g)) => format!("{rel} records `{w}`, the run gives `{g}`"),
        };
        found.push((
            id,
            Finding::new(same, detail, json!({"snapshot": rel, "values": got})),
        ));
    }
    Ok(found)
}
