#!/usr/bin/env bash
# The whole study through Snakemake at full size on one GPU machine:
# synthetic Hi4D-layout scenes at 940x1280, gsplat renders, an sd-turbo DiFix (random weights in the
# official layout, built there) tuned for a few hundred steps, every arm evaluated.
#
#   bash bench/gpu/study_run.sh run [OPTIONS]    start (detached), wait --wait s, collect into $OUT
#   bash bench/gpu/study_run.sh start [OPTIONS]  start detached (setsid: outlives the device command)
#   bash bench/gpu/study_run.sh wait SECONDS     wait for the end (progress every 15 s), at most SECONDS
#   bash bench/gpu/study_run.sh collect          summary, logs, benchmarks and tables into $OUT
#   bash bench/gpu/study_run.sh status
#   bash bench/gpu/study_run.sh pair [OPTIONS]   start (detached) the study twice on this machine: the GPU
#                          metric test first (a broken GPU path would fail every evaluation job), the
#                          cold run (RUN/cold, caches empty), the warm run (RUN/warm: fresh results,
#                          the cold run's caches), then the `gpu_slow` tests alone (suite.sh slow,
#                          gsplat's build included); `wait` as for one run, `collect` gathers both
#                          and their comparison (study.py compare) into $OUT. --cache-dir defaults to
#                          RUN/cache, so --fresh makes the cold run cold
#
# Options (defaults: what fits one ~10-minute device call, see BENCHMARKS.md / the lead's notes):
#   --frames N (20)        frames a scene (data.synthetic.num_frames, materialize.max_frames)
#   --steps N (300)        tuning steps
#   --tune-compile true|false (false)  tuning.compile: a cold compile of the training step and of
#                          the validation's forward takes minutes (BENCHMARKS.md), more than 300
#                          eager steps; true is the full recipe
#   --infer-compile auto|true|false (false)        difix.inference.compile
#   --fit-steps N (300)    --gaussians N (13780)   render recipe (gsplat)
#   --long-side N|null (512)  processing size (difix.long_side)
#   --eval-samples N|null (48)  triplets.max_samples: caps the train AND the test triplets of each
#                          version (evaluate_difix runs its 3 arms over the test split in one job,
#                          after tuning); null: every view (140 test, 280 train at 20 frames)
#   --gpu-jobs N (5)       Snakemake's gpu resource: jobs sharing the GPU at once; at --long-side
#                          1024 on an 80 GB card at most 2 (tuning 47.7 GiB + two DiFix evaluation
#                          jobs ran out of memory, BENCHMARKS.md 2026-12-07)
#   --tune-slots N (1)     tuning jobs (tune_difix, tune_control) at once: at long side 1024 one
#                          takes ~48 GiB (eager), two would not fit beside the evaluation jobs
#   --wait S (560)         for `run`: seconds to wait before collecting (the run goes on after)
#   --run-dir DIR (gpu-out/study)   --fresh: remove an earlier run there first
#   --cache-dir DIR (the run folder)  the compile caches: the study compile cache
#                          (difix.compile_cache_dir = DIR/compile_cache), the inductor and Triton
#                          caches and gsplat's CUDA build; a second run with another --run-dir
#                          (results fresh) and the same --cache-dir starts warm. --fresh leaves it
#   --local-test           tiny CPU version of the same path (120x160, 2 frames, torch renders,
#                          tiny preset, no wheels, no gsplat build) for checking the script
#
# Host memory: bench/gpu/pss_sampler.py samples each job's summed PSS every 2 s
# (logs/host_memory.tsv); the summary puts it beside Snakemake's summed RSS, the job's mem_mb
# request and its GPU peak.
#
# Everything runs in a copy of the repository under the run folder (the device re-sends the
# working tree on each call; gpu-out/ is git-ignored, so it stays), TORCH_HOME too; the gsplat build,
# the inductor and Triton caches and the wheels' site-packages are in --cache-dir (default: the run
# folder). Wheels come from .whl/ (carried). Outputs: $OUT/summary.md,
# deltas.md, driver.log, gpu_study_logs.tar.gz (benchmarks, job and Snakemake logs, tables,
# overlays, GPU monitor), gpu_study_figures.tar.gz (report images, when under 16 MiB).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-python3}
COMMAND=${1:-help}
shift || true

