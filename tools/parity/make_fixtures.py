#!/usr/bin/env python3
"""Write PyTorch parity fixtures for the Rust ProtoKD implementation.

Everything here (network, losses, optimiser settings) is written from the project's
method page (/work/shared/protokd-method.md, sections 4-6); the authors' code is not used.

Usage (from the repository root):

    python3 tools/parity/make_fixtures.py [--out-dir tests/fixtures/parity] [--n-filters 4]
                                          [--skip-selfcheck]

Outputs (see tools/parity/README.md for the tensor-name conventions):

    tests/fixtures/parity/A.safetensors    batch 2 x 4 x 16 x 16 x 16, all 4 classes in both samples
    tests/fixtures/parity/B.safetensors    batch 2 x 4 x 32 x 16 x 48, class 2 absent from sample 1
    tests/fixtures/parity/torch_state_dict.safetensors
        (with A) fixture A's initial student, plain state_dict() saved with save_file (no metadata)
    tests/fixtures/parity/protokd_written_torch_out.safetensors
        only if tests/fixtures/parity/protokd_written.safetensors (written by Rust) exists.

All computation is float32 on the CPU with one thread, deterministic algorithms and fixed seeds,
so a rerun with the same PyTorch build reproduces the files bit for bit.
"""

import argparse
import copy
import json
import os
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

NUM_CLASSES = 4
STUDENT_CHANNEL = 2  # T1ce (channel order 0 = T1, 1 = T2, 2 = T1ce, 3 = FLAIR)
KD_T = 10.0
KD_WEIGHT = 10.0
PROTO_WEIGHT = 0.1
DICE_SMOOTH = 1e-5
PROTO_EPS = 1e-5
COS_EPS = 1e-5
ADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-5)
NUM_BATCHES_TRACKED = 7
WRITTEN_SEED = 4242

# Per-fixture configuration. Seeds: base + offset (see seeds_for()).
FIXTURES = {
    "A": dict(shape=(2, 4, 16, 16, 16), base_seed=1000, missing=None),
    # class 2 (NCR/NET) absent from sample 1 -> the prototype loss keeps classes {0, 1, 3}
    "B": dict(shape=(2, 4, 32, 16, 48), base_seed=2000, missing=(1, 2)),
    # Well-conditioned: every BN shift moved to 1.5 (+ noise), so most ReLUs are active and
    # no BatchNorm sees a near-constant channel; float32 reaches the parity bounds everywhere.
    # n_filters 2 keeps the file small.
    "C": dict(shape=(2, 4, 16, 32, 32), base_seed=3000, missing=None, n_filters=2, bn_bias_shift=1.5),
}


def seeds_for(base):
    return dict(
        teacher_init=base + 1,   # torch.manual_seed before constructing the teacher
        student_init=base + 2,   # torch.manual_seed before constructing the student
        teacher_bn=base + 3,     # torch.Generator for the teacher's BN perturbation
        student_bn=base + 4,     # torch.Generator for the student's BN perturbation
        image=base + 5,          # torch.Generator for the image
        label=base + 6,          # torch.Generator for the label
    )


# --------------------------------------------------------------------------------------
# Network (method page section 4)
# --------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """n_stages x (Conv3d k3 p1 no bias, BN, ReLU) in nn.Sequential `conv`."""

    def __init__(self, n_stages, cin, cout):
        super().__init__()
        ops = []
        for i in range(n_stages):
            ops += [
                nn.Conv3d(cin if i == 0 else cout, cout, kernel_size=3, stride=1, padding=1, bias=False),
                nn.BatchNorm3d(cout, eps=1e-5, momentum=0.1),
                nn.ReLU(inplace=False),
            ]
        self.conv = nn.Sequential(*ops)

    def forward(self, x):
        return self.conv(x)


class DownBlock(nn.Module):
    """Conv3d k2 s2 p0 with bias, BN, ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv3d(cin, cout, kernel_size=2, stride=2, padding=0, bias=True),
            nn.BatchNorm3d(cout, eps=1e-5, momentum=0.1),
            nn.ReLU(inplace=False),
        )

    def forward(self, x):
        return self.conv(x)


class UpBlock(nn.Module):
    """ConvTranspose3d k2 s2 with bias, BN, ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(
            nn.ConvTranspose3d(cin, cout, kernel_size=2, stride=2, padding=0, bias=True),
            nn.BatchNorm3d(cout, eps=1e-5, momentum=0.1),
            nn.ReLU(inplace=False),
        )

    def forward(self, x):
        return self.conv(x)


