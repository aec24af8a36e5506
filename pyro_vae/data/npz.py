"""The user's own arrays: a ``.npz`` archive holding ``train``, ``test`` and optionally
``train_labels``, ``test_labels``, read without unpickling anything, its SHA-256 recorded."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .dataset import Dataset
from .sources import file_format

#: The arrays a ``.npz`` data set may hold.
NPZ_ARRAYS = ("train", "test", "train_labels", "test_labels")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@file_format(
    "npz", describes="a .npz file", matches=lambda path: path.suffix == ".npz" and path.is_file()
)
def npz_dataset(path: Path) -> Dataset:
    """Arrays ``train`` and ``test`` (and optionally ``train_labels``, ``test_labels``) from a
    ``.npz`` file, read without unpickling anything."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            missing = sorted({"train", "test"} - names)
            unknown = sorted(names - set(NPZ_ARRAYS))
            if missing or unknown:
                what = (
                    f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}"
                )
                raise DataError(
                    f"{path}: a .npz data set holds the arrays {', '.join(NPZ_ARRAYS)} "
                    f"(labels optional); {what}"
                )
            arrays = {name: archive[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as a .npz data set: {err}") from None
    info = {
        "source": str(path),
        "sha256": _sha256(path),
        "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
    }
    return Dataset.from_arrays(
        path.name,
        arrays["train"],
        arrays["test"],
        arrays.get("train_labels"),
        arrays.get("test_labels"),
        info=info,
    )
