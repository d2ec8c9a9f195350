#!/usr/bin/env bash
# The DiFix speed measurements of BENCHMARKS.md ("DiFix speed, second round"), on a machine with two
# GPUs (nvidia-h200-x2): independent rows run side by side, one GPU each (figures are per GPU; rows
# compared with each other run on one GPU, one after the other). Each plan fits one 10-minute call.
#   bash bench/gpu/difix_speed.sh layout       NCHW vs channels-last training and inference, profiled
#   bash bench/gpu/difix_speed.sh ddp          the channels-last step on 2 GPUs (DDP), then on one GPU
#                                              (profiled; inductor's cache is warm) and the plain step
#   bash bench/gpu/difix_speed.sh loss-curve   200 steps compiled channels-last against eager NCHW,
#                                              beside the DiFix GPU tests
#   bash bench/gpu/difix_speed.sh accuracy     200-step loss curves alone (compared afterwards with
#                                              bench/loss_curves.py): exact fp32 eager (the
#                                              reference), bf16 eager, compiled NCHW, compiled
#                                              channels-last; beside the compile-vs-eager GPU tests
#   bash bench/gpu/difix_speed.sh ddp-check    the channels-last step on 2 GPUs as one compiled graph
#                                              (the trainer's setting), then on one GPU (inductor's
#                                              cache is warm); the compile-vs-eager GPU test beside
#   bash bench/gpu/difix_speed.sh numerics     what departs the loss curves: the link's all-reduce time,
#                                              then layout alone (eager channels-last vs eager NCHW),
#                                              compiling alone (compiled vs eager channels-last), eager
#                                              NCHW against itself, at full size in bf16 and tiny in
#                                              exact fp32; beside the DiFix GPU tests
# Outputs go to gpu-out/speed, packed into $OUT/speed.tgz after every run (a call cut off at its
# limit still brings back what finished).
set -uo pipefail
out=gpu-out/speed
rm -rf "$out"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$out/device.txt"
difix="python3 bench/bench_difix.py --iters 20 --warmup 5 --precisions bf16"

pack() {  # under a lock: runs side by side finish at any time
    if [ -n "${OUT:-}" ]; then flock gpu-out/pack.lock tar -czf "$OUT/speed.tgz" -C gpu-out speed; fi
}

on_gpu() {  # on_gpu GPU NAME ARGS...: one bench run on one GPU, its table and log under $out
    local gpu=$1 name=$2
    shift 2
    CUDA_VISIBLE_DEVICES=$gpu $difix "$@" --profile-out "$out/prof_$name" >"$out/$name.md" 2>"$out/$name.log"
    echo "== $name (GPU $gpu, exit $?)"
    tail -3 "$out/$name.md"
    pack
}

ddp() {  # ddp NAME ARGS...: the channels-last compiled step on 2 GPUs
    local name=$1
    shift
    python3 -m accelerate.commands.launch --num_processes 2 --multi_gpu --num_machines 1 --mixed_precision no \
        --dynamo_backend no bench/bench_difix.py --iters 20 --warmup 5 --precisions bf16 --rows train --compile \
        --channels-last "$@" >"$out/$name.md" 2>"$out/$name.log"
    echo "== $name (2 GPUs, exit $?)"
    tail -3 "$out/$name.md"
    pack
}

case "${1:-}" in
layout)
    (
        on_gpu 0 train_nchw --rows train --compile --no-channels-last --profile 2
        on_gpu 0 plain --rows plain,infer --profile 1
        on_gpu 0 infer_cl_native --rows infer --bf16-weights --compile --compile-mode reduce-overhead \
            --channels-last --group-norm native --profile 2
    ) &
    (
        on_gpu 1 train_cl --rows train --compile --channels-last --profile 2
        on_gpu 1 infer_cl --rows infer --bf16-weights --compile --compile-mode reduce-overhead \
            --channels-last --profile 2
    ) &
    wait
    ;;
ddp)
    ddp train_cl_ddp
    on_gpu 0 train_cl --rows train --compile --channels-last --profile 2
    on_gpu 0 plain --rows plain
    ;;
