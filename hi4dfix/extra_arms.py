"""Extra arms: released fixers run beside the study's own arms, inference only (config ``difix.extra_arms``).

A researcher deciding whether to tune DiFix on people asks first whether the tuned model beats what is
already released. An extra arm answers it on the same views with the same statistics: it is evaluated
like the base arm (the internal split's ``evaluate_difix`` job and the reserved scenes' ``evaluate_nvs``
jobs, with their chunking, compile cache and metrics) and compared as ``tuned − ARM`` and ``ARM − raw``
(:func:`hi4dfix.arms.arm_comparisons`). Two kinds:

* ``difix``: a DiFix model (``model``: a Hub id such as ``nvidia/difix`` or ``nvidia/difix_ref``, a local
  pipeline folder or an official ``model_*.pkl``), with (``reference: true``) or without its reference
  view, run at the DiFix arms' processing size (``difix.long_side``) with ``difix.inference``;
* ``torchscript``: a TorchScript image-to-image model (:mod:`hi4dfix.torchscript_fixer`; nv-tlabs/Fixer's
  ``pretrained_fixer_jit.pt``): ``file`` (a local path, or a path inside the Hub repository ``repo``, then
  read from ``difix.hub_cache_dir``) and its contract (``resolution`` among ``resolutions``, W x H;
  ``value_range``, ``dtype``, ``imports``, ``fit``). It has no reference input.

:func:`extra_arms` reads the block; :func:`check_extra_arms` refuses at DAG build what would fail in a job
(a missing file, a missing module, an unsupported resolution, a file that is not a TorchScript archive),
naming the arm, the setting and the fix. :func:`arm_fixer` is what the evaluation scripts call.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from hi4dfix.arms import RESERVED_ARM_NAMES
from hi4dfix.torchscript_fixer import (
    FIXER_RESOLUTIONS,
    TorchScriptContract,
    TorchScriptFixer,
    TorchScriptFixerError,
)

KEY = "difix.extra_arms"
KINDS = ("difix", "torchscript")
ARM_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
# the keys of each kind besides `kind` (the schema lists their types; a key of the other kind is refused here)
KIND_KEYS = {
    "difix": ("model", "reference"),
    "torchscript": ("file", "repo", "resolution", "resolutions", "value_range", "dtype", "imports", "fit"),
}
REQUIRED = {"difix": ("model", "reference"), "torchscript": ("file", "resolution")}
FETCH_HINT = "`hi4dfix fetch-weights` (with the same --configfile options, where the internet is)"


class ExtraArmError(ValueError):
    """An extra arm that cannot run; the message names the arm, the setting and the fix."""


def parse_size(text: str, where: str) -> tuple[int, int]:
    """``"1024x576"`` -> (1024, 576): W x H as Fixer's documentation writes its sizes."""
    match = re.fullmatch(r"(\d+)x(\d+)", str(text))
    if match is None:
        raise ExtraArmError(f"{where}: {text!r} is not a size W x H such as 1024x576")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class DifixArm:
    """A released DiFix as an arm: ``model`` (Hub id, folder or pkl), with or without the reference view."""

    name: str
    model: str
    reference: bool
    kind: str = field(default="difix", init=False)

    @property
    def setting(self) -> str:
        return f"{KEY}.{self.name}"

    def params(self) -> dict[str, Any]:
        """Plain data for a rule's params (a change reruns the arm's jobs)."""
        return {"name": self.name, "kind": self.kind, "model": self.model, "reference": self.reference}


@dataclass(frozen=True)
class TorchScriptArm:
    """A TorchScript fixer as an arm: ``file`` (local, or inside the Hub repository ``repo``) and its contract."""

    name: str
    file: str
    contract: TorchScriptContract
    repo: str | None = None
    kind: str = field(default="torchscript", init=False)

    @property
    def setting(self) -> str:
        return f"{KEY}.{self.name}"

    def params(self) -> dict[str, Any]:
        c, size = self.contract, "{}x{}".format
        return {
            "name": self.name, "kind": self.kind, "file": self.file, "repo": self.repo,
            "resolution": size(*c.resolution), "resolutions": [size(*r) for r in c.resolutions],
            "value_range": list(c.value_range), "dtype": c.dtype, "imports": list(c.imports), "fit": c.fit,
        }  # fmt: skip


