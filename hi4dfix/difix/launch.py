"""Start DiFix tuning under ``accelerate launch`` with one process per GPU granted to the job.

    python -m hi4dfix.difix.launch --gpus N -- <hi4dfix.difix.train options>

N is what the scheduler granted (the rule's ``gpu`` resource); the processes started are
``min(N, visible CUDA devices)``, and a single CPU process where no GPU is visible, so the same rule
runs on a laptop and on a multi-GPU node.
"""

from __future__ import annotations

import argparse
import os
import sys


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def num_processes(granted_gpus: int, visible: int) -> int:
    """Processes to start: one per usable GPU, or one CPU process when there is none."""
    return max(1, min(granted_gpus, visible))


def launch_command(granted_gpus: int, visible: int, train_args: list[str]) -> list[str]:
    processes = num_processes(granted_gpus, visible)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    if visible == 0 or granted_gpus == 0:
        command.append("--cpu")
    elif processes > 1:
        command.append("--multi_gpu")
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return command + ["-m", "hi4dfix.difix.train", *train_args]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs granted to this job")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="options of hi4dfix.difix.train, after --")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    command = launch_command(args.gpus, visible_gpus(), train_args)
    print("launching:", " ".join(command), flush=True)
    # exec, so a scheduler's signal (preemption, scancel) reaches accelerate directly
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
