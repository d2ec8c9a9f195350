#!/usr/bin/env bash
# Everything the GPU machine runs, in one call: carried wheels, gsplat's CUDA build, the GPU tests,
# the render and DiFix benchmarks and the pipeline's GPU code path. Outputs go to ${OUT:-gpu-out}.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$out/device.txt"
start=$(date +%s)
python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension ready')" 2>&1 | tail -3
echo "gsplat build: $(( $(date +%s) - start )) s" | tee -a "$out/device.txt"
python3 -m pytest -m gpu tests/gpu -q -s -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log" | tail -40
python3 bench/bench_render.py --repeats 2 2>&1 | tee "$out/bench_render.md" | tail -20
python3 bench/bench_difix.py --iters 10 --warmup 3 2>&1 | tee "$out/bench_difix.md" | tail -20
python3 bench/bench_difix.py --iters 10 --warmup 3 --precisions bf16 --bf16-weights --channels-last --skip-plain 2>&1 | tee "$out/bench_difix_bf16w.md" | tail -12
python3 bench/gpu_pipeline_smoke.py /tmp/smoke 2>&1 | tee "$out/pipeline_smoke.log" | tail -25