RUN=$HERE/gpu-out/study  # git-ignored; on the disk (/tmp may be memory), kept between device calls
CACHE=""  # empty: the run folder
WHEELS=$HERE/.whl
FRESH=0
WAIT=560
declare -A OPT=(
    [frames]=20 [steps]=300 [tune-compile]=false [infer-compile]=false [fit-steps]=300 [gaussians]=13780
    [long-side]=512 [eval-samples]=48 [gpu-jobs]=5 [tune-slots]=1 [local-test]=0
)

parse_options() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --run-dir) RUN=$(realpath -m "$2"); shift 2 ;;
            --cache-dir) CACHE=$(realpath -m "$2"); shift 2 ;;
            --fresh) FRESH=1; shift ;;
            --wait) WAIT=$2; shift 2 ;;
            --local-test) OPT[local-test]=1; shift ;;
            --wheels) WHEELS=$2; shift 2 ;;
            --frames|--steps|--tune-compile|--infer-compile|--fit-steps|--gaussians|--long-side|--eval-samples|--gpu-jobs|--tune-slots)
                OPT[${1#--}]=$2; shift 2 ;;
            *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
        esac
    done
}

now() { date +%s.%N; }
log() { echo "[$(date +%H:%M:%S)] $*"; }

# stage NAME CMD...: run CMD with its output in logs/NAME.log; times and exit status in stages.tsv
stage() {
    local name=$1 t0 rc
    shift
    t0=$(now)
    log "start $name"
    "$@" >"$RUN/logs/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$t0" "$(now)" "$rc" >>"$RUN/stages.tsv"
    log "end $name (exit $rc, $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s)"
    return $rc
}

snakemake_progress() {
    local latest  # a pair's runs are in RUN/cold and RUN/warm
    latest=$(ls -t "$RUN"/repo/.snakemake/log/*.snakemake.log "$RUN"/*/repo/.snakemake/log/*.snakemake.log 2>/dev/null | head -1)
    [ -n "$latest" ] && grep -Eo '[0-9]+ of [0-9]+ steps \([0-9]+%\) done' "$latest" | tail -1
}

# ------------------------------------------------------------------------------------ the run itself

main_run() {
    cd "$RUN" || exit 1
    set -a
    # shellcheck disable=SC1091
    . "$RUN/options.env"
    set +a
    local W=$RUN/repo local_test=${OPT_local_test}
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
    local cache=${CACHE:-$RUN}
    mkdir -p "$cache"
    export TORCH_HOME=$RUN/torch_home TORCH_EXTENSIONS_DIR=$cache/torch_extensions
    export TORCHINDUCTOR_CACHE_DIR=$cache/inductor_cache TRITON_CACHE_DIR=$cache/triton_cache
    export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
    # never NVLink multicast on these machines (KINDS.md)
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
    # the wheels' site-packages beside the caches: gsplat's JIT build is keyed by its sources' absolute
    # paths, so a site folder inside each run folder rebuilt it (75 s) in a run with warm caches
    local site=$cache/site
    mkdir -p "$site" "$RUN/bin" "$TORCH_HOME"
    [ "$site" = "$RUN/site" ] || ln -sfn "$site" "$RUN/site"  # collect's summary reads it there
    export PYTHONPATH=$site:$W${PYTHONPATH:+:$PYTHONPATH}
    local cores
    cores=$(nproc)

    log "run folder $RUN, $cores cores, options: $(tr '\n' ' ' <"$RUN/options.env")"
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
        "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, 'CUDA', torch.version.cuda, '| cuda available', torch.cuda.is_available())"
        echo "cores: $cores; memory: $(free -g | awk '/^Mem:/{print $2}') GiB; disk free: $(df -h "$RUN" | awk 'NR==2{print $4}')"
        echo "options: $(tr '\n' ' ' <"$RUN/options.env")"
    } >"$RUN/environment.txt" 2>&1
    cat "$RUN/environment.txt"

    if [ "$local_test" != 1 ]; then
        # typing_extensions travels for pydantic (>= 4.16, through Snakemake's sqlmodel): installed
        # only where the machine's own is older, so that nothing else sees an older one
        local wheels=()
        for wheel in "$WHEELS"/*.whl; do
            case "$(basename "$wheel")" in
                typing_extensions-*)
                    [ "$("$PY" - "$(basename "$wheel")" <<'PYCODE'
import importlib.metadata, sys
from packaging.version import Version
try:
    own = Version(importlib.metadata.version("typing_extensions"))
except importlib.metadata.PackageNotFoundError:
    own = None
print("skip" if own is not None and own >= Version(sys.argv[1].split("-")[1]) else "install")
PYCODE
)" = skip ] && continue ;;
            esac
            wheels+=("$wheel")
        done
        # a site that holds these very wheels is kept as it is: reinstalling renews the files' times,
        # and ninja then rebuilds gsplat's extension from its "newer" sources (75 s in a warm run)
        local held
        held=$(cd "$WHEELS" && for w in "${wheels[@]}"; do basename "$w"; done | sort | xargs sha256sum)
        if [ -f "$site/.wheels" ] && [ "$(cat "$site/.wheels")" = "$held" ]; then
            log "wheels: $site already holds these ${#wheels[@]} wheels, none installed"
        else
            rm -f "$site/.wheels"
            stage install_wheels "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target "$site" "${wheels[@]}" || return 1
            printf '%s\n' "$held" >"$site/.wheels"
        fi
    fi
    stage import_check "$PY" -c "import snakemake, diffusers, lpips, jsonschema, sqlmodel, yaml, accelerate, peft; \
print('snakemake', snakemake.__version__, '| diffusers', diffusers.__version__)" || return 1
    # `shell:` rules call `python`: the interpreter that has torch, through a wrapper (a symlink
    # would lose the virtual environment)
    if ! python -c "import torch" >/dev/null 2>&1; then
        printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v "$PY")" >"$RUN/bin/python"
        chmod +x "$RUN/bin/python"
        export PATH=$RUN/bin:$PATH
    fi

    local preset=sd-turbo backend=gsplat
    [ "$local_test" = 1 ] && preset=tiny backend=torch
    # the run's config first (seconds, nothing started yet)
    local overlay_args=(--base "$RUN/difix_base" --preset "$preset" --frames "$OPT_frames" --steps "$OPT_steps"
        --tune-compile "$OPT_tune_compile" --infer-compile "$OPT_infer_compile" --fit-steps "$OPT_fit_steps"
        --gaussians "$OPT_gaussians" --long-side "$OPT_long_side" --eval-samples "$OPT_eval_samples"
        --render-backend "$backend")
    [ -n "$CACHE" ] && overlay_args+=(--compile-cache-dir "$CACHE/compile_cache")
    if [ "$local_test" = 1 ]; then
        overlay_args+=(--width 120 --height 160 --mixed-precision no --loader-workers 0)
    fi
    cd "$W" || return 1
    stage overlays bash -c '"$0" bench/gpu/study.py overlay "$1/overlay_data.yaml" --data-only "${@:2}" && \
        "$0" bench/gpu/study.py overlay "$1/overlay.yaml" "${@:2}"' "$PY" "$RUN" "${overlay_args[@]}" || return 1

    local monitor="" sampler
    "$PY" "$W/bench/gpu/pss_sampler.py" "$RUN/logs/host_memory.tsv" --every 2 >"$RUN/logs/pss_sampler.log" 2>&1 &
    sampler=$!
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -l 2 \
            >"$RUN/logs/gpu_monitor.csv" 2>&1 &
        monitor=$!
    fi

    # in the background, while the data stage runs: gsplat's CUDA build (renders must not start
    # before it is done: a second importer would remove the half-built folder), the random base
    # model, the random LPIPS/VGG stand-ins
    local gsplat_pid="" base_pid standins_pid
    if [ "$local_test" != 1 ]; then
        stage gsplat_build "$PY" -c "from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat CUDA extension unavailable'; print('gsplat CUDA extension ready')" &
        gsplat_pid=$!
    fi
    stage build_base "$PY" "$W/bench/gpu/study.py" base "$RUN/difix_base" --preset "$preset" &
    base_pid=$!
    stage standins "$PY" "$W/bench/gpu/study.py" standins "$TORCH_HOME" &
    standins_pid=$!

    local scenes versions
    scenes=$("$PY" -c "import yaml; print(' '.join(yaml.safe_load(open('config/config.yaml'))['data']['scenes']))")
    versions=$("$PY" -c "import yaml; print(' '.join(yaml.safe_load(open('config/config.yaml'))['versions']))")
    local smk=("$PY" -m snakemake --snakefile Snakefile --cores "$cores" --rerun-incomplete --keep-going
        --show-failed-logs --benchmark-extended --printshellcmds)
    local targets=() prioritize=()
    for s in $scenes; do targets+=("results/scenes/$s"); done
    for v in $versions; do prioritize+=("results/$v/difix/model.pkl"); done

    stage snakemake_data "${smk[@]}" "${targets[@]}" --resources mem_mb=100000 \
        --configfile bench/gpu/fullsize.yaml "$RUN/overlay_data.yaml"
    local rc_data=$?

    local rc_bg=0
    for pid in $gsplat_pid $base_pid $standins_pid; do
        wait "$pid" || rc_bg=1
    done
    if [ $rc_data -ne 0 ] || [ $rc_bg -ne 0 ]; then
        log "data stage or preparation failed (see logs/); not starting the study"
        [ -n "$monitor" ] && kill "$monitor" 2>/dev/null
        kill "$sampler" 2>/dev/null
        return 1
    fi

    # the study: renders of the tuning scenes first (--prioritize the tuned models' inputs)
    stage snakemake_study "${smk[@]}" --prioritize "${prioritize[@]}" \
        --resources gpu="$OPT_gpu_jobs" mem_mb=110000 tune_slot="$OPT_tune_slots" \
        --set-threads tune_difix=4 tune_control=4 --set-resources tune_difix:tune_slot=1 tune_control:tune_slot=1 \
        --configfile bench/gpu/fullsize.yaml "$RUN/overlay.yaml"
    local rc_study=$?
    [ -n "$monitor" ] && kill "$monitor" 2>/dev/null
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    return $rc_study
}

# ------------------------------------------------------------------------------------ commands

# an empty run folder (refused while a run goes on there, or when one is left without --fresh)
new_run_folder() {
    if [ -f "$RUN/driver.pid" ] && kill -0 "$(cat "$RUN/driver.pid")" 2>/dev/null; then
        echo "a run is going on in $RUN (pid $(cat "$RUN/driver.pid")): use wait / collect" >&2
        return 1
    fi
    if [ -e "$RUN" ]; then
        if [ $FRESH -ne 1 ]; then
            echo "$RUN exists (an earlier run): pass --fresh to remove it, or --run-dir elsewhere" >&2
            return 1
        fi
        rm -rf "$RUN"
    fi
    mkdir -p "$RUN/logs" "$RUN/repo"
}

start() {
    new_run_folder || return 1
    if [ "${OPT[local-test]}" = 1 ]; then
        OPT[frames]=2 OPT[steps]=6 OPT[tune-compile]=false OPT[infer-compile]=false OPT[fit-steps]=20
        OPT[gaussians]=400 OPT[long-side]=null OPT[gpu-jobs]=1 OPT[eval-samples]=8
    fi
    : >"$RUN/options.env"
    for key in "${!OPT[@]}"; do echo "OPT_${key//-/_}=${OPT[$key]}" >>"$RUN/options.env"; done
    # a copy of the code: the device re-sends the working tree on each call
    cp -a "$HERE"/Snakefile "$HERE"/pyproject.toml "$HERE"/config "$HERE"/workflow "$HERE"/hi4dfix \
        "$HERE"/bench "$RUN/repo/"
    # the detached driver reads its own copy: bash reads a script as it goes, and the device may
    # rewrite the working tree's files on the next call
    setsid bash "$RUN/repo/bench/gpu/study_run.sh" _main --run-dir "$RUN" --wheels "$WHEELS" ${CACHE:+--cache-dir "$CACHE"} \
        </dev/null >"$RUN/logs/driver.log" 2>&1 &
    echo $! >"$RUN/driver.pid"
    echo "started: pid $(cat "$RUN/driver.pid"), run folder $RUN, caches ${CACHE:-$RUN}, log $RUN/logs/driver.log"
}

wait_for_end() {
    local limit=${1:-560} t0
    t0=$(date +%s)
    local polls=0
    while [ ! -f "$RUN/exit_code" ]; do
        if [ $(( $(date +%s) - t0 )) -ge "$limit" ]; then
            echo "still running after ${limit} s: $(snakemake_progress)"
            return 1
        fi
        sleep 5
        polls=$((polls + 1))
        if [ $((polls % 6)) -eq 0 ]; then
            echo "[$(date +%H:%M:%S)] last: $(tail -1 "$RUN/logs/driver.log" 2>/dev/null | cut -c12-100) | $(snakemake_progress)"
        fi
    done
    echo "finished with exit code $(cat "$RUN/exit_code")"
}

collect() {
    local out=${OUT:-$RUN/out}
    mkdir -p "$out"
    PYTHONPATH=$RUN/site:$RUN/repo "$PY" "$RUN/repo/bench/gpu/study.py" summary "$RUN/repo" "$RUN" >/dev/null 2>"$RUN/logs/summary.err" \
        || echo "summary failed: $(tail -3 "$RUN/logs/summary.err")"
    cp "$RUN/logs/driver.log" "$out/driver.log" 2>/dev/null
    [ -f "$RUN/summary.md" ] && cp "$RUN/summary.md" "$out/summary.md"
    for table in "$RUN"/repo/results/*/deltas.md; do
        [ -f "$table" ] && cp "$table" "$out/$(basename "$(dirname "$table")")_deltas.md"
    done
    (
        cd "$RUN" || exit 1
        ls stages.tsv environment.txt options.env overlay_data.yaml overlay.yaml summary.md exit_code 2>/dev/null
        find logs difix_base -maxdepth 1 -type f 2>/dev/null
        find repo/results/benchmarks repo/results/logs repo/.snakemake/log -type f 2>/dev/null
        ls repo/results/versions.csv repo/results/*/deltas.* repo/results/*/triplets.json repo/results/*/difix/*.csv \
            repo/results/*/difix/work/*/*.csv repo/results/*/difix/work/*/summary.json repo/results/*/nvs/*/*.csv \
            repo/results/renders/*/*/manifest.json repo/results/renders/*/*.quality.csv repo/results/*/report/card.html repo/results/scenes/*/scene.json 2>/dev/null
    ) >"$RUN/collect.list"
    tar czf "$out/gpu_study_logs.tar.gz" -C "$RUN" -T "$RUN/collect.list"
    (cd "$RUN" && find repo/results/*/report -name '*.png' 2>/dev/null) >"$RUN/figures.list"
    if [ -s "$RUN/figures.list" ]; then
        tar czf "$out/gpu_study_figures.tar.gz" -C "$RUN" -T "$RUN/figures.list"
        if [ "$(stat -c %s "$out/gpu_study_figures.tar.gz")" -gt $((15 * 1024 * 1024)) ]; then
            grep -v before_after "$RUN/figures.list" >"$RUN/figures_small.list"
            tar czf "$out/gpu_study_figures.tar.gz" -C "$RUN" -T "$RUN/figures_small.list"
        fi
    fi
    ls -la "$out"
    [ -f "$RUN/summary.md" ] && cat "$RUN/summary.md"
}

# ------------------------------------------------------------------------------------ cold and warm

# the options of one run, for the pair's two (what parse_options read; --local-test sets its own)
run_options() {
    local key
    if [ "${OPT[local-test]}" = 1 ]; then echo --local-test; return; fi
    for key in "${!OPT[@]}"; do
        [ "$key" = local-test ] || printf -- '--%s\n%s\n' "$key" "${OPT[$key]}"
    done
}

start_pair() {
    new_run_folder || return 1
    CACHE=${CACHE:-$RUN/cache}
    run_options >"$RUN/run_options"
    # a copy of the code, the tests and the wheels: the device re-sends the working tree on each call
    cp -a "$HERE"/Snakefile "$HERE"/pyproject.toml "$HERE"/config "$HERE"/workflow "$HERE"/hi4dfix \
        "$HERE"/bench "$HERE"/tests "$RUN/repo/"
    if [ "${OPT[local-test]}" != 1 ]; then
        mkdir -p "$RUN/repo/.whl" && cp "$WHEELS"/*.whl "$RUN/repo/.whl/" || return 1
    fi
    setsid bash "$RUN/repo/bench/gpu/study_run.sh" _pair --run-dir "$RUN" --wheels "$WHEELS" --cache-dir "$CACHE" \
        </dev/null >"$RUN/logs/driver.log" 2>&1 &
    echo $! >"$RUN/driver.pid"
    echo "started the pair: pid $(cat "$RUN/driver.pid"), run folder $RUN, caches $CACHE, log $RUN/logs/driver.log"
}

# one of the pair's runs, to its end: its exit status
run_one() {
    local name=$1 options=()
    mapfile -t options <"$RUN/run_options"
    bash "$RUN/repo/bench/gpu/study_run.sh" start --fresh --run-dir "$RUN/$name" --cache-dir "$CACHE" \
        --wheels "$WHEELS" "${options[@]}" || return 1
    until [ -f "$RUN/$name/exit_code" ]; do sleep 5; done
    return "$(cat "$RUN/$name/exit_code")"
}

pair_main() {
    cd "$RUN/repo" || return 1
    local local_test=0 rc
    grep -qx -- --local-test "$RUN/run_options" && local_test=1
    log "pair in $RUN, caches $CACHE, run options: $(tr '\n' ' ' <"$RUN/run_options")"
    if [ $local_test != 1 ]; then
        # the evaluation jobs compute SSIM, HaarPSI and GMSD on the GPU: checked before 20 minutes rest on it
        stage gpu_metric_test bash -c 'python3 -m pip install -q --no-index --no-deps --no-compile --target "$1/test_site" \
            .whl/*.whl && PYTHONPATH="$1/test_site:$PWD" python3 -m pytest -m gpu tests/test_metrics.py \
            -p no:cacheprovider -q -rfE' _ "$RUN" || return 1
    fi
    stage cold run_one cold || return 1
    stage warm run_one warm
    rc=$?
    "$PY" bench/gpu/study.py compare "$RUN/cold" "$RUN/warm" --out "$RUN/compare.md" >/dev/null 2>"$RUN/logs/compare.err"
    if [ $local_test != 1 ]; then
        # alone, as on a bare machine: its own site folder and gsplat build
        stage gpu_slow env OUT="$RUN/slow" bash bench/gpu/suite.sh slow || rc=1
    fi
    return $rc
}

collect_pair() {
    local out=${OUT:-$RUN/out} name
    mkdir -p "$out"
    for name in cold warm; do
        [ -d "$RUN/$name" ] && OUT=$out/$name bash "$RUN/repo/bench/gpu/study_run.sh" collect --run-dir "$RUN/$name" >/dev/null
    done
    if [ -f "$RUN/cold/stages.tsv" ] && [ -f "$RUN/warm/stages.tsv" ]; then
        "$PY" "$RUN/repo/bench/gpu/study.py" compare "$RUN/cold" "$RUN/warm" --out "$out/compare.md" \
            2>"$RUN/logs/compare.err" || echo "compare failed: $(tail -3 "$RUN/logs/compare.err")"
    fi
    cp "$RUN/stages.tsv" "$RUN"/logs/*.log "$out/" 2>/dev/null
    cp "$RUN"/slow/*.log "$RUN"/slow/*.txt "$out/" 2>/dev/null  # suite.sh slow's test log and device
    ls -la "$out" "$out"/cold "$out"/warm 2>/dev/null
    cat "$RUN/stages.tsv" 2>/dev/null
    for name in cold warm; do
        [ -f "$out/$name/summary.md" ] && echo "== $name: $(grep -c '^| ' "$out/$name/summary.md") table rows in summary.md"
    done
    tail -5 "$out/gpu_slow.log" 2>/dev/null
}

main() {
    case "$COMMAND" in
        _main)
            parse_options "$@"
            echo $$ >"$RUN/driver.pid"
            main_run
            local rc=$?
            "$PY" "$RUN/repo/bench/gpu/study.py" summary "$RUN/repo" "$RUN" >/dev/null 2>>"$RUN/logs/driver.log"
            echo $rc >"$RUN/exit_code"
            log "done, exit $rc"
            ;;
        _pair)
            parse_options "$@"
            echo $$ >"$RUN/driver.pid"
            pair_main
            local rc=$?
            echo $rc >"$RUN/exit_code"
            log "done, exit $rc"
            ;;
        pair) parse_options "$@"; start_pair ;;
        start) parse_options "$@"; start ;;
        run)
            parse_options "$@"
            start || return 1
            wait_for_end "$WAIT"
            collect
            ;;
        wait) parse_options "${@:2}"; wait_for_end "${1:-560}" ;;
        collect)
            parse_options "$@"
            if [ -f "$RUN/run_options" ]; then collect_pair; else collect; fi
            ;;
        status)
            parse_options "$@"
            echo "run folder $RUN: $( [ -f "$RUN/exit_code" ] && echo "finished, exit $(cat "$RUN/exit_code")" || echo running)"
            tail -5 "$RUN/logs/driver.log" 2>/dev/null
            snakemake_progress
            ;;
        *) sed -n '2,54p' "$0"; return 2 ;;
    esac
}

# one line, read whole before it runs: a later change to this file cannot reach a running shell
main "$@"; exit $?
