#!/usr/bin/env python3
"""Float64 fixtures for protokd's accuracy report (issue 15, item 2).

Five jobs, all with the VNet, losses and Adam of tools/parity/make_fixtures.py (imported, not
copied):

1. `yardstick` (default): on the inputs and models of the PyTorch parity fixtures
   (tests/fixtures/parity/{A,B,C}.safetensors), the ProtoKD computation in float64: the
   teacher's evaluation-mode forward, the student's training-mode forward, the six losses, the
   gradient of every student parameter and the state after one Adam step. Written as sketches
   to tests/fixtures/accuracy/{A,B,C}.yardstick.json (see `sketch`), with each tensor's
   `sensitivity` (PyTorch float64's own largest relative change under one-ulp moves of the
   image and of every model value); tests/audit/accuracy.rs holds protokd's float64 spec to
   them at 1e-10, or at 4 times that sensitivity where it is larger.

2. `golden DIR`: on the golden patches as exported by the ignored test
   `accuracy::export_golden_runs` (DIR/<patch>.safetensors: image, label, teacher.*, student.*),
   the same computation in float32 and in float64, and PyTorch float32's error against float64
   for every tensor (norm-wise relative error and largest ulp distance, as protokd measures its
   own). Written to docs/validation/accuracy-pytorch-golden.json.

3. `table`: the comparison table of docs/validation/accuracy.md, from protokd's golden tables
   (docs/validation/accuracy-golden.json, written by the ignored test
   `accuracy::regenerate_golden_accuracy`) and PyTorch's (job 2), over the same tensors:
   written to docs/validation/accuracy-golden-table.md.

4. `clamped [DIR] [--only X]`: why a fixture's float64 gradients are sensitive (the parity
   fixtures, or the golden runs in DIR as job 2 reads them): the student voxels
   whose feature norm lies in (0, 1e-5), below the cosine clamp, with each one's change under
   the one-ulp moves and its share of the gradient with respect to the features.

5. `spread DIR`: PyTorch float32's median gradient error on each golden run in DIR, and again
   with the image and both models moved by at most one float32 ulp per value (8 seeds):
   written to docs/validation/accuracy-spread-pytorch.json (the ignored test
   `accuracy::spread_of_golden_gradient_accuracy` writes protokd's).

Usage (from the repository root; torch, numpy and safetensors installed; CPU only):

    python3 tools/accuracy/make_fixtures.py
    cargo test --release -p protokd --test audit accuracy::export_golden_runs -- --ignored
    python3 tools/accuracy/make_fixtures.py golden target/accuracy-golden
    cargo test --release -p protokd --test audit accuracy::regenerate_golden_accuracy -- --ignored
    python3 tools/accuracy/make_fixtures.py table
    python3 tools/accuracy/make_fixtures.py clamped
    python3 tools/accuracy/make_fixtures.py spread target/accuracy-golden
    cargo test --release -p protokd --test audit accuracy::spread_of_golden_gradient_accuracy -- --ignored
"""

import argparse
import copy
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
import make_fixtures as parity  # noqa: E402  (the VNet, losses and Adam of the parity fixtures)

SAMPLES = 32
SENSITIVITY_RUNS = 3
PROJECTIONS = 4
SMALL = 64


