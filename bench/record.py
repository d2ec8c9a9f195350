"""How a benchmark script appends its table to BENCHMARKS.md: a heading, the command, the date
and the machine, then the table."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path


def machine_line(accelerator: str | None = None) -> str:
    line = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return f"{line}; {accelerator}" if accelerator else line


def append_markdown(path: Path, title: str, table: str, accelerator: str | None = None) -> None:
    """Append ``table`` under ``### title`` with the command line that produced it."""
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    header = (
        f"\n### {title}\n\nCommand: `{command}`  \nDate: {datetime.date.today()}  \n"
        f"Machine: {machine_line(accelerator)}\n\n"
    )
    with open(path, "a") as stream:
        stream.write(header + table.rstrip("\n") + "\n")
