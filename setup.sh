#!/usr/bin/env bash
# Create .venv with hi4dfix, its pipeline dependencies and the test tools. Safe to re-run:
# it reinstalls only when pyproject.toml or this script changed.
#   ./setup.sh          the pipeline (and the test tools: pytest, ruff, snakefmt)
#   ./setup.sh --test   also the system packages the test suite uses, when run as root:
#                       Debian's chromium (report test) and a single-node Slurm (munge, slurmctld, slurmd)
set -euo pipefail
cd "$(dirname "$0")"

if [ "${1:-}" = "--test" ]; then
    test_packages="chromium munge slurmctld slurmd slurm-client"
    missing=$(for p in $test_packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    if [ -n "$missing" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "setup.sh: installing system packages for the tests with apt-get: $missing (a minute or two)" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
        else
            echo "setup.sh: not root or no apt-get; tests needing: $missing will be skipped" >&2
        fi
    fi
fi

python=${PYTHON:-python3}
stamp=.venv/.hi4dfix-installed
wanted=$(cat pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    echo "setup.sh: .venv is up to date (nothing to install)" >&2
    exit 0
fi
# pip runs quietly (its own output is pages long): a line before each long step says what is going on
if [ ! -x .venv/bin/python ]; then
    echo "setup.sh: creating .venv with $("$python" --version 2>&1)" >&2
    "$python" -m venv .venv
fi
echo "setup.sh: upgrading pip in .venv" >&2
.venv/bin/python -m pip install -q --upgrade pip
# torch and torchvision come pinned from pyproject.toml (the one place of the pins, which
# workflow/envs/hi4dfix.yaml follows too); without a GPU this is still the standard wheel, on the CPU.
echo "setup.sh: installing hi4dfix and its dependencies (torch, torchvision, diffusers, snakemake, gsplat, ...) and" \
    "the test tools into .venv: about 2 minutes on a fresh machine, mostly downloading torch" >&2
.venv/bin/python -m pip install -q -e ".[test]"
echo "$wanted" > "$stamp"
echo "setup.sh: done; activate with: . .venv/bin/activate" >&2