class VNet(nn.Module):
    def __init__(self, in_channels, n_classes=NUM_CLASSES, n_filters=16):
        super().__init__()
        f = n_filters
        self.block_one = ConvBlock(1, in_channels, f)
        self.block_one_dw = DownBlock(f, 2 * f)
        self.block_two = ConvBlock(2, 2 * f, 2 * f)
        self.block_two_dw = DownBlock(2 * f, 4 * f)
        self.block_three = ConvBlock(3, 4 * f, 4 * f)
        self.block_three_dw = DownBlock(4 * f, 8 * f)
        self.block_four = ConvBlock(3, 8 * f, 8 * f)
        self.block_four_dw = DownBlock(8 * f, 16 * f)
        self.block_five = ConvBlock(3, 16 * f, 16 * f)
        self.block_five_up = UpBlock(16 * f, 8 * f)
        self.block_six = ConvBlock(3, 8 * f, 8 * f)
        self.block_six_up = UpBlock(8 * f, 4 * f)
        self.block_seven = ConvBlock(3, 4 * f, 4 * f)
        self.block_seven_up = UpBlock(4 * f, 2 * f)
        self.block_eight = ConvBlock(2, 2 * f, 2 * f)
        self.block_eight_up = UpBlock(2 * f, f)
        self.block_nine = ConvBlock(1, f, f)
        self.out_conv = nn.Conv3d(f, n_classes, kernel_size=1, padding=0, bias=True)

    def forward(self, x):
        x1 = self.block_one(x)
        x2 = self.block_two(self.block_one_dw(x1))
        x3 = self.block_three(self.block_two_dw(x2))
        x4 = self.block_four(self.block_three_dw(x3))
        x5 = self.block_five(self.block_four_dw(x4))
        x6 = self.block_six(self.block_five_up(x5) + x4)
        x7 = self.block_seven(self.block_six_up(x6) + x3)
        x8 = self.block_eight(self.block_seven_up(x7) + x2)
        x9 = self.block_nine(self.block_eight_up(x8) + x1)
        return x9, self.out_conv(x9)


def perturb_bn(model, gen, bias_shift=0.0):
    """Move every BN's parameters and running statistics off their defaults (seeded); the
    shifts (BN biases) are centred on `bias_shift`."""
    with torch.no_grad():
        for _, m in model.named_modules():
            if isinstance(m, nn.BatchNorm3d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(1.0 + torch.rand(c, generator=gen) * 0.5)
                m.weight.copy_(1.0 + torch.randn(c, generator=gen) * 0.1)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1 + bias_shift)
                m.num_batches_tracked.fill_(NUM_BATCHES_TRACKED)


# --------------------------------------------------------------------------------------
# Losses (method page section 5)
# --------------------------------------------------------------------------------------
def one_hot(y, c=NUM_CLASSES):
    """y: [N,1,D,H,W] int64 -> [N,C,D,H,W] float of the same dtype as the caller wants."""
    return F.one_hot(y[:, 0], c).permute(0, 4, 1, 2, 3)


def dice_loss(s, y):
    p = F.softmax(s, dim=1)
    g = one_hot(y).to(p.dtype)
    dims = (0, 2, 3, 4)
    inter = (p * g).sum(dim=dims)
    gg = (g * g).sum(dim=dims)
    pp = (p * p).sum(dim=dims)
    dice = (2.0 * inter + DICE_SMOOTH) / (gg + pp + DICE_SMOOTH)
    return (1.0 - dice).mean()


def ce_weights(y, dtype):
    n = y.numel()
    counts = torch.bincount(y.reshape(-1), minlength=NUM_CLASSES).to(dtype)
    return 1.0 - counts / n


def ce_loss(s, y):
    w = ce_weights(y, s.dtype)
    return F.cross_entropy(s, y[:, 0], weight=w, reduction="mean")


def seg_loss(s, y):
    return ce_loss(s, y) + dice_loss(s, y)


