"""Benchmark Difix training and inference against a plain diffusers step.

    python bench/bench_difix.py                              # full size, CUDA, 512x512
    python bench/bench_difix.py --preset tiny --device cpu --resolution 64 --iters 2
    python bench/bench_difix.py --precisions bf16 --compile --channels-last --loss-curve 200
    python bench/bench_difix.py --precisions bf16 --rows train,infer --bf16-weights --compile \
        --compile-cache CACHE --outputs OUT.pt    # a second process with the same CACHE: warm start

Random weights (no download): the numbers are about speed and memory, not quality.
Rows:
* ``difix train``: one optimisation step of the Difix model (image + reference view,
  batch ``--batch-size``), L2 loss (LPIPS / Gram backbones are not downloadable here),
  AdamW on the UNet, VAE LoRA and skip convolutions; weights fp32, ``bf16`` / ``fp16``
  run under autocast (fp16 with gradient scaling);
* ``plain train``: VAE encode (frozen), UNet, VAE decode, L2, AdamW on UNet + decoder, for
  the same number of images, with the plain diffusers modules (no skips, LoRA or
  multi-view attention);
* ``difix infer``: latency of fixing one image with its reference (batch 1, 2 views through
  the UNet; only the fixed image decoded, as ``fix_images`` does, unless ``--all-views``).
``--compile`` compiles as the pipeline does: training with ``TrainConfig.compile_mode``, inference
with ``difix.inference``'s mode (both ``reduce-overhead``: CUDA graphs) unless ``--compile-mode``.
``--compile-cache DIR``: the study compile cache (``hi4dfix.difix.compile_cache``) with node-local
live caches, as the pipeline's jobs use it: loaded before the first call, saved after it.
``--outputs FILE``: the first call's output (inference) and every loss (training), to compare runs.
Prints a markdown table; ``--loss-curve N`` instead prints the losses of N steps on one fixed
batch, eager NCHW (``--reference eager``: eager in the tested layout) against the options given,
and their largest relative difference; ``--reference none``: the tested run's losses alone, for
``bench/loss_curves.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hi4dfix.difix.compile_cache import CompileKey, open_study_cache, use_node_local_caches  # noqa: E402
from hi4dfix.difix.config import DifixConfig  # noqa: E402
from hi4dfix.difix.infer import (
    InferenceConfig,  # noqa: E402
    prepare_for_inference,  # noqa: E402
)
from hi4dfix.difix.memory_format import uses_channels_last  # noqa: E402
from hi4dfix.difix.model import build_random_difix, build_unet, build_vae  # noqa: E402
from hi4dfix.difix.optim import clip_and_step  # noqa: E402
from hi4dfix.difix.train import release_accelerate_state  # noqa: E402
from hi4dfix.difix.train_config import TrainConfig  # noqa: E402
from hi4dfix.difix.train_setup import make_optimizer, prepare_model_for_training, set_tf32  # noqa: E402
from loss_curves import departures  # noqa: E402
from record import append_markdown  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"


def autocast(device: torch.device, precision: str):
    if precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def timed(
    fn,
    iters: int,
    warmup: int,
    device: torch.device,
    profile_calls: int = 0,
    profile_out: Path | None = None,
    name: str = "",
    after_first=None,
) -> tuple[float, float]:
    """(seconds of the first call, which includes any compilation; mean seconds per call
    after ``warmup`` untimed calls).  ``profile_calls`` > 0: then trace that many calls and
    print the top GPU kernels (the whole table to ``profile_out/<name>.txt`` if given).
    ``after_first``: called with the first call's result (untimed)."""
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    first = time.perf_counter() - start
    print(f"first call: {first:.1f} s", file=sys.stderr, flush=True)
    if after_first is not None:
        after_first(result)
    with timing_lock():
        reset_peak(device)  # steady-state peak: without compilation and cuDNN autotuning workspaces
        for _ in range(warmup):
            fn()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        synchronize(device)
        seconds = (time.perf_counter() - start) / iters
        if profile_calls:
            print_profile(fn, profile_calls, device, profile_out / f"{name}.txt" if profile_out else None)
    return first, seconds


