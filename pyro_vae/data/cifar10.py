"""CIFAR-10 (Krizhevsky 2009): 50,000 / 10,000 colour images of 32 x 32 in 10 classes.

Read from torchvision's layout, ``DATA_DIR/cifar-10-batches-py/`` (``data_batch_1`` ..
``data_batch_5`` and ``test_batch``), which torchvision downloads when online. The batches are
pickles; they are read with an unpickler that builds NumPy arrays, lists, dicts and numbers and
refuses anything else, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..folders import removed_if_failed, special_kind
from .arrays import check_labels_dtype
from .dataset import Dataset
from .sources import DATASETS, default_data_dir

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
#: What a batch's pickle may build: NumPy's array reconstruction, and nothing else.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a CIFAR-10 batch does not hold {module}.{name}")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` of one batch file.

    The pixels must be stored as uint8 (as in the published batches) and the labels as
    integers: other element types are refused by name, never cast.
    """
    kind = special_kind(path)
    if kind:
        raise DataError(f"CIFAR-10 batch {path} is {kind}, not a file")
    try:
        with path.open("rb") as handle:
            batch = _ArraysOnly(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {err}") from None
    if data.dtype != np.uint8:
        raise DataError(
            f"CIFAR-10 batch {path} holds {data.dtype} pixels; its pixels are uint8 (0..255)"
        )
    check_labels_dtype(f"the labels of CIFAR-10 batch {path}", labels.dtype)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1:
        raise DataError(
            f"CIFAR-10 batch {path} holds pixels of shape {data.shape} and labels of shape "
            f"{labels.shape}; expected (N, 3072) and (N,)"
        )
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data.reshape(len(data), 3, 32, 32), labels.astype(np.int64)


def _download(root: Path) -> None:
    import torchvision.datasets as tvd

    try:
        root.mkdir(parents=True, exist_ok=True)
        tvd.CIFAR10(str(root), train=True, download=True)
    except Exception as err:  # noqa: BLE001 - any network or file failure means "not found"
        raise DataError(
            f"cifar10 not found in {root / FOLDER} and download failed ({type(err).__name__}); "
            "put torchvision's cifar-10-batches-py folder there, or go online"
        ) from None


@DATASETS.register("cifar10")
def cifar10(data_dir: Path | None = None, download: bool = True) -> Dataset:
    """CIFAR-10 from ``data_dir`` (default ``$PYRO_VAE_DATA``), downloaded by torchvision
    when it is not there and ``download`` is on."""
    root = data_dir if data_dir is not None else default_data_dir()
    folder = root / FOLDER
    names = (*TRAIN_BATCHES, *TEST_BATCHES)
    if not all((folder / n).is_file() for n in names):
        if not download:
            raise DataError(f"cifar10 not found: put torchvision's {FOLDER} folder in {root}")
        with removed_if_failed(folder):
            _download(root)
    train = [read_batch(folder / n) for n in TRAIN_BATCHES]
    test = [read_batch(folder / n) for n in TEST_BATCHES]
    return Dataset.from_arrays(
        "cifar10",
        np.concatenate([images for images, _ in train]),
        np.concatenate([images for images, _ in test]),
        np.concatenate([labels for _, labels in train]),
        np.concatenate([labels for _, labels in test]),
        num_classes=10,
        info={"source": str(folder), "split": "official train/test"},
    )