def kd_loss(s, t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'mean' reduction warning: mean over all elements is intended
        return F.kl_div(F.log_softmax(s / KD_T, dim=1), F.softmax(t / KD_T, dim=1), reduction="mean")


def cos_map(f, proto):
    """f: [N,F,D,H,W], proto: [N,F]. cos(a,b) = (a/max(|a|,eps)) . (b/max(|b|,eps))."""
    fn = f / torch.linalg.vector_norm(f, dim=1, keepdim=True).clamp_min(COS_EPS)
    pn = proto / torch.linalg.vector_norm(proto, dim=1, keepdim=True).clamp_min(COS_EPS)
    return (fn * pn[:, :, None, None, None]).sum(dim=1)  # [N,D,H,W]


def kept_classes(y):
    n = y.shape[0]
    return [k for k in range(NUM_CLASSES) if all(bool((y[i] == k).any()) for i in range(n))]


def proto_loss(fs, ft, y):
    ft = ft.detach()
    kept = kept_classes(y)
    if not kept:
        return fs.sum() * 0.0
    ms, mt = [], []
    for k in kept:
        m = (y == k).to(fs.dtype)  # [N,1,D,H,W]
        cnt = m.sum(dim=(2, 3, 4))  # [N,1]
        ps = (fs * m).sum(dim=(2, 3, 4)) / (cnt + PROTO_EPS)  # [N,F]
        pt = (ft * m).sum(dim=(2, 3, 4)) / (cnt + PROTO_EPS)
        ms.append(cos_map(fs, ps))
        mt.append(cos_map(ft, pt))
    ms = torch.stack(ms, dim=1)  # [N,K,D,H,W]
    mt = torch.stack(mt, dim=1)
    return ((ms - mt) ** 2).mean()


def protokd_losses(s, fs, t, ft, y):
    ce = ce_loss(s, y)
    dice = dice_loss(s, y)
    seg = ce + dice
    kd = kd_loss(s, t)
    proto = proto_loss(fs, ft, y)
    total = seg + KD_WEIGHT * kd + PROTO_WEIGHT * proto
    return dict(total=total, seg=seg, dice=dice, ce=ce, kd=kd, proto=proto)


def make_adam(model):
    return torch.optim.Adam(model.parameters(), foreach=False, **ADAM)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def make_label(shape, gen, missing):
    """Nested, noisy ellipsoids: core -> 2 (NCR/NET), ring -> 1 (ET), shell -> 3 (ED), else 0.

    Centre jittered by +-10 % of each axis, semi-axes 0.45 x size, radius perturbed by smoothed
    Gaussian noise (5^3 box filter, scale 0.3); thresholds 0.35 / 0.6 / 0.9 on the radius.
    `missing = (sample, cls)` removes class `cls` from that sample: its voxels become class 1
    when cls == 2 (the core merges into the ET ring), otherwise class 0."""
    n, _, d, h, w = shape
    out = torch.zeros((n, 1, d, h, w), dtype=torch.int64)
    zz, yy, xx = torch.meshgrid(
        torch.arange(d, dtype=torch.float32),
        torch.arange(h, dtype=torch.float32),
        torch.arange(w, dtype=torch.float32),
        indexing="ij",
    )
    for i in range(n):
        c = [0.5 * s + (torch.rand((), generator=gen).item() - 0.5) * 0.2 * s for s in (d, h, w)]
        a = [0.45 * s for s in (d, h, w)]
        r = torch.sqrt(((zz - c[0]) / a[0]) ** 2 + ((yy - c[1]) / a[1]) ** 2 + ((xx - c[2]) / a[2]) ** 2)
        noise = torch.randn((1, 1, d, h, w), generator=gen)
        noise = F.avg_pool3d(noise, kernel_size=5, stride=1, padding=2, count_include_pad=False)[0, 0]
        r = r + 0.3 * noise
        lab = torch.zeros((d, h, w), dtype=torch.int64)
        lab[r < 0.9] = 3
        lab[r < 0.6] = 1
        lab[r < 0.35] = 2
        out[i, 0] = lab
    if missing is not None:
        si, cls = missing
        repl = 1 if cls == 2 else 0
        out[si, 0][out[si, 0] == cls] = repl
    return out


# --------------------------------------------------------------------------------------
# Fixture generation
# --------------------------------------------------------------------------------------
def prefixed(prefix, sd):
    return {f"{prefix}.{k}": v.detach().clone().contiguous() for k, v in sd.items()}


def grads(prefix, model):
    out = {}
    for k, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, k
            out[f"{prefix}.{k}"] = p.grad.detach().clone().contiguous()
    return out


def running_stats(prefix, model):
    return {
        f"{prefix}.{k}": v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


def compute_outputs(teacher, student, image, label):
    """Every computed value of a fixture (forwards, losses, gradients, Adam updates) for these
    models and inputs, in the models' dtype. Called once in float32 (the fixture) and once on
    float64 copies (the conditioning figures)."""
    t: dict[str, torch.Tensor] = {}
    # Teacher, evaluation mode, 4 channels.
    teacher.eval()
    with torch.no_grad():
        ft_eval, lt_eval = teacher(image)
    t["eval.teacher.features"] = ft_eval
    t["eval.teacher.logits"] = lt_eval

    # Teacher, training mode, on a deep copy (running statistics change).
    tcopy = copy.deepcopy(teacher).train()
    with torch.no_grad():
        ft_tr, lt_tr = tcopy(image)
    t["train.teacher.features"] = ft_tr
    t["train.teacher.logits"] = lt_tr
    t.update(running_stats("train.teacher.after", tcopy))
    del tcopy

    # ProtoKD step: student (train mode) on T1ce, teacher (eval mode, no grad).
    x_s = image[:, STUDENT_CHANNEL:STUDENT_CHANNEL + 1].contiguous()
    stu = copy.deepcopy(student).train()
    opt = make_adam(stu)
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        fs, s = stu(x_s)
        losses = protokd_losses(s, fs, lt_eval, ft_eval, label)
        losses["total"].backward()
        if step == 0:
            for k, v in losses.items():
                t[f"step.loss.{k}"] = v.detach().clone().reshape(())
            t["step.student.features"] = fs.detach().clone()
            t["step.student.logits"] = s.detach().clone()
            t.update(grads("step.grad", stu))
            s0, fs0 = s.detach().clone(), fs.detach().clone()
        opt.step()
        if step == 0:
            t.update(prefixed("step1.param", stu.state_dict()))
    t.update(prefixed("step3.param", stu.state_dict()))
    del stu, opt

    # Gradients of the separate losses at the student's initial outputs.
    sl = s0.clone().requires_grad_(True)
    t["lossgrad.dice"] = torch.autograd.grad(dice_loss(sl, label), sl)[0]
    sl = s0.clone().requires_grad_(True)
    t["lossgrad.ce"] = torch.autograd.grad(ce_loss(sl, label), sl)[0]
    sl = s0.clone().requires_grad_(True)
    t["lossgrad.kd"] = torch.autograd.grad(kd_loss(sl, lt_eval), sl)[0]
    fl = fs0.clone().requires_grad_(True)
    lp = proto_loss(fl, ft_eval, label)
    t["lossgrad.proto"] = torch.autograd.grad(lp, fl)[0]
    # consistency: the separately recomputed losses equal the step's values
    assert torch.equal(lp.detach().reshape(()), t["step.loss.proto"]), "proto loss recompute mismatch"

    # Unimodal baseline step: L_seg only, fresh copy of the initial student.
    base = copy.deepcopy(student).train()
    base.zero_grad(set_to_none=True)
    _, sb = base(x_s)
    lb = seg_loss(sb, label)
    lb.backward()
    t["baseline.loss.total"] = lb.detach().clone().reshape(())
    t.update(grads("baseline.grad", base))
    del base

    # Teacher-pretraining step: L_seg on all 4 channels, fresh copy of the initial teacher.
    tt = copy.deepcopy(teacher).train()
    topt = make_adam(tt)
    topt.zero_grad(set_to_none=True)
    _, st = tt(image)
    lt = seg_loss(st, label)
    lt.backward()
    t["teacherstep.loss.total"] = lt.detach().clone().reshape(())
    t.update(grads("teacherstep.grad", tt))
    topt.step()
    t.update(prefixed("teacherstep.param", tt.state_dict()))
    del tt, topt

    return t


def make_fixture(name, cfg, n_filters, out_dir):
    shape = cfg["shape"]
    n_filters = cfg.get("n_filters", n_filters)
    bias_shift = cfg.get("bn_bias_shift", 0.0)
    seeds = seeds_for(cfg["base_seed"])
    n, cin, d, h, w = shape
    assert cin == 4 and d % 16 == 0 and h % 16 == 0 and w % 16 == 0

    torch.manual_seed(seeds["teacher_init"])
    teacher = VNet(4, NUM_CLASSES, n_filters)
    perturb_bn(teacher, torch.Generator().manual_seed(seeds["teacher_bn"]), bias_shift)
    torch.manual_seed(seeds["student_init"])
    student = VNet(1, NUM_CLASSES, n_filters)
    perturb_bn(student, torch.Generator().manual_seed(seeds["student_bn"]), bias_shift)

    image = torch.randn(shape, generator=torch.Generator().manual_seed(seeds["image"]), dtype=torch.float32)
    label = make_label(shape, torch.Generator().manual_seed(seeds["label"]), cfg["missing"])
    for i in range(n):
        present = sorted(torch.unique(label[i]).tolist())
        if cfg["missing"] is not None and cfg["missing"][0] == i:
            expect = [k for k in range(NUM_CLASSES) if k != cfg["missing"][1]]
        else:
            expect = list(range(NUM_CLASSES))
        assert present == expect, (name, i, present, expect)

    t: dict[str, torch.Tensor] = {}
    t.update(prefixed("teacher", teacher.state_dict()))
    t.update(prefixed("student", student.state_dict()))
    if name == "A":
        # PyTorch -> protokd checkpoint interchange: the initial student's plain state_dict as
        # a PyTorch user saves it (no metadata); tests/io/checkpoint.rs loads it.
        save_file(student.state_dict(), os.path.join(out_dir, "torch_state_dict.safetensors"))
    t["image"] = image
    t["label"] = label

    t.update(compute_outputs(teacher, student, image, label))

    for k, v in t.items():
        assert v.dtype in (torch.float32, torch.int64), (k, v.dtype)
        assert torch.isfinite(v.float()).all(), k
    t = {k: v.contiguous() for k, v in t.items()}

    meta = {
        "format": "protokd-parity-fixture-v1",
        "torch_version": torch.__version__,
        "shape": "x".join(map(str, shape)),
        "n_filters": str(n_filters),
        "num_classes": str(NUM_CLASSES),
        "teacher_in_channels": "4",
        "student_in_channels": "1",
        "student_channel": str(STUDENT_CHANNEL),
        "missing_class": "none" if cfg["missing"] is None else f"sample {cfg['missing'][0]} class {cfg['missing'][1]}",
        "proto_kept_classes": ",".join(map(str, kept_classes(label))),
        "seeds": ",".join(f"{k}={v}" for k, v in seeds.items()),
        "kd_T": str(KD_T), "kd_weight": str(KD_WEIGHT), "proto_weight": str(PROTO_WEIGHT),
        "adam": "lr=1e-3,betas=(0.9,0.999),eps=1e-8,weight_decay=1e-5",
    }
    path = os.path.join(out_dir, f"{name}.safetensors")
    # one metadata key holding sorted JSON: safetensors writes a multi-key metadata map in hash
    # order, which would make reruns differ byte-wise
    save_file(t, path, metadata={"protokd_fixture": json.dumps(meta, sort_keys=True)})
    # Conditioning: the same computation on float64 copies, and again in float32 with PyTorch's
    # native convolutions instead of oneDNN's (another valid float32 summation order). For every
    # computed float tensor, the larger of the two float32 errors ||t32 - t64|| / ||t64||:
    # how far a correct float32 implementation can be from the exact result there.
    # tests/engine/pytorch_parity.rs widens a tensor's bound to a multiple of it where float32 itself
    # cannot reach the bound.
    t64 = compute_outputs(copy.deepcopy(teacher).double(), copy.deepcopy(student).double(),
                          image.double(), label)
    torch.backends.mkldnn.enabled = False
    t32_native = compute_outputs(copy.deepcopy(teacher), copy.deepcopy(student), image, label)
    torch.backends.mkldnn.enabled = True

    def rel(a, b):
        den = b.norm().item()
        num = (a.double() - b).norm().item()
        return num / den if den > 0 else num

    conditioning = {k: max(rel(t[k], v64), rel(t32_native[k], v64))
                    for k, v64 in sorted(t64.items()) if v64.is_floating_point()}
    with open(os.path.join(out_dir, f"{name}.conditioning.json"), "w") as f:
        json.dump(conditioning, f, sort_keys=True, indent=0)
        f.write("\n")
    print(f"[{name}] shape {shape}, kept proto classes {kept_classes(label)}, "
          f"losses: " + ", ".join(f"{k}={t['step.loss.' + k].item():.6f}" for k in
                                  ("total", "seg", "ce", "dice", "kd", "proto"))
          + f", baseline={t['baseline.loss.total'].item():.6f}, teacherstep={t['teacherstep.loss.total'].item():.6f}")
    return path


def torch_side_of_written(out_dir):
    src = os.path.join(out_dir, "protokd_written.safetensors")
    if not os.path.exists(src):
        print(f"[written] {src} not found: skipping the Rust->PyTorch checkpoint check")
        return None
    sd = load_file(src)
    w1 = sd["block_one.conv.0.weight"]
    n_filters, in_ch = int(w1.shape[0]), int(w1.shape[1])
    n_classes = int(sd["out_conv.weight"].shape[0])
    model = VNet(in_ch, n_classes, n_filters)
    model.load_state_dict(sd, strict=True)
    model.eval()
    image = torch.randn((1, in_ch, 16, 16, 16), generator=torch.Generator().manual_seed(WRITTEN_SEED))
    with torch.no_grad():
        feats, logits = model(image)
    dst = os.path.join(out_dir, "protokd_written_torch_out.safetensors")
    save_file({"image": image.contiguous(), "features": feats.contiguous(), "logits": logits.contiguous()}, dst,
              metadata={"protokd_fixture": json.dumps(
                  {"source": "protokd_written.safetensors", "seed": WRITTEN_SEED, "in_channels": in_ch,
                   "n_filters": n_filters, "num_classes": n_classes, "torch_version": torch.__version__},
                  sort_keys=True)})
    print(f"[written] loaded {src} (in_channels {in_ch}, n_filters {n_filters}, classes {n_classes}) "
          f"strictly; wrote {dst}")
    return dst


# --------------------------------------------------------------------------------------
# Self-checks of the loss code (float64)
# --------------------------------------------------------------------------------------
def selfcheck():
    g = torch.Generator().manual_seed(7)
    dt = torch.float64
    n, c, fch, d, h, w = 2, NUM_CLASSES, 3, 2, 3, 2
    s = torch.randn((n, c, d, h, w), generator=g, dtype=dt, requires_grad=True)
    tl = torch.randn((n, c, d, h, w), generator=g, dtype=dt)
    fs = torch.randn((n, fch, d, h, w), generator=g, dtype=dt, requires_grad=True)
    ft = torch.randn((n, fch, d, h, w), generator=g, dtype=dt)
    y = torch.randint(0, c, (n, 1, d, h, w), generator=g)
    y[0, 0, 0, 0, :] = torch.tensor([0, 1])
    y[0, 0, 0, 1, :] = torch.tensor([2, 3])
    y[1, 0, 0, 0, :] = torch.tensor([0, 1])
    y[1, 0, 0, 1, :] = torch.tensor([2, 0])
    y[1][y[1] == 3] = 0  # class 3 missing from sample 1
    assert kept_classes(y) == [0, 1, 2]

    # 1. gradcheck
    assert torch.autograd.gradcheck(lambda a: dice_loss(a, y), (s,))
    assert torch.autograd.gradcheck(lambda a: ce_loss(a, y), (s,))
    assert torch.autograd.gradcheck(lambda a: kd_loss(a, tl), (s,))
    assert torch.autograd.gradcheck(lambda a: proto_loss(a, ft, y), (fs,))

    # 2. explicit loop formulas against the vectorised code
    with torch.no_grad():
        p = torch.softmax(s, 1)
        acc = 0.0
        for k in range(c):
            gk = (y[:, 0] == k).to(dt)
            pk = p[:, k]
            acc += 1 - (2 * (pk * gk).sum() + 1e-5) / ((gk * gk).sum() + (pk * pk).sum() + 1e-5)
        assert torch.allclose(dice_loss(s, y), acc / c, rtol=1e-12, atol=1e-12)

        lp = torch.log_softmax(s, 1)
        wv = ce_weights(y, dt)
        yy = y[:, 0]
        wi = wv[yy]
        nll = -lp.gather(1, y).squeeze(1)
        assert torch.allclose(ce_loss(s, y), (wi * nll).sum() / wi.sum(), rtol=1e-12, atol=1e-12)

        q = torch.softmax(tl / KD_T, 1)
        ref = (q * (q.log() - torch.log_softmax(s / KD_T, 1))).mean()
        assert torch.allclose(kd_loss(s, tl), ref, rtol=1e-12, atol=1e-12)

        tot = 0.0
        cnt = 0
        for k in kept_classes(y):
            for i in range(n):
                msk = (y[i, 0] == k)
                pr_s = fs[i][:, msk].sum(1) / (msk.sum() + 1e-5)
                pr_t = ft[i][:, msk].sum(1) / (msk.sum() + 1e-5)
                for v in range(d * h * w):
                    a = fs[i].reshape(fch, -1)[:, v]
                    b = ft[i].reshape(fch, -1)[:, v]
                    cs = (a / max(a.norm(), 1e-5)) @ (pr_s / max(pr_s.norm(), 1e-5))
                    ct = (b / max(b.norm(), 1e-5)) @ (pr_t / max(pr_t.norm(), 1e-5))
                    tot += (cs - ct) ** 2
                    cnt += 1
        assert torch.allclose(proto_loss(fs, ft, y), tot / cnt, rtol=1e-12, atol=1e-12)

        # cosine against PyTorch's own (informational; the formula above is the contract)
        pr = torch.randn((n, fch), generator=g, dtype=dt)
        ours = cos_map(fs, pr)
        theirs = F.cosine_similarity(fs, pr[:, :, None, None, None].expand_as(fs), dim=1, eps=COS_EPS)
        assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-12)

        # no kept class -> 0
        y2 = y.clone()
        y2[0][y2[0] == 0] = 1
        y2[1][y2[1] == 1] = 0
        y2[1][y2[1] == 2] = 0
        y2[0][y2[0] == 2] = 1  # sample 0 has {1}, sample 1 has {0} -> nothing in both
        assert kept_classes(y2) == [], kept_classes(y2)
        assert proto_loss(fs, ft, y2).item() == 0.0

    # 3. VNet shapes / parameter names
    net = VNet(1, NUM_CLASSES, 4)
    names = list(net.state_dict().keys())
    for must in ("block_one.conv.0.weight", "block_one.conv.1.weight", "block_one.conv.1.num_batches_tracked",
                 "block_two.conv.3.weight", "block_three.conv.6.weight", "block_three.conv.7.running_var",
                 "block_one_dw.conv.0.bias", "block_five_up.conv.0.weight", "block_five_up.conv.0.bias",
                 "block_eight_up.conv.1.bias", "block_nine.conv.0.weight", "out_conv.weight", "out_conv.bias"):
        assert must in names, must
    assert "block_one.conv.0.bias" not in names
    assert isinstance(net.block_five_up.conv[0], nn.ConvTranspose3d)
    assert tuple(net.block_five_up.conv[0].weight.shape) == (64, 32, 2, 2, 2)
    print("[selfcheck] losses (gradcheck + loop formulas, float64), cosine, skip rule, VNet names: OK")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--out-dir", default=os.path.join(root, "tests", "fixtures", "parity"))
    ap.add_argument("--n-filters", type=int, default=4)
    ap.add_argument("--skip-selfcheck", action="store_true")
    ap.add_argument("--only", choices=sorted(FIXTURES), action="append",
                    help="write only this fixture (repeatable); default: all")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    os.makedirs(args.out_dir, exist_ok=True)

    if not args.skip_selfcheck:
        selfcheck()

    written = []
    for name in (args.only or sorted(FIXTURES)):
        written.append(make_fixture(name, FIXTURES[name], args.n_filters, args.out_dir))
        if name == "A":
            written.append(os.path.join(args.out_dir, "torch_state_dict.safetensors"))
    w = torch_side_of_written(args.out_dir)
    if w:
        written.append(w)

    print("files:")
    total = 0
    for p in written:
        sz = os.path.getsize(p)
        total += sz
        print(f"  {os.path.relpath(p, root)}  {sz} bytes ({sz / 2**20:.2f} MiB)")
    print(f"  total {total} bytes ({total / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
