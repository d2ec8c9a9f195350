#!/usr/bin/env bash
# Create .venv with hi4dfix, its pipeline dependencies and the test tools. Safe to re-run:
# it reinstalls only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
stamp=.venv/.hi4dfix-installed
wanted=$(cat pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch and torchvision are pinned as a pair that imports together (lpips needs torchvision);
# on machines without a GPU this is still the standard wheel and runs on the CPU.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test]"
echo "$wanted" > "$stamp"
