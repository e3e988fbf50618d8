#!/usr/bin/env python3
"""Write the PyTorch-checkpoint fixtures of protokd's `.pth` reader with real PyTorch.

Usage (from the repository root):

    python3 tools/torch/make_fixtures.py [--out-dir tests/fixtures/torch]

The model is the teacher of parity fixture C (tests/fixtures/parity/C.safetensors: VNet with 4
input channels, 4 classes, n_filters 2, BatchNorm statistics moved off their defaults), built
with the VNet of tools/parity/make_fixtures.py (imported, not copied). Outputs:

    state_dict.pth           torch.save(model.state_dict(), ...)          (zip, PyTorch >= 1.6)
    legacy.pth               the same, _use_new_zipfile_serialization=False (legacy format)
    model_key.pth            {"model": model.state_dict(), "epoch": 0}     (zip)
    state_dict.safetensors   the same tensors, safetensors.torch.save_file
    resumable.pth            {"state_dict", "optimizer", "epoch", "iteration"} after 2 Adam
                             steps of teacher pretraining (L_seg) on C's batch (zip)
    resumable.safetensors    the model of resumable.pth, safetensors.torch.save_file
    resume_step.safetensors  PyTorch's third step from resumable.pth on the same batch:
                             `step3.param.<name>`, `step3.adam.exp_avg.<name>`,
                             `step3.adam.exp_avg_sq.<name>`, in metadata the Adam settings

and the bad inputs the refusal tests feed (a VNet with 1 input channel and n_filters 1, to
keep them small):

    bad_missing.pth          its state_dict without `out_conv.bias`
    bad_extra.pth            its state_dict with one more tensor, `extra.weight`
    bad_bomb.pth             its state_dict plus `bomb` (64 Mi float32 zeros, 256 MiB), every
                             zip entry deflated: a 256 KiB file that declares 256 MiB
    not_a_checkpoint.pkl     a pickle of a plain dict (no tensors)
    os_system.pkl            a pickle whose loading would call os.system("touch pwned")

and, as seeds of the checkpoint fuzzer (tests/fuzz/main.rs), that small VNet's state_dict in
both containers: tests/fuzz/corpus/checkpoint/student_f1.pth and student_f1_legacy.pth.

All computation is float32 on the CPU with one thread, deterministic algorithms and fixed
seeds; a rerun with the same PyTorch build writes the same files, except `legacy.pth` (the
legacy format names its storages by their memory addresses: the same tensors under other
keys) and the metadata order of `resume_step.safetensors`.
"""

import argparse
import json
import os
import pickle
import sys
import zipfile

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
import make_fixtures as parity  # noqa: E402  (the VNet, L_seg and Adam settings of the parity fixtures)

N_FILTERS = 2
SMALL_SEED = 7  # torch.manual_seed before the small VNet of the bad inputs


def teacher_of_c():
    c = load_file(os.path.join(ROOT, "tests", "fixtures", "parity", "C.safetensors"))
    model = parity.VNet(4, parity.NUM_CLASSES, N_FILTERS)
    model.load_state_dict({k[len("teacher."):]: v for k, v in c.items() if k.startswith("teacher.")})
    return model, c["image"], c["label"]


def adam_step(model, opt, image, label):
    opt.zero_grad(set_to_none=True)
    _, s = model(image)
    parity.seg_loss(s, label).backward()
    opt.step()


class OsSystem:
    """Pickles as a call of os.system: what a malicious checkpoint does to `torch.load` without
    `weights_only`."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def deflate(path):
    """Rewrites the zip at `path` with every entry deflated (torch.save stores them)."""
    with zipfile.ZipFile(path) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # no time stamp
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data, compresslevel=9)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "tests", "fixtures", "torch"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out_dir, exist_ok=True)
    out = lambda name: os.path.join(args.out_dir, name)  # noqa: E731

    model, image, label = teacher_of_c()
    sd = model.state_dict()
    torch.save(sd, out("state_dict.pth"))
    torch.save(sd, out("legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({"model": sd, "epoch": 0}, out("model_key.pth"))
    save_file({k: v.contiguous() for k, v in sd.items()}, out("state_dict.safetensors"))

    model.train()
    opt = parity.make_adam(model)
    for _ in range(2):
        adam_step(model, opt, image, label)
    torch.save(
        {"state_dict": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 0, "iteration": 2},
        out("resumable.pth"),
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out("resumable.safetensors"))

    adam_step(model, opt, image, label)
    names = [n for n, _ in model.named_parameters()]
    step3 = {f"step3.param.{k}": v.clone() for k, v in model.state_dict().items()}
    for i, (name, p) in enumerate(model.named_parameters()):
        st = opt.state[p]
        assert int(st["step"]) == 3
        step3[f"step3.adam.exp_avg.{name}"] = st["exp_avg"].clone()
        step3[f"step3.adam.exp_avg_sq.{name}"] = st["exp_avg_sq"].clone()
    meta = dict(adam=json.dumps(parity.ADAM), torch=torch.__version__, parameters=str(len(names)))
    save_file(step3, out("resume_step.safetensors"), metadata=meta)

    torch.manual_seed(SMALL_SEED)
    small = parity.VNet(1, parity.NUM_CLASSES, 1).state_dict()
    torch.save({k: v for k, v in small.items() if k != "out_conv.bias"}, out("bad_missing.pth"))
    torch.save({**small, "extra.weight": torch.zeros(3)}, out("bad_extra.pth"))
    fuzz = os.path.join(ROOT, "tests", "fuzz", "corpus", "checkpoint")
    torch.save(small, os.path.join(fuzz, "student_f1.pth"))
    torch.save(small, os.path.join(fuzz, "student_f1_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({**small, "bomb": torch.zeros(64 * 2**20)}, out("bad_bomb.pth"))
    deflate(out("bad_bomb.pth"))
    with open(out("not_a_checkpoint.pkl"), "wb") as f:
        pickle.dump({"epoch": 3, "note": "no tensors"}, f, protocol=2)
    with open(out("os_system.pkl"), "wb") as f:
        pickle.dump(OsSystem(), f, protocol=2)

    for name in sorted(os.listdir(args.out_dir)):
        print(f"  {os.path.relpath(out(name), ROOT)}  {os.path.getsize(out(name))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
