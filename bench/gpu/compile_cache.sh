#!/usr/bin/env bash
# Compile once per study, measured on one GPU (nvidia-h200) in two 10-minute device calls:
#   bash bench/gpu/compile_cache.sh all [CACHE_DIR]      (call 1: A and B below)
#   bash bench/gpu/compile_cache.sh again [CACHE_DIR]    (call 2: C below)
# A. side by side (cold: empty study cache, fresh node-local caches in every process):
#    the compiled training step and compiled inference (bench_difix.py, saving to the study cache);
#    the pipeline's fixer at 940x1280 (batch 4 at 384x512, compiled bf16), one process each for cuDNN
#    autotuning off / on / on with cuDNN's workspace capped, its peak GPU memory (the first process
#    compiles and saves, the others start from the study cache); the GPU suite (bench/gpu/suite.sh tests).
# B. when A's DiFix rows are done, as a second node would: new processes, their node-local caches
#    empty, the study cache filled by A: first-call times, steady times, outputs compared with A's;
#    the plain diffusers step in the same call.
# C. the GPU suite's fast command from a bare machine, its durations; beside it the cold training step
#    and a chain of inference processes with cuDNN autotuning off (cold, warm, warm again: are the
#    outputs identical?); when the suite and the cold step are done, the warm training step alone
#    (twice: identical losses?); then the gpu_slow command with the time left.
# Outputs (tables, logs, first-call outputs) under $OUT/cc.tgz. The study cache stays on the machine:
# full-size entries are 91-228 MB each, more than a device call carries back (64 MiB).
set -uo pipefail
plan=${1:-all}
cache=${2:-gpu-out/compile_cache}
out=gpu-out/cc
rm -rf "$out"
mkdir -p "$out" "$cache"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
unset TORCHINDUCTOR_CACHE_DIR TRITON_CACHE_DIR
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, torch.version.cuda, 'triton', triton.__version__)" \
    | tee -a "$out/device.txt"
ls -la "$cache" | tee "$out/cache_before.txt"
start=$(date +%s)
stamp() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$out/timeline.txt"; }
pack() {
    if [ -n "${OUT:-}" ]; then
        flock gpu-out/pack.lock tar -czf "$OUT/cc.tgz" --exclude='*.lock' -C gpu-out cc
    fi
}
difix="python3 bench/bench_difix.py --iters 20 --warmup 5 --precisions bf16 --compile --compile-cache $cache"
row() {  # row NAME ARGS...: one bench_difix run, table to NAME.md, log to NAME.log
    local name=$1
    shift
    $difix "$@" --outputs "$out/$name.pt" >"$out/$name.md" 2>"$out/$name.log"
    stamp "$name exit $?: $(grep -h 'first call' "$out/$name.log" | tr '\n' ' ') $(tail -1 "$out/$name.md")"
    pack
}
fixer() {  # fixer NAME CUDNN [ENV...]: the pipeline's fixer at 940x1280, compiled bf16, batch 4
    local name=$1 cudnn=$2
    shift 2
    env "$@" python3 bench/bench_fixer.py --model /tmp/base --size 1280x940 --long-side 512 --batch-sizes 4 \
        --compile true --views 32 --cudnn-benchmark "$cudnn" --compile-cache "$cache" \
        >"$out/$name.md" 2>"$out/$name.log"
    stamp "$name exit $?: $(tail -1 "$out/$name.md")"
    pack
}

compare() {  # compare KIND NAME...: outputs of runs against the first's
    python3 - "$out" "$@" <<'EOF' | tee -a "$out/compare.txt"
import sys, torch
out, kind, names = sys.argv[1], sys.argv[2], sys.argv[3:]
key = {"train": "train_losses", "infer": "infer_output"}[kind]
first = torch.load(f"{out}/{names[0]}.pt")[key]
for name in [n for n in names[1:] if __import__("os").path.exists(f"{out}/{n}.pt")]:
    other = torch.load(f"{out}/{name}.pt")[key]
    n = min(len(first), len(other))
    diff = (first[:n].double() - other[:n].double()).abs()
    print(f"{kind}: {names[0]} vs {name}: identical {torch.equal(first[:n], other[:n])}, "
          f"max |diff| {diff.max().item():.3g}, mean {diff.mean().item():.3g}, n {n}")
EOF
}

