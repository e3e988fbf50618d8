#!/usr/bin/env bash
# GPU validation of protokd-gpu on a machine with an NVIDIA GPU (docs/gpu-validation.md).
#
#   tools/gpu/validate.sh BIN_DIR OUT_DIR
#
# Run from the repository root (the golden patches are read from golden/). BIN_DIR holds the
# `protokd` binary and the protokd-gpu test binaries, built on any x86-64 Linux machine (no CUDA
# needed) with `tools/gpu/bundle.sh BIN_DIR`. Writes to OUT_DIR: machine.txt (GPU, driver,
# CUDA), tests.log (every GPU test against the CPU reference on the GPU), verify.log and
# verify.json (`protokd verify --engines cuda`), bench.log (`protokd bench --engine cuda`, and
# the fast CPU engine on 2 threads), torch.log (PyTorch on the same GPU, TF32 off).
set -u
BIN=$(cd "$1" && pwd)
OUT=$2
mkdir -p "$OUT"

# The driver (libcuda) and NVRTC: the first folder that holds each.
libdir() {
    for d in /usr/local/nvidia/lib64 /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
        /usr/lib/x86_64-linux-gnu $(python3 -c 'import nvidia, os; [print(os.path.join(p, "cu13", "lib")) for p in nvidia.__path__]' 2>/dev/null); do
        if ls "$d"/$1 >/dev/null 2>&1; then echo "$d"; return; fi
    done
}
CUDA_DIR=$(libdir 'libcuda.so*')
NVRTC_DIR=$(libdir 'libnvrtc.so*')
export LD_LIBRARY_PATH="${NVRTC_DIR}:${CUDA_DIR}:${LD_LIBRARY_PATH:-}"
{
    echo "date: $(date -u)"
    echo "libcuda from: $CUDA_DIR"; echo "libnvrtc from: $NVRTC_DIR"; ls "$NVRTC_DIR" | grep nvrtc
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    nvcc --version
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    nproc; uname -a
} > "$OUT/machine.txt" 2>&1

export PROTOKD_TEST_DEVICE=cuda PROTOKD_REQUIRE_NVRTC=1
for t in nvrtc reduce mathfn elementwise adam batchnorm conv losses proto vnet; do
    echo "=== $t (PROTOKD_TEST_DEVICE=cuda)"
    timeout 150 "$BIN/$t" --test-threads=1 2>&1
    echo "=== $t: exit $?"
done > "$OUT/tests.log"
echo "=== conv_speed (paper-size convolutions)" >> "$OUT/tests.log"
timeout 120 "$BIN/conv" --ignored --nocapture --test-threads=1 conv_speed >> "$OUT/tests.log" 2>&1
echo "=== conv_speed: exit $?" >> "$OUT/tests.log"

timeout 300 "$BIN/protokd" verify --engines cuda --json "$OUT/verify.json" > "$OUT/verify.log" 2>&1
echo "exit $?" >> "$OUT/verify.log"

bench() {
    local limit=$1
    shift
    echo "=== protokd bench $* (limit ${limit} s)"
    timeout "$limit" "$BIN/protokd" bench "$@" --json /tmp/bench.json 2>&1 && cat /tmp/bench.json
    echo "=== exit $?"
    rm -f /tmp/bench.json
}
{
    bench 60 --engine cuda --what forward --shape 1,4,32,32,32 --filters 4 --repeat 2
    bench 90 --engine cuda --what forward --shape 1,4,96,128,128 --filters 16 --warmup 2 --repeat 5
    bench 100 --engine cuda --what step --shape 1,4,96,128,128 --filters 16 --warmup 1 --repeat 3
    bench 150 --engine cuda --what step --shape 4,4,96,128,128 --filters 16 --warmup 1 --repeat 3
    echo "=== per-kernel profile of one forward (PROTOKD_GPU_PROFILE: every launch waited for)"
    PROTOKD_GPU_PROFILE=1 bench 60 --engine cuda --what forward --shape 1,4,96,128,128 --filters 16 --warmup 0 --repeat 1
    echo "=== per-kernel profile of one batch-4 step (PROTOKD_GPU_PROFILE: every launch waited for)"
    PROTOKD_GPU_PROFILE=1 bench 150 --engine cuda --what step --shape 4,4,96,128,128 --filters 16 --warmup 0 --repeat 1
} > "$OUT/bench.log" 2>&1

PYTHONUNBUFFERED=1 timeout 180 python3 tools/bench/pytorch_vnet.py --device cuda --warmup 2 --repeat 5 \
    --rows forward:1,4,96,128,128 step:1,4,96,128,128 step:4,4,96,128,128 > "$OUT/torch.log" 2>&1
echo "exit $?" >> "$OUT/torch.log"

# The fast CPU engine on 2 threads of this machine, for the forward speed-up.
{
    echo "=== fast CPU engine (--engine cpu), 2 threads (taskset -c 0,1)"
    taskset -c 0,1 timeout 120 "$BIN/protokd" --threads 2 bench --engine cpu --what forward \
        --shape 1,4,96,128,128 --filters 16 --warmup 1 --repeat 3
    echo "=== exit $?"
} >> "$OUT/bench.log" 2>&1