ExtraArm = DifixArm | TorchScriptArm


def extra_arm(name: str, block: Mapping[str, Any]) -> ExtraArm:
    """One arm of ``difix.extra_arms`` (its name and block), its keys checked for its kind."""
    where = f"{KEY}.{name}"
    if name in RESERVED_ARM_NAMES or not ARM_NAME.fullmatch(name) or "_vs_" in name:
        raise ExtraArmError(
            f"{where}: an extra arm's name must be lower-case letters, digits and single underscores, without "
            f"'_vs_' (the comparisons' separator), and not one of {', '.join(RESERVED_ARM_NAMES)}; rename it"
        )
    kind = block.get("kind")
    if kind not in KINDS:
        raise ExtraArmError(f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    other = sorted(set(block) - {"kind", "name", *KIND_KEYS[kind]})
    if other:
        raise ExtraArmError(f"{where}: key(s) {', '.join(other)} do not belong to kind {kind} (its keys: "
                            f"{', '.join(KIND_KEYS[kind])})")  # fmt: skip
    missing = [key for key in REQUIRED[kind] if block.get(key) is None]
    if missing:
        raise ExtraArmError(f"{where}: kind {kind} needs {', '.join(f'{where}.{key}' for key in missing)}")
    if kind == "difix":
        return DifixArm(name, str(block["model"]), bool(block["reference"]))
    contract = TorchScriptContract(
        resolution=parse_size(block["resolution"], f"{where}.resolution"),
        resolutions=tuple(parse_size(r, f"{where}.resolutions") for r in block.get("resolutions") or ())
        or FIXER_RESOLUTIONS,
        value_range=tuple(float(v) for v in block.get("value_range", (-1.0, 1.0))),
        dtype=str(block.get("dtype", "bfloat16")),
        imports=tuple(block.get("imports") or ()),
        fit=str(block.get("fit", "pad")),
    )
    return TorchScriptArm(name, str(block["file"]), contract, block.get("repo"))


def extra_arms(difix: Mapping[str, Any]) -> dict[str, ExtraArm]:
    """The config's extra arms (the ``difix`` block's ``extra_arms``), in config order; none by default."""
    return {name: extra_arm(name, block or {}) for name, block in (difix.get("extra_arms") or {}).items()}


def from_params(params: Mapping[str, Any]) -> ExtraArm:
    """The arm back from :meth:`params` (what a job receives)."""
    block = {key: value for key, value in params.items() if key != "name"}
    return extra_arm(str(params["name"]), block)


# ---- files, at DAG build and in the jobs ------------------------------------------------------------


def is_hub_model(arm: ExtraArm) -> bool:
    """Whether the arm's weights come from the Hub cache (a DiFix Hub id, a TorchScript file of a ``repo``)."""
    from hi4dfix.weights import is_hub_id

    return arm.repo is not None if isinstance(arm, TorchScriptArm) else is_hub_id(arm.model)


def torchscript_path(arm: TorchScriptArm, hub_cache_dir: str | None) -> Path | None:
    """The TorchScript file: ``file`` itself, or its copy in the Hub cache (None when not downloaded)."""
    if arm.repo is None:
        return Path(arm.file)
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(arm.repo, arm.file, cache_dir=hub_cache_dir)
    return Path(found) if isinstance(found, str) else None


def weights_spec(arm: ExtraArm, hub_cache_dir: str | None) -> str:
    """What provenance hashes for the arm: the DiFix spec (a Hub id is named only), or the TorchScript file."""
    if isinstance(arm, DifixArm):
        return arm.model
    path = torchscript_path(arm, hub_cache_dir)
    return str(path) if path is not None else f"{arm.repo}:{arm.file}"


def local_inputs(arm: ExtraArm) -> list[str]:
    """The arm's weights as file dependencies of its jobs (local files and folders; not the Hub cache)."""
    if is_hub_model(arm):
        return []
    return [arm.model if isinstance(arm, DifixArm) else arm.file]


def is_torchscript_archive(path: Path) -> bool:
    """Cheaply, without loading it: a TorchScript archive is a zip holding the model's code (``*/code/``);
    ``torch.save``'s zip of tensors has none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in f"/{name}" for name in archive.namelist())


def check_extra_arm(arm: ExtraArm, hub_cache_dir: str | None) -> None:
    """Refuse at DAG build what would fail in the arm's jobs, naming the arm, the setting and the fix.
    A DiFix Hub id not cached is reported by :func:`hi4dfix.weights.missing_weights_message` (with the others)."""
    if isinstance(arm, DifixArm):
        if not is_hub_model(arm) and not Path(arm.model).exists():
            raise ExtraArmError(
                f"arm {arm.name}: {arm.setting}.model {arm.model} does not exist; point it at a DiFix folder, an "
                "official model_*.pkl or a Hub id such as nvidia/difix"
            )
        return
    try:
        arm.contract.check(arm.setting)
    except TorchScriptFixerError as exc:
        raise ExtraArmError(f"arm {arm.name}: {exc}") from None
    path = torchscript_path(arm, hub_cache_dir)
    if path is None:
        return  # a Hub file not downloaded yet: listed with the other missing weights (a run stops at its start)
    if not path.is_file():
        raise ExtraArmError(
            f"arm {arm.name}: {arm.setting}.file {path} does not exist; download it (for nv-tlabs/Fixer: "
            "huggingface-cli download nvidia/Fixer --local-dir models, then models/pretrained/pretrained_fixer_jit.pt) "
            f"or set {arm.setting}.repo so that {FETCH_HINT} fetches it"
        )
    if not is_torchscript_archive(path):
        raise ExtraArmError(
            f"arm {arm.name}: {path} ({arm.setting}.file) is not a TorchScript model (no code in the archive: "
            "torch.save writes weights, not a model); export the model with torch.jit.script or torch.jit.trace "
            "and save that"
        )


def check_extra_arms(arms: Mapping[str, ExtraArm], hub_cache_dir: str | None) -> None:
    for arm in arms.values():
        check_extra_arm(arm, hub_cache_dir)


# ---- the fixer of a job -----------------------------------------------------------------------------


class SingleImageFixer:
    """A DiFix fixer run without its reference view (Difix3D's single-image ``nvidia/difix``)."""

    def __init__(self, fixer: Any) -> None:
        self.fixer, self.batch_size, self.name = fixer, fixer.batch_size, f"{fixer.name} (no reference)"

    def __call__(self, images: Sequence[Any], refs: Sequence[Any] | None = None) -> list[Any]:
        return self.fixer(images, None)

    def timing(self) -> Any:
        return self.fixer.timing()


def extra_fixer(
    arm: ExtraArm,
    hub_cache_dir: str | None = None,
    device: str = "auto",
    *,
    inference: Mapping[str, Any] | None = None,
    compile_cache_dir: str | None = None,
    **size: Any,
) -> Any:
    """The fixer of an extra arm: DiFix as the base arm runs it (``size``: the DiFix arms' processing size;
    without the reference when ``reference`` is false), or the TorchScript model under its contract."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(arm, DifixArm):
        from hi4dfix.difix.infer import difix_fixer

        fixer = difix_fixer(arm.model, hub_cache_dir, device, inference=inference,
                            compile_cache_dir=compile_cache_dir, **size)  # fmt: skip
        return fixer if arm.reference else SingleImageFixer(fixer)
    path = torchscript_path(arm, hub_cache_dir)
    if path is None:
        raise ExtraArmError(f"arm {arm.name}: {arm.repo}:{arm.file} is not in the Hub cache; run {FETCH_HINT}")
    return TorchScriptFixer(path, arm.contract, device, arm.name)


def arm_fixer(model: Any, hub_cache_dir: str | None = None, **options: Any) -> Any:
    """An evaluation job's fixer from its ``model`` param: None (raw), a DiFix spec (base, tuned, control),
    or an extra arm's params (:meth:`DifixArm.params`, :meth:`TorchScriptArm.params`)."""
    if isinstance(model, Mapping):
        return extra_fixer(from_params(model), hub_cache_dir, **options)
    from hi4dfix.difix.infer import difix_fixer

    return difix_fixer(model, hub_cache_dir, **options)