if [ "$plan" = again ]; then
    stamp "C: the GPU suite, the cold step and an inference chain side by side"
    (
        timeout -s INT 420 python3 -m pytest -m "gpu and not gpu_slow" tests/gpu -p no:cacheprovider -v -rfE \
            --durations=0 >"$out/gpu_suite.log" 2>&1
        stamp "GPU suite exit $?: $(grep -E 'passed|failed' "$out/gpu_suite.log" | tail -1)"
        pack
    ) &
    c_suite=$!
    row cold_train --rows train &
    c_train=$!
    (
        for name in cold_infer_nb warm_infer_nb warm2_infer_nb; do
            row $name --rows infer --bf16-weights --no-infer-cudnn-benchmark
        done
        compare infer cold_infer_nb warm_infer_nb warm2_infer_nb
    ) &
    c_infer=$!
    (  # gsplat's CUDA extension, which the gpu_slow tests need, built meanwhile
        t0=$(date +%s)
        python3 -c "from gsplat.cuda._backend import _C" >"$out/gsplat_build.log" 2>&1
        stamp "gsplat CUDA extension build exit $?: $(($(date +%s) - t0)) s"
    ) &
    c_gsplat=$!
    wait $c_train $c_suite
    stamp "warm training steps, alone"
    row warm_train --rows train
    [ $(($(date +%s) - start)) -lt 450 ] && row warm2_train --rows train
    compare train cold_train warm_train warm2_train
    wait $c_infer $c_gsplat
    left=$((575 - ($(date +%s) - start)))
    stamp "gpu_slow tests, $left s"
    timeout -s INT $left python3 -m pytest -m gpu_slow tests/gpu -p no:cacheprovider -v -rfE -s --durations=0 \
        >"$out/gpu_slow.log" 2>&1
    stamp "gpu_slow exit $?: $(grep -E 'passed|failed' "$out/gpu_slow.log" | tail -1)"
    ls -la "$cache" | tee "$out/cache_after.txt"
    pack
    exit 0
fi

stamp "A: cold"
row cold_train --rows train &
a_train=$!
row cold_infer --rows infer --bf16-weights &
a_infer=$!
(
    python3 bench/gpu/study.py base /tmp/base >"$out/base.log" 2>&1
    stamp "random sd-turbo base folder exit $?"
    fixer fixer_cudnn_off off
    fixer fixer_cudnn_on on
    fixer fixer_cudnn_on_wscap on CUDNN_CONV_WSCAP_DBG=1024
) &
a_fixer=$!
(
    timeout 480 python3 -m pytest -m "gpu and not gpu_slow" tests/gpu -p no:cacheprovider -q -rfE --durations=15 \
        >"$out/gpu_suite.log" 2>&1
    stamp "GPU suite (beside A and B) exit $?: $(grep -E 'passed|failed' "$out/gpu_suite.log" | tail -1)"
    pack
) &
a_suite=$!
wait $a_train $a_infer
stamp "B: warm (new processes, empty node-local caches, the study cache from A)"
ls -la "$cache" | tee "$out/cache_after_a.txt"
row warm_train --rows train
row warm_infer --rows infer --bf16-weights
python3 bench/bench_difix.py --iters 20 --warmup 5 --precisions bf16 --rows plain >"$out/plain.md" 2>"$out/plain.log"
stamp "plain exit $?: $(tail -1 "$out/plain.md")"
python3 - "$out" <<'EOF' | tee "$out/compare.txt"
import sys, torch
out = sys.argv[1]
for kind, name in (("train", "train_losses"), ("infer", "infer_output")):
    cold, warm = (torch.load(f"{out}/{w}_{kind}.pt")[name] for w in ("cold", "warm"))
    n = min(len(cold), len(warm))
    diff = (cold[:n].double() - warm[:n].double()).abs().max().item()
    print(f"{kind}: cold vs warm {name}: identical {torch.equal(cold[:n], warm[:n])}, max |diff| {diff:.3g}, n {n}")
EOF
pack
wait $a_fixer $a_suite
ls -la "$cache" | tee "$out/cache_after.txt"
pack
stamp done
