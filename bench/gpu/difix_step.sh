#!/usr/bin/env bash
# The DiFix step's speed on one GPU in one 10-minute device call (full-size architecture, random
# weights, 512x512 with a reference view, batch 1, bf16):
#   [DEADLINE=S] bash bench/gpu/difix_step.sh [CACHE_DIR]   (rows start only while S s (480) last)
# 1. side by side, cold (an empty study cache, empty node-local caches): the compiled training step
#    (profiled) beside compiled inference (profiled), then inference with inductor's
#    freezing (weights as constants), then clipping + AdamW
#    alone (bench/bench_optim.py); processes that compile together time their steps one at a time
#    (--timing-lock); beside them the DiFix GPU tests (not gpu_slow), untimed;
# 2. then alone, warm (new processes, node-local caches empty, the study cache from 1): the training
#    step (profiled), inference, the plain diffusers step, the training step with cuDNN autotuning,
#    and with clip_grad_norm_ before the optimizer (under cProfile: where the warm first step goes);
# 3. the first calls' outputs compared (cold vs warm, fused vs separate clipping).
# Tables, logs and profiles go to $OUT/step.tgz (packed after every row); the last lines printed
# are the summary.
set -uo pipefail
cache=${1:-gpu-out/compile_cache}
out=gpu-out/step
rm -rf "$out"
mkdir -p "$out" "$cache"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
unset TORCHINDUCTOR_CACHE_DIR TRITON_CACHE_DIR
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader \
    | tee "$out/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, torch.version.cuda, 'triton', triton.__version__)" \
    | tee -a "$out/device.txt"
start=$(date +%s)
stamp() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$out/timeline.txt"; }
left() { echo $((${DEADLINE:-480} - ($(date +%s) - start))); }
pack() { if [ -n "${OUT:-}" ]; then flock "$out/pack.lock" tar -czf "$OUT/step.tgz" --exclude='*.lock' -C gpu-out step; fi; }
lock=$out/timing.lock
difix="bench/bench_difix.py --iters 20 --warmup 5 --precisions bf16 --timing-lock $lock"
cc="--compile --compile-cache $cache"
row() {  # row NAME [python3 options --] ARGS...: one bench_difix run, table NAME.md, log NAME.log
    local name=$1 py=()
    shift
    if [ "${1:-}" = -m ]; then py=(-m cProfile -o "$out/$name.prof"); shift; fi
    # a row that cannot finish is skipped, not started with a negative timeout (timeout's exit 125)
    if [ "$(left)" -lt 30 ]; then stamp "$name skipped: $(left) s left of DEADLINE"; return; fi
    timeout "$(left)" python3 "${py[@]}" $difix "$@" --outputs "$out/$name.pt" >"$out/$name.md" 2>"$out/$name.log"
    stamp "$name exit $?: $(grep -h 'first call\|timing lock' "$out/$name.log" | tr '\n' ' ') $(tail -1 "$out/$name.md")"
    pack
}

stamp "1: cold, side by side"
row cold_train --rows train $cc --clip fused --profile 2 --profile-out "$out/prof_cold_train" &
a=$!
(
    row cold_infer --rows infer --bf16-weights $cc --profile 2 --profile-out "$out/prof_cold_infer"
    # (coordinate-descent tuning is left out: its cold compile had not ended after 250 s, BENCHMARKS.md)
    row cold_infer_freeze --rows infer --bf16-weights $cc --inductor freezing=True \
        --profile 2 --profile-out "$out/prof_cold_infer_freeze" &
    wait
    flock "$lock" timeout "$(left)" python3 bench/bench_optim.py --iters 20 >"$out/optim.md" 2>"$out/optim.log"
    stamp "bench_optim exit $?"
    pack
) &
b=$!
(   # the DiFix GPU tests (clipping inside fused AdamW among them), not timed
    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TRITON_CACHE_DIR=$(mktemp -d) timeout "$(left)" python3 -m pytest \
        -m "gpu and not gpu_slow" tests/gpu/test_difix_gpu.py -p no:cacheprovider -q -rfE --durations=12 \
        >"$out/gpu_difix_tests.log" 2>&1
    stamp "DiFix GPU tests exit $?: $(grep -E 'passed|failed' "$out/gpu_difix_tests.log" | tail -1)"
    pack
) &
c=$!
wait $a $b $c
ls -la "$cache" | tee "$out/cache_after_cold.txt"
stamp "2: warm, alone"
row warm_train --rows train $cc --clip fused --profile 2 --profile-out "$out/prof_warm_train"
row warm_infer --rows infer --bf16-weights $cc --profile 2 --profile-out "$out/prof_warm_infer"
[ "$(left)" -gt 40 ] && row plain --rows plain
[ "$(left)" -gt 70 ] && row warm_train_cudnn --rows train $cc --clip fused --cudnn-benchmark --profile 2 \
    --profile-out "$out/prof_warm_train_cudnn"
[ "$(left)" -gt 70 ] && row warm_train_sep -m --rows train $cc --clip separate
python3 - "$out" <<'PY' 2>&1 | tee "$out/compare.txt"
import os, pstats, sys, torch
out = sys.argv[1]
def load(name, key):
    path = f"{out}/{name}.pt"
    return torch.load(path)[key] if os.path.exists(path) and key in torch.load(path) else None
for key, names in (("train_losses", ("cold_train", "warm_train", "warm_train_sep", "warm_train_cudnn")),
                   ("infer_output", ("cold_infer", "warm_infer", "cold_infer_freeze"))):
    first = load(names[0], key)
    for name in names[1:]:
        other = load(name, key)
        if first is None or other is None:
            continue
        n = min(len(first), len(other))
        diff = (first[:n].double() - other[:n].double()).abs()
        rel = (diff / first[:n].double().abs().clamp_min(1e-12)).max().item()
        print(f"{key}: {names[0]} vs {name}: identical {torch.equal(first[:n], other[:n])}, "
              f"max |diff| {diff.max().item():.3g} (relative {rel:.3g}), mean {diff.mean().item():.3g}, n {n}")
if os.path.exists(f"{out}/warm_train_sep.prof"):
    with open(f"{out}/warm_train_sep_prof.txt", "w") as fh:
        pstats.Stats(f"{out}/warm_train_sep.prof", stream=fh).sort_stats("cumulative").print_stats(60)
PY
pack
echo; cat "$out/timeline.txt"; echo
for f in "$out"/*.md; do echo "== $(basename "$f")"; grep -E '^\| (difix|plain|clip|norm|fused)' "$f"; done
for f in "$out"/prof_*/*.txt; do echo "$(basename "$(dirname "$f")"): $(head -1 "$f" | cut -c1-400)"; done