def splitmix64(x):
    """SplitMix64 of a numpy uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sketch(t):
    """A float64 tensor as its shape and, for at most SMALL values, the values; else its
    Euclidean norm, PROJECTIONS sums sum_i r_k(i) t_i with signs r_k(i) = +1 when the top bit
    of splitmix64(PROJECTIONS * i + k) is 0 and -1 otherwise (math.fsum, exact), and the values
    at the flat indices floor(j * n / SAMPLES) for j < SAMPLES."""
    v = t.detach().double().contiguous().reshape(-1).numpy()
    out = {"shape": list(t.shape)}
    if v.size <= SMALL:
        out["values"] = [float(x) for x in v]
        return out
    out["norm"] = math.sqrt(math.fsum(float(x) * float(x) for x in v))
    idx = np.arange(v.size, dtype=np.uint64)
    out["projections"] = []
    for k in range(PROJECTIONS):
        sign = np.where((splitmix64(idx * np.uint64(PROJECTIONS) + np.uint64(k)) >> np.uint64(63)) == 0, 1.0, -1.0)
        out["projections"].append(math.fsum((sign * v).tolist()))
    out["samples"] = [[int(j * v.size // SAMPLES), float(v[j * v.size // SAMPLES])] for j in range(SAMPLES)]
    return out


def state_from(tensors, prefix, in_channels, dtype):
    sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    n_filters = int(sd["block_one.conv.0.weight"].shape[0])
    n_classes = int(sd["out_conv.weight"].shape[0])
    model = parity.VNet(in_channels, n_classes, n_filters)
    model.load_state_dict(sd, strict=True)
    return model.to(dtype)


def step_outputs(teacher, student, image, label):
    """The ProtoKD computation: teacher (evaluation mode), one student step (training mode,
    Adam from a fresh state), in the models' dtype. Names as protokd's accuracy report groups
    them."""
    out = {}
    teacher.eval()
    with torch.no_grad():
        ft, lt = teacher(image)
    out["teacher.features"], out["teacher.logits"] = ft, lt
    stu = copy.deepcopy(student).train()
    opt = parity.make_adam(stu)
    opt.zero_grad(set_to_none=True)
    x_s = image[:, parity.STUDENT_CHANNEL:parity.STUDENT_CHANNEL + 1].contiguous()
    fs, s = stu(x_s)
    out["student.features"], out["student.logits"] = fs.detach(), s.detach()
    losses = parity.protokd_losses(s, fs, lt, ft, label)
    losses["total"].backward()
    for k, v in losses.items():
        out[f"loss.{k}"] = v.detach().reshape(())
    for k, p in stu.named_parameters():
        out[f"grad.{k}"] = p.grad.detach().clone()
    opt.step()
    for k, v in stu.state_dict().items():
        if v.is_floating_point():
            out[f"param.{k}"] = v.detach().clone()
    return out


def one_ulp_apart(t, gen):
    """t with each value moved independently to its neighbour below in t's own dtype, left
    alone, or moved to its neighbour above (one third each, drawn from gen)."""
    step = torch.randint(0, 3, t.shape, generator=gen) - 1
    up = torch.nextafter(t, torch.full_like(t, math.inf))
    down = torch.nextafter(t, torch.full_like(t, -math.inf))
    return torch.where(step > 0, up, torch.where(step < 0, down, t))


def relative_change(b, a):
    """||b - a|| / ||a|| (||b - a|| where a is zero), float64, exactly summed."""
    x = b.detach().double().reshape(-1).numpy()
    y = a.detach().double().reshape(-1).numpy()
    diff = math.sqrt(math.fsum(((x - y) ** 2).tolist()))
    norm = math.sqrt(math.fsum((y * y).tolist()))
    return diff / norm if norm > 0 else diff


def sensitivity(f, out, perturbations=SENSITIVITY_RUNS):
    """How far float64 itself moves each output under rounding-sized changes: for seeds
    1..=perturbations, the image and every floating-point value of both models moved by at
    most one float64 ulp each (`one_ulp_apart`), the same computation rerun, and the largest
    `relative_change` of each tensor from the unperturbed result `out`. Two correct float64
    implementations round differently inside every operation, which is a change of this
    size at every operation's inputs: where this figure is far above 1e-10, no float64
    implementation can agree with another to 1e-10."""
    worst = {k: 0.0 for k in out}
    for seed in range(1, perturbations + 1):
        gen = torch.Generator().manual_seed(seed)
        teacher = state_from(f, "teacher.", 4, torch.float64)
        student = state_from(f, "student.", 1, torch.float64)
        with torch.no_grad():
            for model in (teacher, student):
                for _, v in sorted(model.state_dict().items()):
                    if v.is_floating_point():
                        v.copy_(one_ulp_apart(v, gen))
        again = step_outputs(teacher, student, one_ulp_apart(f["image"].double(), gen), f["label"])
        for k in worst:
            worst[k] = max(worst[k], relative_change(again[k], out[k]))
    return worst


def yardstick(names, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        f = load_file(os.path.join(ROOT, "tests", "fixtures", "parity", f"{name}.safetensors"))
        teacher = state_from(f, "teacher.", 4, torch.float64)
        student = state_from(f, "student.", 1, torch.float64)
        out = step_outputs(teacher, student, f["image"].double(), f["label"])
        doc = {
            "fixture": f"tests/fixtures/parity/{name}.safetensors",
            "what": "float64 PyTorch (torch " + torch.__version__ + "): teacher eval forward, one ProtoKD student step",
            "tensors": {k: sketch(v) for k, v in sorted(out.items())},
            "sensitivity": dict(sorted(sensitivity(f, out).items())),
        }
        path = os.path.join(out_dir, f"{name}.yardstick.json")
        with open(path, "w") as fh:
            json.dump(doc, fh, indent=0, sort_keys=True)
            fh.write("\n")
        print(f"[{name}] {len(out)} tensors -> {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


def clamped_voxels(name, path):
    """Why a fixture's float64 gradients move under one-ulp changes: the student voxels
    whose feature vector has a norm in (0, COS_EPS), where the prototype loss's gradient is
    d(unit)/COS_EPS, with each one's norm, its features' largest relative change over the
    `sensitivity` moves, and its share of the norm of the ReLU-passed gradient of the total loss
    with respect to the features. `path`: a parity fixture or a golden run as the `golden` job
    reads it (image, label, teacher.*, student.*)."""
    f = load_file(path)
    label = f["label"].long()  # int64 in the parity fixtures, float32 (exact) in the golden runs

    def features_and_gradient(gen):
        teacher = state_from(f, "teacher.", 4, torch.float64).eval()
        student = state_from(f, "student.", 1, torch.float64).train()
        image = f["image"].double()
        if gen is not None:
            with torch.no_grad():
                for model in (teacher, student):
                    for _, v in sorted(model.state_dict().items()):
                        if v.is_floating_point():
                            v.copy_(one_ulp_apart(v, gen))
            image = one_ulp_apart(image, gen)
        with torch.no_grad():
            ft, lt = teacher(image)
        fs, s = student(image[:, parity.STUDENT_CHANNEL:parity.STUDENT_CHANNEL + 1].contiguous())
        fs.retain_grad()
        parity.protokd_losses(s, fs, lt, ft, label)["total"].backward()
        return fs.detach(), fs.grad * (fs.detach() > 0)

    fs, g = features_and_gradient(None)
    norm = fs.norm(dim=1)
    moved = [features_and_gradient(torch.Generator().manual_seed(seed))[0] for seed in range(1, SENSITIVITY_RUNS + 1)]
    below = ((norm > 0) & (norm < parity.COS_EPS)).nonzero().tolist()
    print(f"[{name}] {len(below)} student voxel(s) with 0 < |features| < {parity.COS_EPS}; "
          f"{int((norm == 0).sum())} with zero features (ReLU-masked)")
    total = g.norm().item()
    for n, z, yy, x in below:
        here = fs[n, :, z, yy, x]
        change = max(((m[n, :, z, yy, x] - here).norm() / here.norm()).item() for m in moved)
        share = (g[n, :, z, yy, x].norm() / total).item()
        print(f"  sample {n} voxel ({z}, {yy}, {x}): |features| {norm[n, z, yy, x].item():.3e}, "
              f"relative change under one-ulp moves {change:.2e}, share of the gradient's norm {share:.4%}")


def ordered(x):
    """Positions of float32 values on the ordered line of float32 values (int64)."""
    b = x.astype(np.float32).view(np.uint32).astype(np.int64)
    return np.where(b & 0x80000000, -(b & 0x7FFFFFFF) - 1, b)


def measure(t32, t64):
    """protokd's two figures: ||t32 - t64|| / ||t64|| and the largest ulp distance between t32
    and t64 rounded to float32."""
    a = t32.detach().double().reshape(-1).numpy()
    b = t64.detach().double().reshape(-1).numpy()
    diff = math.sqrt(math.fsum(((a - b) ** 2).tolist()))
    norm = math.sqrt(math.fsum((b * b).tolist()))
    ulp = int(np.max(np.abs(ordered(a) - ordered(b)))) if a.size else 0
    return (diff / norm if norm > 0 else diff), ulp


def golden(src, out_path):
    result = {"torch_version": torch.__version__, "source": src, "patches": {}}
    for fn in sorted(os.listdir(src)):
        if not fn.endswith(".safetensors"):
            continue
        f = load_file(os.path.join(src, fn))
        label = f["label"].long()  # exported as float32 (the values 0..3, exact)
        runs = {}
        for dtype in (torch.float32, torch.float64):
            teacher = state_from(f, "teacher.", 4, dtype)
            student = state_from(f, "student.", 1, dtype)
            runs[dtype] = step_outputs(teacher, student, f["image"].to(dtype), label)
        rows = {}
        for k, v64 in runs[torch.float64].items():
            rel, ulp = measure(runs[torch.float32][k], v64)
            rows[k] = {"rel_err": rel, "max_ulp": ulp, "elements": v64.numel()}
        result["patches"][fn[: -len(".safetensors")]] = rows
        print(f"[golden {fn}] {len(rows)} tensors")
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(f"wrote {os.path.relpath(out_path, ROOT)}")


def spread(src, out_path, seeds=8):
    """How much PyTorch float32's gradient accuracy on the golden patches is luck: for seed 0
    (the golden inputs) and seeds 1..seeds (the image and every floating-point value of both
    models moved by at most one float32 ulp each, `one_ulp_apart`), the median norm-wise
    relative error of the parameter gradients that are not rounding noise (the down/up conv
    biases left out), float32 against float64 on the same moved inputs. The ignored test
    `accuracy::spread_of_golden_gradient_accuracy` does the same for protokd."""
    result = {}
    for fn in sorted(os.listdir(src)):
        f = load_file(os.path.join(src, fn))
        label = f["label"].long()
        medians = []
        for seed in range(seeds + 1):
            g = dict(f)
            if seed:
                gen = torch.Generator().manual_seed(seed)
                g = {k: one_ulp_apart(v, gen) if v.is_floating_point() and k != "label" else v for k, v in sorted(f.items())}
            runs = {dt: step_outputs(state_from(g, "teacher.", 4, dt), state_from(g, "student.", 1, dt), g["image"].to(dt), label)
                    for dt in (torch.float32, torch.float64)}
            errs = sorted(measure(runs[torch.float32][k], v)[0] for k, v in runs[torch.float64].items()
                          if k.startswith("grad.") and not (k.endswith("conv.0.bias") and ("_dw." in k or "_up." in k)))
            median = errs[len(errs) // 2]
            medians.append(None if math.isnan(median) else median)  # NaN: PyTorch's CE of a one-class batch
        name = fn[: -len(".safetensors")]
        result[name] = medians
        print(f"{name}: " + " ".join("NaN" if m is None else f"{m:.1e}" for m in medians))
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(f"wrote {os.path.relpath(out_path, ROOT)}")


# protokd's operation names for the tensors PyTorch reports (the rest map by prefix).
OURS = {
    "teacher.features": "relu after teacher block_nine.conv.1",
    "teacher.logits": "teacher out_conv conv",
    "student.features": "relu after block_nine.conv.1",
    "student.logits": "out_conv conv",
}
GROUPS = [("forward outputs (features, logits)", ("teacher.", "student.")), ("losses", ("loss.",)),
          ("parameter gradients", ("grad.",)), ("updated parameters", ("param.",))]


def ours_name(k):
    if k in OURS:
        return OURS[k]
    head, rest = k.split(".", 1)
    return {"loss": "loss ", "grad": "gradient ", "param": "updated "}[head] + rest


def table():
    vdir = os.path.join(ROOT, "docs", "validation")
    with open(os.path.join(vdir, "accuracy-golden.json")) as fh:
        ours = json.load(fh)
    with open(os.path.join(vdir, "accuracy-pytorch-golden.json")) as fh:
        torch_side = json.load(fh)
    lines = ["| patch | tensors | count | protokd median rel. err | PyTorch median | protokd max rel. err | PyTorch max | protokd max ulp | PyTorch max ulp |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t in ours:
        patch = t["title"].split(":")[0].replace("golden patch ", "")
        rows = {r["operation"]: r for r in t["rows"]}
        theirs = torch_side["patches"][patch]
        for label, prefixes in GROUPS:
            # leave out the rows whose exact value is zero (down/up conv biases: noise on both sides)
            keys = [k for k in sorted(theirs) if k.startswith(prefixes) and ours_name(k) in rows
                    and not any("exactly zero in exact arithmetic" in n for n in rows[ours_name(k)]["notes"])]
            if not keys:
                continue
            a = sorted(rows[ours_name(k)]["rel_err"] for k in keys)
            b = sorted(theirs[k]["rel_err"] for k in keys)
            ua = max(rows[ours_name(k)]["max_ulp"] for k in keys)
            ub = max(theirs[k]["max_ulp"] for k in keys)
            if any(math.isnan(x) for x in b):
                # PyTorch's float32 or float64 gave NaN (the cross-entropy of a single-class batch)
                nan = sum(math.isnan(x) for x in b)
                bm, bx, ub = f"NaN ({nan} of {len(b)})", "NaN", "NaN"
            else:
                bm, bx = f"{b[len(b) // 2]:.2e}", f"{b[-1]:.2e}"
            lines.append(f"| {patch} | {label} | {len(keys)} | {a[len(a) // 2]:.2e} | {bm} | "
                         f"{a[-1]:.2e} | {bx} | {ua} | {ub} |")
    out = os.path.join(vdir, "accuracy-golden-table.md")
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {os.path.relpath(out, ROOT)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job", nargs="?", default="yardstick", choices=["yardstick", "golden", "table", "clamped", "spread"])
    ap.add_argument("dir", nargs="?", help="golden, spread, clamped: the folder the export test wrote")
    ap.add_argument("--only", choices=["A", "B", "C"], action="append")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.job == "yardstick":
        yardstick(args.only or ["A", "B", "C"], os.path.join(ROOT, "tests", "fixtures", "accuracy"))
    elif args.job == "table":
        table()
    elif args.job == "spread":
        if not args.dir:
            ap.error("spread needs the folder the export test wrote")
        spread(args.dir, os.path.join(ROOT, "docs", "validation", "accuracy-spread-pytorch.json"))
    elif args.job == "clamped":
        if args.dir:
            for file in sorted(os.listdir(args.dir)):
                clamped_voxels(file.removesuffix(".safetensors"), os.path.join(args.dir, file))
        else:
            for name in args.only or ["A", "B", "C"]:
                clamped_voxels(name, os.path.join(ROOT, "tests", "fixtures", "parity", f"{name}.safetensors"))
    else:
        if not args.dir:
            ap.error("golden needs the folder the export test wrote")
        golden(args.dir, os.path.join(ROOT, "docs", "validation", "accuracy-pytorch-golden.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