TIMING_LOCK: Path | None = None  # --timing-lock


@contextlib.contextmanager
def timing_lock():
    """With --timing-lock FILE: processes compiling side by side time their steps one at a time."""
    if TIMING_LOCK is None:
        yield
        return
    import fcntl

    with open(TIMING_LOCK, "a") as fh:
        t0 = time.perf_counter()
        fcntl.flock(fh, fcntl.LOCK_EX)
        print(f"timing lock after {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def print_profile(fn, calls: int, device: torch.device, table_path: Path | None = None) -> None:
    """GPU kernel time per call and the kernels that take most of it (to stderr; the top 200
    to ``table_path`` if given)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=table_path is not None) as prof:
        for _ in range(calls):
            fn()
        synchronize(device)
    table = prof.key_averages()
    # Kernels only: operators and annotations (an inductor graph's "## Call CompiledFxGraph",
    # Optimizer.step) carry their kernels' time too, and CUPTI's "Command Buffer Full" marker
    # has a duration.
    kernels = [e for e in table if e.device_type == torch.autograd.DeviceType.CUDA and e.key != "Command Buffer Full"]
    busy_ms = sum(e.self_device_time_total for e in kernels) / calls / 1000
    print(f"\nprofile: {busy_ms:.1f} ms of GPU kernels per call", file=sys.stderr)
    by_kind: dict[str, float] = {}
    for event in kernels:
        kind = kernel_kind(event.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + event.self_device_time_total / calls / 1000
    print(
        "  " + ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v >= 0.05),
        file=sys.stderr,
    )
    print(table.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=60), file=sys.stderr)
    if table_path is not None:
        table_path.parent.mkdir(parents=True, exist_ok=True)
        summary = ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]))
        table_path.write_text(
            f"{busy_ms:.2f} ms of GPU kernels per call; {summary}\n"
            + table.table(sort_by="self_device_time_total", row_limit=200, max_name_column_width=120)
            + "\n\ncopies by input shape:\n"
            + copies_by_shape(prof)
        )


def copies_by_shape(prof) -> str:
    """The eager copies of the traced calls, by input shape (what made them shows in the shapes)."""
    rows = [
        e
        for e in prof.key_averages(group_by_input_shape=True)
        if e.key in ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous")
    ]
    rows.sort(key=lambda e: -e.device_time_total)
    return "\n".join(f"{e.key} x{e.count} {e.device_time_total / 1000:.3f} ms {e.input_shapes}" for e in rows[:40])


KERNEL_KINDS = (  # (kind, substrings of kernel names), first match wins
    ("fused triton", ("triton_poi", "triton_red", "triton_per")),  # inductor's names mention fused ops
    ("attention", ("flash", "fmha", "attention")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("layout copy", ("nchwtonhwc", "nhwctonchw", "transpose")),  # before "cudnn": cuDNN launches these
    ("convolution", ("conv", "fprop", "dgrad", "wgrad", "implicit", "cudnn")),
    ("matmul", ("gemm", "cutlass", "triton_tem", "matmul", "nvjet")),  # nvjet: cuBLAS's Hopper kernels
)


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    for kind, needles in KERNEL_KINDS:
        if any(n in lowered for n in needles):
            return kind
    return "other"


def bench_difix_train(
    args, device: torch.device, precision: str, losses: list[float] | None = None, steps: int = 0
) -> tuple[float, float, str]:
    """One step as the trainer takes it: its model setup (``prepare_model_for_training``) and
    optimizer (``make_optimizer``) under an ``Accelerator`` (autocast, fp16 gradient scaling,
    DDP when started by ``accelerate launch --num_processes N``)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    ddp_kwargs = DistributedDataParallelKwargs(bucket_cap_mb=args.ddp_bucket_mb)
    accelerator = Accelerator(mixed_precision=precision, cpu=device.type == "cpu", kwargs_handlers=[ddp_kwargs])
    device = accelerator.device
    torch.manual_seed(0)
    with device:
        model = build_random_difix(DifixConfig(preset=args.preset))
    cfg = TrainConfig(
        triplets="-",
        output="-",
        output_dir="-",
        lr=1e-5,
        mixed_precision=precision,
        compile=args.compile,
        gradient_checkpointing=args.gradient_checkpointing,
        cudnn_benchmark=args.cudnn_benchmark,
        compile_mode=args.compile_mode or TrainConfig.compile_mode,
        channels_last=args.channels_last,
    )
    prepare_model_for_training(model, cfg, device)
    if args.optimize_ddp:  # after the trainer's choice; compilation waits for the first step
        torch._dynamo.config.optimize_ddp = args.optimize_ddp
    params = [p for _, p in model.trainable_named_parameters()]
    optimizer = make_optimizer(params, cfg, device)
    ddp_model, optimizer = accelerator.prepare(model, optimizer)
    h, w = args.resolution
    views = torch.rand(args.batch_size, 2, 3, h, w, device=device) * 2 - 1
    target = torch.rand_like(views)
    emb = model.encode_prompts(["remove degradation"] * args.batch_size)
    cache = bench_compile_cache(
        args,
        "train",
        model,
        device,
        cfg.compile_mode,
        precision=precision,
        views=2,
        allow_tf32=not args.no_tf32,
        channels_last=uses_channels_last(model),
        gradient_checkpointing=args.gradient_checkpointing,
    )
    # --outputs keeps the losses on the device: reading each (float) synchronises every step, the
    # likely cause of the 102.3 ms a compiled step measured with it against 93.5 ms before (H200)
    recorded = [] if losses is None and args.outputs else None

    def step():
        torch.compiler.cudagraph_mark_step_begin()
        with accelerator.autocast():
            loss = torch.nn.functional.mse_loss(ddp_model(views, emb).float(), target)
        accelerator.backward(loss)
        if losses is not None:
            losses.append(float(loss))
        elif recorded is not None:
            recorded.append(loss.detach().clone())
        clip_and_step(accelerator, optimizer, params, 1.0, fused_clip=args.clip == "fused")
        optimizer.zero_grad(set_to_none=True)

    try:
        if losses is not None:
            for _ in range(steps):
                step()
            return 0.0, 0.0, peak_gib(device)
        first, seconds = timed(
            step,
            args.iters,
            args.warmup,
            device,
            args.profile,
            args.profile_out,
            "train",
            after_first=lambda _: cache.save() if cache else None,
        )
        assert all(p.dtype == torch.float32 for p in params), "trainable weights must stay fp32"
        if recorded is not None:
            OUTPUTS["train_losses"] = torch.stack(recorded).double().cpu()
        return first, seconds, peak_gib(device)
    finally:
        release_accelerate_state()


def loss_curve(args, device: torch.device, steps: int, eager: bool) -> list[float]:
    """The L2 losses of ``steps`` training steps on one fixed batch, set up as the trainer does;
    ``eager``: not compiled, and NCHW unless ``--reference eager`` (the tested layout)."""
    import copy

    eager_args = copy.copy(args)
    if eager:
        eager_args.compile = False
        if args.reference == "eager-nchw":
            eager_args.channels_last = False
    losses: list[float] = []
    bench_difix_train(eager_args, device, args.precisions.split(",")[0], losses=losses, steps=steps)
    return losses


def compare_loss_curves(args, device: torch.device) -> int:
    if args.reference == "none":  # the tested run alone, compared with other runs' by loss_curves.py
        tested = loss_curve(args, device, args.loss_curve, eager=False)
        print("step,tested")
        print("\n".join(f"{i},{loss:.6g}" for i, loss in enumerate(tested, start=1)))
        return 0
    eager = loss_curve(args, device, args.loss_curve, eager=True)
    tested = loss_curve(args, device, args.loss_curve, eager=False)
    rel = [abs(d) for d in departures(eager, tested)]
    print(f"step,{args.reference},tested,relative_difference")
    for i, (a, b, r) in enumerate(zip(eager, tested, rel), start=1):
        print(f"{i},{a:.6g},{b:.6g},{r:.3g}")
    print(
        f"largest relative difference over {len(rel)} steps: {max(rel):.3g} "
        f"(first loss {eager[0]:.5g}, last {eager[-1]:.5g})"
    )
    return 0


def optimizer_update(loss, params, optimizer, scaler) -> None:
    """Backward, clip at 1.0 and step; through the gradient scaler for fp16, as training does."""
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def bench_plain_train(args, device: torch.device, precision: str) -> tuple[float, float, str]:
    torch.manual_seed(0)
    arch = DifixConfig(preset=args.preset).architecture
    with device:
        unet, vae = build_unet(arch.unet), build_vae(arch.vae)
        text = torch.randn(args.batch_size * 2, 77, arch.unet["cross_attention_dim"])
    if args.channels_last:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    vae.encoder.requires_grad_(False)
    params = list(unet.parameters()) + list(vae.decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    h, w = args.resolution
    images = torch.rand(args.batch_size * 2, 3, h, w, device=device) * 2 - 1
    target = torch.rand_like(images)
    t = torch.tensor([199], device=device)

    def step():
        with autocast(device, precision):
            with torch.no_grad():
                z = vae.encode(images).latent_dist.sample() * vae.config.scaling_factor
            pred = unet(z, t, encoder_hidden_states=text).sample
            out = vae.decode(pred / vae.config.scaling_factor).sample
            loss = torch.nn.functional.mse_loss(out.float(), target)
        optimizer_update(loss, params, optimizer, scaler)

    return *timed(step, args.iters, args.warmup, device, args.profile, args.profile_out, "plain"), peak_gib(device)


def bench_infer(args, device: torch.device, precision: str) -> tuple[float, float, str]:
    """Latency of ``fix``-ing one image with its reference, set up as ``load_difix`` does
    (``prepare_for_inference``: LoRA merged, channels-last and cuDNN autotuning on CUDA)."""
    torch.manual_seed(0)
    with device:
        model = build_random_difix(DifixConfig(preset=args.preset))
    weight_dtype = DTYPES[precision] if args.bf16_weights and precision != "no" else torch.float32
    # the pipeline's mode (difix.inference: CUDA graphs) unless --compile-mode says otherwise
    compile_mode = (args.compile_mode or InferenceConfig.compile_mode) if args.compile else None
    prepare_for_inference(
        model,
        device,
        weight_dtype,
        compile_mode,
        channels_last=args.channels_last,
        cudnn_benchmark=args.infer_cudnn_benchmark,
    )
    h, w = args.resolution
    views = (torch.rand(1, 2, 3, h, w, device=device) * 2 - 1).to(weight_dtype)
    emb = model.encode_prompts(["remove degradation"])
    cache = bench_compile_cache(
        args,
        "infer",
        model,
        device,
        compile_mode,
        dtype=str(weight_dtype).removeprefix("torch."),
        precision=precision,
        views=2,
        channels_last=uses_channels_last(model),
        all_views=args.all_views,
    )

    @torch.inference_mode()
    def run():
        torch.manual_seed(1)  # the posterior's noise: every call computes the same function of the same input
        with autocast(device, precision) if weight_dtype == torch.float32 else contextlib.nullcontext():
            return model(views, emb, first_view_only=not args.all_views)

    def after_first(out):
        if args.outputs:
            OUTPUTS["infer_output"] = out.float().cpu()
        if cache:
            cache.save()

    return *timed(run, args.iters, args.warmup, device, args.profile, args.profile_out, "infer", after_first), peak_gib(
        device
    )


OUTPUTS: dict[str, torch.Tensor] = {}  # --outputs: what the rows computed, saved at the end


def bench_compile_cache(args, kind: str, model, device: torch.device, mode: str | None, **settings):
    """The study compile cache entry of a row (None without --compile-cache or --compile), loaded."""
    if not (args.compile and args.compile_cache):
        return None
    h, w = args.resolution
    settings["inductor"] = ",".join(args.inductor)  # experiments change the generated code
    key = CompileKey.for_process(kind, model.difix_config, (h, w), args.batch_size, mode, device, **settings)
    return open_study_cache(args.compile_cache, key)


def set_inductor_option(setting: str) -> None:
    """``KEY=VALUE`` into ``torch._inductor.config`` (VALUE a Python literal or a string)."""
    import ast

    import torch._inductor.config as inductor_config

    key, _, text = setting.partition("=")
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if not hasattr(inductor_config, key):
        raise SystemExit(f"--inductor: torch._inductor.config has no setting {key!r}")
    setattr(inductor_config, key, value)


def _size(text: str) -> tuple[int, int]:
    """``N`` (square) or ``HxW``: the views' size in pixels."""
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="sd-turbo", choices=["sd-turbo", "tiny"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--resolution", type=_size, default=(512, 512), metavar="N|HxW", help="square side, or height x width"
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precisions", default="no,bf16,fp16", help="comma list of no, bf16, fp16")
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last layout (unset: the library's default, on when compiled on CUDA)",
    )
    parser.add_argument(
        "--loss-curve",
        type=int,
        default=0,
        metavar="N",
        help="instead of timing: N training steps on fixed data eager (NCHW) and as the options say; the losses "
        "of both and their largest relative difference",
    )
    parser.add_argument(
        "--reference",
        default="eager-nchw",
        choices=["eager-nchw", "eager", "none"],
        help="the loss curve's reference: eager NCHW, eager in the tested layout (what compiling alone changes), "
        "or none (the tested run's losses alone)",
    )
    parser.add_argument(
        "--no-tf32", action="store_true", help="exact float32 matmuls and convolutions on CUDA (default: TF32)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the Difix model (DifixModel.compile_forward)"
    )
    parser.add_argument(
        "--compile-mode",
        default=None,
        help="torch.compile mode (default, reduce-overhead, max-autotune-no-cudagraphs...); unset: the pipeline's, "
        "TrainConfig.compile_mode and difix.inference's compile_mode (both reduce-overhead: CUDA graphs)",
    )
    parser.add_argument(
        "--compile-cache",
        type=Path,
        metavar="DIR",
        help="study compile cache folder (hi4dfix.difix.compile_cache); the live caches go to a per-process folder",
    )
    parser.add_argument("--outputs", type=Path, metavar="FILE", help="save the rows' outputs (torch.save) here")
    parser.add_argument(
        "--infer-cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="inference with cuDNN autotuning (unset: prepare_for_inference's default)",
    )
    parser.add_argument(
        "--bf16-weights", action="store_true", help="inference with weights cast to the precision's dtype"
    )
    parser.add_argument(
        "--all-views",
        action="store_true",
        help="inference decodes every view (default: the fixed image only, as fix_images does)",
    )
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="training with cuDNN autotuning (TrainConfig.cudnn_benchmark)"
    )
    parser.add_argument(
        "--clip",
        default="separate",
        choices=["fused", "separate"],
        help="training: clip_grad_norm_ then step (the trainer's) or inside fused AdamW (hi4dfix.difix.optim)",
    )
    parser.add_argument("--rows", default="train,plain,infer", help="comma list of train, plain, infer")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="trace N calls of each row after timing")
    parser.add_argument("--profile-out", type=Path, help="folder for the whole profile table of each row")
    parser.add_argument(
        "--group-norm",
        default="channel-moments",
        choices=["channel-moments", "native"],
        help="with --channels-last: the group norm (native: torch's, as before hi4dfix.difix.memory_format)",
    )
    parser.add_argument(
        "--inductor",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set torch._inductor.config.KEY (an experiment; repeatable)",
    )
    parser.add_argument(
        "--ddp-bucket-mb", type=int, default=25, help="under accelerate launch: DDP's gradient bucket size (MB)"
    )
    parser.add_argument(
        "--optimize-ddp",
        default=None,
        choices=["ddp_optimizer", "no_optimization", "python_reducer"],
        help="torch._dynamo.config.optimize_ddp (unset: the trainer's, no_optimization: one graph)",
    )
    parser.add_argument(
        "--timing-lock",
        type=Path,
        metavar="FILE",
        help="time (and profile) only while holding this file's lock: side-by-side processes compile together, "
        "time one at a time",
    )
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args(argv)
    global TIMING_LOCK
    TIMING_LOCK = args.timing_lock
    if args.group_norm == "native":
        import hi4dfix.difix.memory_format as memory_format

        memory_format.use_channel_moments_group_norm = lambda root: 0
    for setting in args.inductor:
        set_inductor_option(setting)

    device = torch.device(args.device)
    set_tf32(device, not args.no_tf32)
    if args.compile_cache:
        import logging

        from hi4dfix.logs import log_to_stderr

        log_to_stderr(logging.getLogger("hi4dfix.difix.compile_cache"), logging.INFO)
        print(f"live inductor/Triton caches: {use_node_local_caches()}", file=sys.stderr)
    if args.loss_curve:
        return compare_loss_curves(args, device)
    rows = []
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        if precision not in ("no", "bf16", "fp16"):
            raise SystemExit(f"unknown precision {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            rows.append(("difix train", precision, "skipped (fp16 needs CUDA)", "", ""))
            continue
        available = {
            "train": ("difix train", bench_difix_train),
            "plain": ("plain train", bench_plain_train),
            "infer": ("difix infer", bench_infer),
        }
        benches = [available[r.strip()] for r in args.rows.split(",") if r.strip()]
        for name, bench in benches:
            try:
                first, seconds, mem = bench(args, device, precision)
                rows.append((name, precision, f"{seconds * 1000:.1f}", mem, f"{first:.1f}"))
            except torch.OutOfMemoryError:
                rows.append((name, precision, "out of memory", "", ""))
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()

    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under accelerate launch, rank 0 prints its figures (every rank measures the same step)
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    options = [
        o
        for o in ("compile", "bf16_weights", "all_views", "gradient_checkpointing", "cudnn_benchmark")
        if getattr(args, o)
    ]
    if "train" in args.rows:
        options.append(f"clip {args.clip}")
    if args.compile_mode:
        options.append(f"compile mode {args.compile_mode}")
    if args.channels_last is not None:
        options.append("channels_last" if args.channels_last else "NCHW")
    if processes > 1:
        options.append(f"DDP buckets {args.ddp_bucket_mb} MB, optimize_ddp {torch._dynamo.config.optimize_ddp}")
    if args.channels_last:
        options.append(f"group norm {args.group_norm}")
    options += [f"inductor {s}" for s in args.inductor]
    setting = (
        f"preset {args.preset}, {args.resolution[0]}x{args.resolution[1]}, batch {args.batch_size} (+ reference view) "
        f"per process, {processes} process(es), options: {', '.join(options) or 'none'}"
    )
    print(f"\nDifix bench: {setting}; {gpu}, torch {torch.__version__}\n")
    lines = [
        "| what | precision | ms / iteration | peak memory (GiB) | first call s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join(lines)
    print(table)
    if args.outputs:
        args.outputs.parent.mkdir(parents=True, exist_ok=True)
        torch.save(OUTPUTS, args.outputs)
    if args.append:
        append_markdown(
            args.append, f"DiFix step and inference ({setting})", table, f"{gpu}, torch {torch.__version__}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
