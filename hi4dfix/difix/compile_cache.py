"""Compile once per study: ``torch.compile`` artifacts shared by the study's GPU jobs.

On a cluster every job starts on a node whose inductor and Triton caches are empty, so each DiFix
job paid its own compilation (the full-size training step 256 s, inference ~110 s on an H200).
Here the first job to compile a graph saves inductor's portable artifacts
(``torch.compiler.save_cache_artifacts``: FX graphs with their Triton kernels bundled, AOTAutograd
entries, autotuning results) to the study cache folder (``difix.compile_cache_dir``, on shared
storage), one file per :class:`CompileKey`; later jobs load that file into their own live caches
before compiling, and inductor then finds every graph there.

* The live inductor and Triton caches stay node-local: :func:`use_node_local_caches` points them
  at a per-job folder under the job's temporary space (``$TMPDIR``), so jobs never share a live
  cache over a network file system.
* One process writes an entry: it takes ``<entry>.lock`` (``O_EXCL``), writes a temporary file and
  renames it onto the entry; readers see the old entry or the new one, never a half file.
* An entry names its key and the length and SHA-256 of its payload; one that is corrupt, partial
  or made for another key is ignored with one log line, and the job compiles as before.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hi4dfix.io import atomic_path

LOG = logging.getLogger("hi4dfix.difix.compile_cache")
MAGIC = b"hi4dfix compile cache 1\n"
STALE_LOCK_S = 1800.0  # a lock older than this was left by a killed writer
DEFAULT_DIR_NAME = "compile_cache"  # under the study's results folder


class EntryError(ValueError):
    """A cache entry that cannot be used (the message says why)."""


def software_versions() -> dict[str, str]:
    """torch (with its CUDA) and Triton versions: compiled code is only valid for these."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return {"torch": torch.__version__, "cuda": str(torch.version.cuda), "triton": triton_version}


def device_name(device: Any) -> str:
    """The GPU model and compute capability (``cpu`` for the CPU): kernels are built for them."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} sm_{major}{minor}"


def model_identity(difix_config: Any) -> dict[str, Any]:
    """What of a ``DifixConfig`` shapes the compiled graph: preset, architecture, timestep (its
    update's constants), LoRA rank, skip scale, latent sampling. Not the weights (graph inputs),
    nor where they came from."""
    keep = ("preset", "timestep", "lora_rank_vae", "skip_gamma", "latent_sampling", "architecture")
    fields = dataclasses.asdict(difix_config)
    return {k: fields[k] for k in keep}


@dataclass(frozen=True)
class CompileKey:
    """Everything a compiled DiFix graph depends on; entries of different keys never mix.

    ``kind``: ``train`` or ``infer``; ``size``: processing size (H, W); ``batch``: samples per
    call; ``mode``: torch.compile's mode; ``settings``: what else changes the graph (precision,
    dtype, layout, views); ``versions`` and ``device``: from the running process by default.
    """

    kind: str
    model: dict[str, Any]
    size: tuple[int, int]
    batch: int
    mode: str
    settings: dict[str, Any]
    versions: dict[str, str]
    device: str

    @classmethod
    def for_process(
        cls,
        kind: str,
        difix_config: Any,
        size: tuple[int, int],
        batch: int,
        mode: str | None,
        device: Any,
        **settings: Any,
    ) -> "CompileKey":
        return cls(
            kind,
            model_identity(difix_config),
            (int(size[0]), int(size[1])),
            int(batch),
            mode or "default",
            {k: str(v) for k, v in sorted(settings.items())},
            software_versions(),
            device_name(device),
        )

    def as_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)

    def digest(self) -> str:
        return hashlib.sha256(self.as_json().encode()).hexdigest()

    def file_name(self) -> str:
        return f"{self.kind}-{self.size[0]}x{self.size[1]}-b{self.batch}-{self.digest()[:24]}.bin"


# ----------------------------------------------------------------------------- entry files


def encode_entry(key: CompileKey, payload: bytes) -> bytes:
    header = {"key": json.loads(key.as_json()), "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def decode_entry(data: bytes, key: CompileKey) -> bytes:
    """The payload of an entry made for ``key``; :class:`EntryError` saying why it is unusable."""
    if not data.startswith(MAGIC):
        raise EntryError("not a compile-cache entry (bad header)")
    head, sep, payload = data[len(MAGIC) :].partition(b"\n")
    if not sep:
        raise EntryError("truncated header")
    try:
        header = json.loads(head)
    except ValueError as err:
        raise EntryError(f"unreadable header ({err})") from None
    expected = json.loads(key.as_json())
    if header.get("key") != expected:
        differing = sorted(k for k in expected if header.get("key", {}).get(k) != expected[k])
        raise EntryError(f"made for another key (differs in {', '.join(differing) or 'layout'})")
    if len(payload) != header.get("bytes"):
        raise EntryError(f"partial: {len(payload)} of {header.get('bytes')} payload bytes")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise EntryError("corrupt: payload checksum differs")
    return payload


def read_entry(path: Path, key: CompileKey) -> bytes | None:
    """The payload at ``path`` if it is a sound entry for ``key``; None (one log line) otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        LOG.info("compile cache: no entry %s yet; compiling", path)
        return None
    except OSError as err:
        LOG.warning("compile cache: ignoring %s (%s); compiling as before", path, err)
        return None
    try:
        return decode_entry(data, key)
    except EntryError as err:
        LOG.warning("compile cache: ignoring %s (%s); compiling as before", path, err)
        return None


