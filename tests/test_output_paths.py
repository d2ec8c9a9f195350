"""Every output path of the workflow is spelled in one place (hi4dfix.plan.Paths): no string literal
elsewhere in hi4dfix/ or workflow/ names one of these files or folders. Docstrings and comments may
mention them; code takes them from the plan."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from workflow_helpers import REPO

# Output files and folders of the workflow (what Paths spells), as they appear in a path literal
OUTPUT_NAMES = (
    r"model\.pkl",
    r"train_log\.csv",
    r"provenance\.json",
    r"(?<![\w])deltas\.",
    r"eval_deltas\.",
    r"triplets\.json",
    r"eval\.csv",
    r"content_check\.json",
    r"fingerprint\.json",
    r"versions\.csv",
    r"compare\.",
    r"paired\.png",
    r"decision\.html",
    r"card\.html",
    r"metrics\.png",
    r"gallery\.png",
    r"train_loss\.png",
    r"before_after/",
    r"ood_test\.",
    r"/nvs/",
    r"/renders/",
    r"/scenes/",
    r"/report/",
    r"difix_base/",
    r"/ablations/",
    r"/logs/",
    r"/benchmarks/",
    r"/compile_cache",
    r"/work(?![\w])",
)
# hi4dfix.difix: the trainer's and pretraining's own folders (a run folder's model.pkl and
# train_log.csv, the out-of-domain triplets.json), not the workflow's outputs
EXCLUDED = ("hi4dfix/difix/",)
# where the spellings live: the plan, and the file names of the modules that write and read them
# (provenance.PROVENANCE_NAME, fingerprint.FINGERPRINT_FILE), which the plan imports
HOMES = ("hi4dfix/plan.py:", "hi4dfix/provenance.py:", "hi4dfix/fingerprint.py:")


def code_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the file's path-like string literals: not docstrings (triple-quoted), not
    messages (with a space), not the rules' report captions (``../report/...``)."""
    literals = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        text = token.string
        if token.type == tokenize.STRING or getattr(tokenize, "FSTRING_MIDDLE", None) == token.type:
            body = text.lstrip("rbfuRBFU")
            if body.startswith(('"""', "'''")) or " " in body or body[1:].startswith("../"):
                continue
            literals.append((token.start[0], text))
    return literals


def sources() -> list[Path]:
    files = [*sorted((REPO / "hi4dfix").rglob("*.py")), *sorted((REPO / "workflow").rglob("*.py"))]
    files += [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    return [f for f in files if not str(f.relative_to(REPO)).startswith(EXCLUDED)]


def test_each_output_path_is_spelled_in_one_place():
    found: dict[str, list[str]] = {name: [] for name in OUTPUT_NAMES}
    for path in sources():
        for line, text in code_literals(path):
            for name in OUTPUT_NAMES:
                if re.search(name, text):
                    found[name].append(f"{path.relative_to(REPO)}:{line}: {text}")
    twice = {name: places for name, places in found.items() if len(places) > 1}
    assert not twice, "output paths spelled in more than one place (take them from hi4dfix.plan.Paths):\n" + "\n".join(
        f"{name}:\n  " + "\n  ".join(places) for name, places in twice.items()
    )
    elsewhere = [place for places in found.values() for place in places if not place.startswith(HOMES)]
    assert not elsewhere, elsewhere


def test_the_check_sees_a_second_spelling(tmp_path):
    copy = tmp_path / "x.py"
    copy.write_text('"""results/v0/deltas.csv in a docstring"""\nA = f"{r}/{v}/deltas.csv"\n# deltas.csv\n')
    assert [text for _, text in code_literals(copy)] == ['f"{r}/{v}/deltas.csv"']
