"""Data sets by name or by path, and the binarization modes that go with every result.

Every source returns a :class:`Dataset`: train/test tensors of shape ``(n, features)`` with
values in [0, 1] for images (real values for ``ppca``), labels where there are any, and
``info``, a JSON-ready record of where the data came from and how they were split.

The members, one file each: ``mnist`` (``mnist5k``, ``mnist``, ``fashion-mnist``),
``cifar10``, ``ppca`` by name; ``npz`` and ``image_folder`` by path. A new source is one file
that registers itself in :data:`DATASETS` or, with :func:`file_format`, in
:data:`FILE_FORMATS`, plus its line below.
"""

from __future__ import annotations

from . import cifar10, image_folder, mnist, npz, ppca  # noqa: F401  (the members register)
from .binarization import BINARIZATIONS, TEST_BINARIZATION_SEED, Binarization, check_unit_interval
from .dataset import Dataset, evenly_spaced, stratified_split
from .sources import (
    DATASETS,
    FILE_FORMATS,
    check_dataset,
    default_data_dir,
    file_format,
    load_dataset,
    resolve,
)

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "FILE_FORMATS",
    "TEST_BINARIZATION_SEED",
    "Binarization",
    "Dataset",
    "check_dataset",
    "check_unit_interval",
    "default_data_dir",
    "evenly_spaced",
    "file_format",
    "load_dataset",
    "resolve",
    "stratified_split",
]