def _take_lock(lock: Path) -> bool:
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if age < STALE_LOCK_S:
                return False
            lock.unlink(missing_ok=True)  # left by a killed writer
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {time.time():.0f}\n")
        return True
    return False


def write_entry(path: Path, key: CompileKey, payload: bytes) -> bool:
    """Write ``payload`` as the entry for ``key`` unless another process is writing it or a sound
    entry at least as large is there. Temporary file + rename, under ``<path>.lock``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    if not _take_lock(lock):
        LOG.info("compile cache: another job is writing %s; not writing", path)
        return False
    try:
        if path.exists():
            try:
                if len(decode_entry(path.read_bytes(), key)) >= len(payload):
                    LOG.info("compile cache: %s already holds these graphs", path)
                    return False
            except EntryError:
                pass  # replaced below
        with atomic_path(path) as tmp:
            tmp.write_bytes(encode_entry(key, payload))
        LOG.info("compile cache: saved %s (%.1f MB)", path, len(payload) / 1e6)
        return True
    finally:
        lock.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- torch side


class StudyCompileCache:
    """The study cache entry of one compiled graph family: :meth:`load` before the first compiled
    call, :meth:`save` after it (and after later compilations; a larger set replaces a smaller)."""

    def __init__(self, directory: str | os.PathLike, key: CompileKey) -> None:
        self.directory = Path(directory)
        self.key = key
        self.path = self.directory / key.file_name()
        self.loaded = False
        self._misses_at_load = 0

    @staticmethod
    def _graph_cache_misses() -> int:
        from torch._dynamo.utils import counters

        return int(counters["inductor"]["fxgraph_cache_miss"])

    def load(self) -> bool:
        payload = read_entry(self.path, self.key)
        if payload is None:
            return False
        import torch

        enable_portable_artifacts()
        try:
            info = torch.compiler.load_cache_artifacts(payload)
        except Exception as err:  # a payload this torch cannot read is one more reason to compile
            LOG.warning("compile cache: ignoring %s (torch could not load it: %s); compiling as before", self.path, err)
            return False
        counts = {kind: len(keys) for kind, keys in (info.artifacts.items() if info else [])}
        LOG.info("compile cache: loaded %s (%s)", self.path, counts)
        self.loaded = True
        self._misses_at_load = self._graph_cache_misses()
        return True

    def save(self) -> bool:
        import torch

        if self.loaded and self._graph_cache_misses() == self._misses_at_load:
            return False  # everything came from the entry: rewriting it (hundreds of MB) gains nothing
        artifacts = torch.compiler.save_cache_artifacts()
        if artifacts is None or not artifacts[0]:
            LOG.info("compile cache: nothing compiled to save to %s", self.path)
            return False
        try:
            return write_entry(self.path, self.key, artifacts[0])
        except OSError as err:  # a full or read-only cache folder must not fail the job
            LOG.warning("compile cache: could not write %s (%s)", self.path, err)
            return False


def enable_portable_artifacts() -> None:
    """Inductor settings the study cache relies on: the FX graph and AOTAutograd caches on, and
    Triton's compiled kernels bundled into the graph entries (else a job loading an entry still
    compiles every kernel). These are torch's defaults; set in case a site turned them off."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    inductor_config.bundle_triton_into_fx_graph_cache = True
    functorch_config.enable_autograd_cache = True


def use_node_local_caches(temp_root: str | os.PathLike | None = None) -> Path | None:
    """Point inductor's and Triton's live caches at a fresh per-job folder under ``temp_root``
    (``$TMPDIR``, else the system's temporary folder), removed when the process ends; a cache
    folder the user set (``TORCHINDUCTOR_CACHE_DIR``) is kept. Call before anything compiles;
    processes started afterwards (DDP workers, compile workers) inherit it."""
    if users_inductor_cache_dir() is not None:
        return None
    root = Path(temp_root or os.environ.get("TMPDIR") or tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    job = os.environ.get("SLURM_JOB_ID", "local")
    folder = Path(tempfile.mkdtemp(prefix=f"hi4dfix-inductor-{job}-", dir=root))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def users_inductor_cache_dir() -> str | None:
    """``TORCHINDUCTOR_CACHE_DIR`` when it is a choice (the user's, or this job's folder): importing
    ``torch._dynamo`` writes inductor's default (``/tmp/torchinductor_$USER``) there, which is not."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    value = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not value or os.path.abspath(value) == os.path.abspath(default_cache_dir()):
        return None
    return value


def open_study_cache(directory: str | os.PathLike | None, key: CompileKey) -> StudyCompileCache | None:
    """A loaded study cache for ``key`` (None when ``directory`` is None: no study cache)."""
    if directory is None:
        return None
    cache = StudyCompileCache(directory, key)
    cache.load()
    return cache
