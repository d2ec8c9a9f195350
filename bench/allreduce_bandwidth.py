"""All-reduce time between the GPUs of one machine (NCCL), at the size of DiFix's gradients.

    python bench/allreduce_bandwidth.py                  # every GPU, 866 M elements, fp32 and bf16

DDP averages every trainable gradient each step (866 M fp32 values for DiFix, 3.5 GB); this is
the floor of that cost when nothing overlaps it. Prints one line per dtype: ms per all-reduce
and the bus bandwidth (NCCL's convention: 2 (n-1)/n bytes moved per byte reduced).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank: int, world: int, numel: int, iters: int) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", rank))
    try:
        for dtype in (torch.float32, torch.bfloat16):
            tensor = torch.ones(numel, dtype=dtype, device="cuda")
            for _ in range(2):  # warm-up: NCCL sets up its channels on the first call
                dist.all_reduce(tensor)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(iters):
                dist.all_reduce(tensor)
            torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / iters
            size = numel * tensor.element_size()
            if rank == 0:
                bus = 2 * (world - 1) / world * size / seconds / 1e9
                print(f"{world} GPUs, {dtype}, {size / 1e9:.2f} GB: {seconds * 1000:.1f} ms per all-reduce, "
                      f"bus bandwidth {bus:.0f} GB/s", flush=True)
            del tensor
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numel", type=int, default=866_000_000, help="elements reduced (DiFix: 866 M)")
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    world = torch.cuda.device_count()
    if world < 2:
        raise SystemExit("needs 2 or more CUDA GPUs")
    mp.spawn(run, args=(world, args.numel, args.iters), nprocs=world)


if __name__ == "__main__":
    main()
