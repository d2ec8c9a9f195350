"""Host memory of each Snakemake job by PSS, sampled from /proc (study_run.sh starts it beside the study).

Snakemake's benchmark files give max RSS summed over a job's processes, which counts the pages that
DataLoader and compile workers share once per process; PSS (``/proc/PID/smaps_rollup``) shares them
out, so a job's summed PSS is what its cgroup holds (up to the page cache). Every ``--every`` seconds
this walks /proc, gives each process under ``--root`` (default: the parent, study_run.sh's driver)
the job of its nearest ancestor (or itself) that names a job's log
(``results/logs/RULE/WILDCARDS.log``: in a shell rule's command line, or in the pickled preamble of
a ``script:`` rule's ``.snakemake/scripts/tmp*.py``), sums Pss and Rss per job and keeps the largest
sum. It rewrites ``OUT`` (a TSV: job key as in study.py's summary, peak PSS MiB, summed RSS
MiB at that sample, processes then, samples, first and last seen) after each sample.

    python bench/gpu/pss_sampler.py OUT.tsv [--every 2]   (ends on SIGTERM / SIGINT)
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import time
from pathlib import Path

LOG_PATH = re.compile(rb"results/logs/([A-Za-z0-9_./=,+-]+?)\.log")
SCRIPT = re.compile(rb"\S*\.snakemake/scripts/tmp\S+\.py")


def read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def own_key(pid: int, cache: dict[tuple[int, bytes], str | None]) -> tuple[int, str | None] | None:
    """(parent pid, the job key this process names itself, or None); None if it is gone."""
    stat = read(f"/proc/{pid}/stat")
    cmdline = read(f"/proc/{pid}/cmdline")
    if stat is None or cmdline is None:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    ppid, start = int(fields[1]), fields[19]
    ident = (pid, start)
    if ident not in cache:
        key = None
        text = cmdline.replace(b"\0", b" ")
        if m := LOG_PATH.search(text):
            key = m[1].decode()
        elif m := SCRIPT.search(text):
            script = read(m[0].decode()) or b""
            if found := LOG_PATH.search(script):
                key = found[1].decode()
        cache[ident] = key
    return ppid, cache[ident]


def memory_kib(pid: int) -> tuple[int, int]:
    """(Pss, Rss) in KiB from smaps_rollup; zeros if it is gone."""
    pss = rss = 0
    text = read(f"/proc/{pid}/smaps_rollup") or b""
    for line in text.splitlines():
        if line.startswith(b"Pss:"):
            pss = int(line.split()[1])
        elif line.startswith(b"Rss:"):
            rss = int(line.split()[1])
    return pss, rss


def descends(pid: int, root: int, procs: dict[int, tuple[int, str | None]]) -> bool:
    for _ in range(64):
        if pid == root:
            return True
        if pid not in procs:
            return False
        pid = procs[pid][0]
    return False


def sample(cache: dict, peaks: dict[str, dict], now: float, root: int) -> None:
    procs: dict[int, tuple[int, str | None]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := own_key(int(entry), cache)) is not None:
            procs[int(entry)] = info
    totals: dict[str, list[int]] = {}
    for pid in procs:
        if not descends(pid, root, procs):  # another user's jobs on the machine
            continue
        key, seen, cur = None, 0, pid
        while cur in procs and seen < 64:  # nearest ancestor-or-self naming a job
            ppid, own = procs[cur]
            if own is not None:
                key = own
                break
            cur, seen = ppid, seen + 1
        if key is None:
            continue
        pss, rss = memory_kib(pid)
        total = totals.setdefault(key, [0, 0, 0])
        total[0] += pss
        total[1] += rss
        total[2] += 1
    for key, (pss, rss, count) in totals.items():
        peak = peaks.setdefault(key, {"pss": 0, "rss": 0, "procs": 0, "samples": 0, "first": now, "last": now})
        peak["samples"] += 1
        peak["last"] = now
        if pss > peak["pss"]:
            peak.update(pss=pss, rss=rss, procs=count)


def write(out: Path, peaks: dict[str, dict], t0: float) -> None:
    lines = ["job\tpeak_pss_mib\trss_sum_at_peak_mib\tprocesses_at_peak\tsamples\tfirst_s\tlast_s"]
    for key, p in sorted(peaks.items()):
        lines.append(
            f"{key}\t{p['pss'] / 1024:.0f}\t{p['rss'] / 1024:.0f}\t{p['procs']}\t{p['samples']}"
            f"\t{p['first'] - t0:.0f}\t{p['last'] - t0:.0f}"
        )
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--root", type=int, default=os.getppid(), help="count only this process's descendants")
    args = parser.parse_args(argv)
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cache: dict = {}
    peaks: dict[str, dict] = {}
    t0 = time.time()
    while running[0]:
        started = time.time()
        sample(cache, peaks, started, args.root)
        write(args.out, peaks, t0)
        time.sleep(max(0.1, args.every - (time.time() - started)))
    write(args.out, peaks, t0)


if __name__ == "__main__":
    main()
