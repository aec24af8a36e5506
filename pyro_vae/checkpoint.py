"""Checkpoints and run-folder files: written atomically, read without running code.

A checkpoint is a dict of tensors and plain values saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``, which refuses pickled callables instead of executing them.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from .core.errors import CheckpointError
from .folders import special_kind

FORMAT = "pyro-vae/checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


#: The permissions new files get (as ``open`` would give them under this process's umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through a new temporary file beside it, then rename it over ``path``.

    The temporary file is created exclusively (never through an existing file or link) and the
    rename replaces a link at ``path`` instead of following it, so nothing outside the folder
    is ever written. A failure or an interrupt leaves no temporary file behind.
    """

    def by_name(name: str) -> None:
        with open(name, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())

    write_file(path, by_name)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path``, atomically and never through a link."""
    _atomic_write(Path(path), lambda handle: handle.write(data))


def write_file(path: str | Path, write: Callable[[str], Any]) -> None:
    """Let ``write(name)`` write a file by name (for libraries that only take a path), into a
    new temporary file beside ``path`` (``.NAME.XXXX.tmp.SUFFIX``) that is then renamed over
    it; a failure or an interrupt leaves no temporary file behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    _atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8), atomically."""
    _atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with a one-line error if it is missing, malformed or not a file."""
    kind = special_kind(Path(path))
    if kind:
        raise CheckpointError(f"cannot read {path}: it is {kind}, not a file")
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except RecursionError:
        raise CheckpointError(f"cannot read {path}: nested too deeply") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` (tensors, numbers, strings, lists, dicts) with format and version tags."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    _atomic_write(Path(path), lambda handle: torch.save(data, handle))


def checkpoint_tag(epoch: int, step: int = 0) -> str:
    """File tag of a checkpoint: ``e0005`` after epoch 5, ``e0005-s0012`` after step 12 of
    epoch 6 (tags sort in training order)."""
    return f"e{epoch:04d}" + (f"-s{step:04d}" if step else "")


def save_rotating(folder: str | Path, payload: dict[str, Any], tag: str, keep: int) -> Path:
    """Save ``payload`` as ``checkpoint-TAG.pt`` and make ``checkpoint.pt`` the same file.

    Both files are complete at every moment: the tagged file is written atomically (temporary
    file, flush, fsync, rename), then ``checkpoint.pt`` is replaced by a hard link to it
    (a copy where links are not supported) in one rename. Only the newest ``keep`` tagged files
    are kept (``keep=0``: only ``checkpoint.pt``). Returns the path of ``checkpoint.pt``.
    """
    folder = Path(folder)
    latest = folder / CHECKPOINT_NAME
    if keep == 0:
        save_checkpoint(latest, payload)
        return latest
    tagged = folder / f"checkpoint-{tag}.pt"
    save_checkpoint(tagged, payload)
    staged = folder / f".{CHECKPOINT_NAME}.link"
    staged.unlink(missing_ok=True)
    try:
        os.link(tagged, staged)
        os.replace(staged, latest)
    except OSError:
        staged.unlink(missing_ok=True)
        write_file(latest, lambda name: shutil.copyfile(tagged, name))
    for old in sorted(folder.glob("checkpoint-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return latest


def latest_checkpoint(folder: str | Path) -> Path:
    """``checkpoint.pt`` in ``folder``, or, if a crash came between writing a tagged checkpoint
    and linking it (before any ``checkpoint.pt`` existed), the newest ``checkpoint-*.pt``.
    Without either, the path of the missing ``checkpoint.pt``."""
    folder = Path(folder)
    latest = folder / CHECKPOINT_NAME
    tagged = sorted(folder.glob("checkpoint-*.pt"))
    return tagged[-1] if tagged and not os.path.lexists(latest) else latest


def run_parts(checkpoint: dict[str, Any], path: str | Path) -> tuple[dict[str, Any], Any]:
    """The saved config (a dict) and fit state of a run checkpoint, or a one-line error."""
    config, state = checkpoint.get("config"), checkpoint.get("fit")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path} lacks the run's config or fit state")
    return config, state


def _unsupported_global(message: str) -> str:
    """The name of the code object torch refused to unpickle, from its message (which also
    suggests loading unsafely: that advice is never passed on)."""
    match = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    return f" (it refers to {match.group(1)})" if match else ""


def _starts_like_a_zip(path: Path) -> bool:
    """Whether the file begins as ``torch.save``'s archives do (a zip file)."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; refuse anything that is not a plain pyro-vae checkpoint."""
    path = Path(path)
    kind = special_kind(path)
    if kind:
        raise CheckpointError(f"{path} is {kind}, not a checkpoint")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if not _starts_like_a_zip(path):
        raise CheckpointError(f"{path} is not a pyro-vae checkpoint (not a torch.save archive)")
    try:
        with warnings.catch_warnings():  # a library warning never joins the one-line error
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds more than tensors and plain values"
            f"{_unsupported_global(str(err))}"
        ) from None
    except Exception as err:  # noqa: BLE001 - whatever the reader trips on, the file is corrupt
        why = "nested too deeply" if isinstance(err, RecursionError) else "truncated or corrupt"
        raise CheckpointError(f"cannot read checkpoint {path}: not a checkpoint, {why}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-vae checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is checkpoint version {data.get('version')}; "
            f"this pyro-vae reads version {VERSION}"
        )
    return data
