"""Checkpoints and run-folder files: written atomically, read without running code.

A checkpoint is a dict of tensors and plain values saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``, which refuses pickled callables instead of executing them.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

FORMAT = "pyro-vae/checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    _atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8), atomically."""
    _atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with a one-line error if it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` (tensors, numbers, strings, lists, dicts) with format and version tags."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    _atomic_write(Path(path), lambda handle: torch.save(data, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; refuse anything that is not a plain pyro-vae checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"refusing to load {path}: it holds more than tensors and plain values "
            f"(weights_only load failed: {first})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or corrupt ({err})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-vae checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is checkpoint version {data.get('version')}; "
            f"this pyro-vae reads version {VERSION}"
        )
    return data
