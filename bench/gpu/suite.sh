#!/usr/bin/env bash
# Everything the GPU machine runs, in one script: carried wheels, gsplat's CUDA build, the GPU tests,
# the render and DiFix benchmarks and the pipeline's GPU code path. Outputs go to ${OUT:-gpu-out}.
#   bash bench/gpu/suite.sh tests      the GPU suite, one 10-minute device call on a bare machine:
#                                      every `gpu` test but the `gpu_slow` ones, with durations
#   bash bench/gpu/suite.sh slow       the `gpu_slow` tests (the render parity tests: gsplat's CUDA
#                                      extension builds first, 1.5-2 minutes)
#   bash bench/gpu/suite.sh both       the two one after the other, each timed alone (one call: the
#                                      suite ~5 minutes with gsplat's build, then the `gpu_slow` tests)
#   bash bench/gpu/suite.sh            one GPU, everything (longer than one 10-minute device call: the
#                                      figures in BENCHMARKS.md came from several calls of its lines)
#   bash bench/gpu/suite.sh multi      also the 2-process DiFix step (run where 2 GPUs are visible)
# The two test commands, as run (wheels of diffusers, gsplat, lpips in .whl/):
#   python3 -m pytest -m "gpu and not gpu_slow" tests/gpu -p no:cacheprovider -q -rfE --durations=15
#   python3 -m pytest -m gpu_slow tests/gpu -p no:cacheprovider -q -rfE -s --durations=15
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$out/device.txt"
timed_run() {  # timed_run NAME FN: FN with its own empty inductor/Triton caches, its wall time to timings.txt
    local t0 rc
    t0=$(date +%s)
    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TRITON_CACHE_DIR=$(mktemp -d) "$2"
    rc=$?
    echo "$1: $(($(date +%s) - t0)) s, exit $rc" | tee -a "$out/timings.txt"
}
fast_tests() {
    python3 -m pytest -m "gpu and not gpu_slow" tests/gpu -p no:cacheprovider -q -rfE --durations=15 2>&1 \
        | tee "$out/gpu_tests.log" | tail -30
}
slow_tests() {
    python3 -m pytest -m gpu_slow tests/gpu -p no:cacheprovider -q -rfE -s --durations=15 2>&1 \
        | tee "$out/gpu_slow_tests.log" | tail -30
}
case "${1:-}" in
tests)
    fast_tests
    exit
    ;;
slow)
    slow_tests
    exit
    ;;
both)
    timed_run "GPU suite (gpu and not gpu_slow)" fast_tests
    timed_run "gpu_slow tests" slow_tests
    exit
    ;;
esac
start=$(date +%s)
python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension ready')" 2>&1 | tail -3
echo "gsplat build: $(( $(date +%s) - start )) s" | tee -a "$out/device.txt"
fast_tests
slow_tests
python3 bench/bench_render.py --repeats 2 2>&1 | tee "$out/bench_render.md" | tail -20
difix="python3 bench/bench_difix.py --iters 10 --warmup 3"
# eager: the three precisions side by side with a plain diffusers step
$difix 2>&1 | tee "$out/bench_difix.md" | tail -12
# compiled training step (TrainConfig.compile: CUDA graphs) and inference as load_difix(compile_mode=...) sets it up
$difix --precisions bf16 --rows train --compile 2>&1 | tee "$out/bench_difix_train_compiled.md" | tail -4
$difix --precisions bf16 --rows infer --bf16-weights 2>&1 | tee "$out/bench_difix_infer_bf16.md" | tail -4
# --compile alone: the pipeline's mode (CUDA graphs); --compile-mode default: without them
$difix --precisions bf16 --rows infer --bf16-weights --compile 2>&1 | tee "$out/bench_difix_infer_compiled.md" | tail -4
$difix --precisions bf16 --rows infer --bf16-weights --compile --compile-mode default 2>&1 \
    | tee "$out/bench_difix_infer_no_cudagraphs.md" | tail -4
if [ "${1:-}" = multi ]; then
    python3 -m accelerate.commands.launch --num_processes 2 --multi_gpu --num_machines 1 --mixed_precision no \
        --dynamo_backend no bench/bench_difix.py --rows train --precisions no,bf16,fp16 --iters 10 --warmup 3 \
        2>"$out/bench_difix_ddp.err" | tee "$out/bench_difix_ddp.md" | tail -6
fi
python3 bench/gpu/pipeline_smoke.py /tmp/smoke 2>&1 | tee "$out/pipeline_smoke.log" | tail -25
