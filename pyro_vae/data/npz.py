"""The user's own arrays: a ``.npz`` archive holding ``train``, ``test`` and optionally
``train_labels``, ``test_labels``, read without unpickling anything, its SHA-256 recorded."""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.validate import check_allocation
from ..folders import special_kind
from .arrays import check_labels_dtype, check_values_dtype, native
from .dataset import Dataset
from .sources import file_format

#: The arrays a ``.npz`` data set may hold.
NPZ_ARRAYS = ("train", "test", "train_labels", "test_labels")
#: How a zip archive (a ``.npz``, possibly empty) and a single ``.npy`` array begin.
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
NPY_MAGIC = b"\x93NUMPY"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_npz_path(path: Path) -> bool:
    return path.suffix == ".npz" and os.path.exists(path) and not path.is_dir()


@file_format("npz", describes="a .npz file", matches=_is_npz_path)
def npz_dataset(path: Path) -> Dataset:
    """Arrays ``train`` and ``test`` (and optionally ``train_labels``, ``test_labels``) from a
    ``.npz`` file, read without unpickling anything.

    Before any array is read, the file must be a zip archive (as ``numpy.savez`` writes), and
    each array's ``.npy`` header is checked: its element type (numbers only), and its size
    against the bytes the archive holds and this machine's memory. Big-endian arrays are read
    in native byte order.
    """
    _check_container(path)
    headers = _headers(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: native(archive[name]) for name in headers}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as a .npz data set: {_reason(err)}") from None
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


def _reason(err: BaseException) -> str:
    """NumPy's words for a failure, except its advice to unpickle, which is never passed on."""
    text = str(err)
    return "it holds pickled data, which pyro-vae never loads" if "pickle" in text else text


def _check_container(path: Path) -> None:
    kind = special_kind(path)
    if kind:
        raise DataError(f"{path} is {kind}, not a .npz file")
    try:
        with path.open("rb") as handle:
            start = handle.read(len(NPY_MAGIC))
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    if start.startswith(NPY_MAGIC):
        raise DataError(
            f"{path} is a .npy file (one array), not a .npz archive of named arrays; save them "
            "with numpy.savez(PATH, train=..., test=...)"
        )
    if not start.startswith(ZIP_MAGIC):
        raise DataError(
            f"{path} is not a .npz archive (a zip of .npy arrays, as numpy.savez writes)"
        )


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype, read from its header and checked before any is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            _check_names(path, set(members))
            headers = {name: _header(archive, path, name, info) for name, info in members.items()}
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise DataError(f"cannot read {path} as a .npz data set: {err}") from None
    total = sum(math.prod(shape) * (dtype.itemsize + 4) for shape, dtype in headers.values())
    check_allocation(f"the arrays of {path} (as read, then as float32)", total, 1)
    return headers


def _check_names(path: Path, names: set[str]) -> None:
    missing = sorted({"train", "test"} - names)
    unknown = sorted(names - set(NPZ_ARRAYS))
    if missing or unknown:
        what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}"
        raise DataError(
            f"{path}: a .npz data set holds the arrays {', '.join(NPZ_ARRAYS)} "
            f"(labels optional); {what}"
        )


def _header(
    archive: zipfile.ZipFile, path: Path, name: str, member: zipfile.ZipInfo
) -> tuple[tuple[int, ...], np.dtype]:
    what = f"{path}: array {name}"
    with archive.open(member) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(handle)
        except (ValueError, EOFError, OSError) as err:
            raise DataError(f"{what} is not a readable .npy array ({_reason(err)})") from None
        offset = handle.tell()
    if name in ("train", "test"):
        check_values_dtype(f"{path}: the values of array {name}", dtype)
    else:
        check_labels_dtype(what, dtype)
    declared = math.prod(shape) * dtype.itemsize
    if declared > member.file_size - offset:
        raise DataError(
            f"{what} declares shape {tuple(shape)} of {dtype.name} ({declared:,} bytes) but "
            f"holds {max(member.file_size - offset, 0):,}: truncated or corrupt"
        )
    return tuple(shape), dtype