loss-curve)
    CUDA_VISIBLE_DEVICES=0 python3 bench/bench_difix.py --precisions bf16 --compile --channels-last --loss-curve 200 \
        >"$out/loss_curve.csv" 2>"$out/loss_curve.log" &
    CUDA_VISIBLE_DEVICES=1 python3 -m pytest -m gpu tests/gpu/test_difix_gpu.py -q -p no:cacheprovider \
        >"$out/gpu_tests.log" 2>&1 &
    wait
    tail -1 "$out/loss_curve.csv"
    tail -3 "$out/gpu_tests.log"
    pack
    ;;
accuracy)
    alone() {  # alone GPU NAME ARGS...: one run's 200-step loss curve, to $out/alone_NAME.csv
        local gpu=$1 name=$2
        shift 2
        CUDA_VISIBLE_DEVICES=$gpu python3 bench/bench_difix.py --loss-curve 200 --reference none "$@" \
            >"$out/alone_$name.csv" 2>"$out/alone_$name.log"
        echo "== $name (GPU $gpu, exit $?)"
        pack
    }
    alone 0 compiled_nchw --precisions bf16 --compile --no-channels-last &
    alone 0 fp32_exact --precisions no --no-tf32 &
    alone 1 compiled_cl --precisions bf16 --compile --channels-last &
    (
        alone 1 eager_bf16 --precisions bf16
        CUDA_VISIBLE_DEVICES=1 python3 -m pytest -m gpu tests/gpu/test_difix_gpu.py -q -p no:cacheprovider -rfE \
            -k "follows_eager or fixer_compiles_once" >"$out/gpu_tests.log" 2>&1
        echo "== GPU tests: $(tail -1 "$out/gpu_tests.log")"
        pack
    ) &
    wait
    ;;
ddp-check)
    (
        CUDA_VISIBLE_DEVICES=1 python3 -m pytest -m gpu tests/gpu/test_difix_gpu.py -q -p no:cacheprovider -rfE \
            -k follows_eager >"$out/gpu_tests.log" 2>&1
        echo "== GPU tests: $(tail -1 "$out/gpu_tests.log")"
        pack
    ) &
    ddp ddp_one_graph --optimize-ddp no_optimization
    wait
    CUDA_VISIBLE_DEVICES=0 timeout 100 $difix --rows train --compile --channels-last >"$out/train_cl.md" 2>"$out/train_cl.log"
    tail -3 "$out/train_cl.md"
    pack
    ;;
numerics)
    nvidia-smi topo -m >"$out/topology.txt" 2>&1
    python3 bench/allreduce_bandwidth.py >"$out/allreduce.txt" 2>"$out/allreduce.log"
    cat "$out/topology.txt" "$out/allreduce.txt"
    pack
    curve() {  # curve GPU NAME ARGS...: one loss-curve comparison, its CSV and log under $out
        local gpu=$1 name=$2
        shift 2
        CUDA_VISIBLE_DEVICES=$gpu python3 bench/bench_difix.py --loss-curve "$@" >"$out/curve_$name.csv" \
            2>"$out/curve_$name.log"
        echo "== $name (GPU $gpu, exit $?): $(tail -1 "$out/curve_$name.csv")"
        pack
    }
    tiny="--preset tiny --resolution 64 --precisions no --no-tf32"
    (
        curve 0 compile_cl 200 --precisions bf16 --compile --channels-last --reference eager
    ) &
    (
        CUDA_VISIBLE_DEVICES=0 python3 -m pytest -m gpu tests/gpu/test_difix_gpu.py -q -p no:cacheprovider \
            >"$out/gpu_tests.log" 2>&1
        echo "== GPU tests: $(tail -1 "$out/gpu_tests.log")"
        pack
    ) &
    (
        curve 1 layout 200 --precisions bf16 --channels-last
        curve 1 repeat 200 --precisions bf16
    ) &
    (
        curve 1 tiny_layout 20 $tiny --channels-last
        curve 1 tiny_compile_cl 20 $tiny --compile --channels-last --reference eager
        curve 1 tiny_compile_nchw 20 $tiny --compile --no-channels-last
        curve 1 tiny_repeat 20 $tiny
    ) &
    wait
    ;;
*)
    echo "usage: $0 layout|ddp|loss-curve|numerics|accuracy|ddp-check" >&2
    exit 2
    ;;
esac
