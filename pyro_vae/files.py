"""Data sets from the user's own files: a ``.npz`` archive of arrays, or a folder of images in
class subfolders. ``--dataset PATH`` takes either; both become a :class:`~.data.Dataset`
checked like the built-in sets, with the file's SHA-256 (or the folder's file list) recorded.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Dataset, stratified_split
from .errors import DataError
from .registry import Registry
from .validate import positive_int

#: The arrays a ``.npz`` data set may hold.
NPZ_ARRAYS = ("train", "test", "train_labels", "test_labels")
#: Image files an image folder may hold (by suffix, lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def file_dataset(name: str, **options: Any) -> Dataset:
    """The data set at path ``name``: a ``.npz`` archive or an image folder."""
    path = Path(name).expanduser()
    if path.suffix == ".npz":
        if options:
            raise DataError(f"a .npz data set takes no options, not {', '.join(sorted(options))}")
        return npz_dataset(path)
    if path.is_dir():
        return image_folder_dataset(path, **options)
    raise DataError(f"data set {name!r}: no such .npz file or image folder")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


#: The loaders of data sets at a path, by kind (their options are checked like any family's).
FILE_LOADERS: Registry[Callable[..., Dataset]] = Registry("data file kind", positional=1)


@FILE_LOADERS.register("image folder")
def image_folder_dataset(
    root: Path, image_size: int | None = None, test_per_class: int | None = None, seed: int = 0
) -> Dataset:
    """Images in class subfolders (``root/CLASS/*.png``, torchvision's ``ImageFolder``
    layout), labels in the sorted order of the class names.

    Args:
        root: The folder.
        image_size: Resize every image to this square size; without it all images must have
            the first image's size.
        test_per_class: Test images per class (default: a fifth of the smallest class, at
            least 1), drawn with ``seed``; the split is stratified and deterministic.
        seed: Seed of the split.
    """
    if image_size is not None:
        positive_int("image_size", image_size)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {c: _image_files(root / c) for c in classes}
    if not classes or not all(files.values()):
        empty = [c for c in classes if not files[c]]
        raise DataError(
            f"{root}: an image folder needs class subfolders holding images "
            f"({', '.join(IMAGE_SUFFIXES)})" + (f"; empty: {', '.join(empty[:5])}" if empty else "")
        )
    images = [_read_image(path, image_size) for c in classes for path in files[c]]
    labels = [label for label, c in enumerate(classes) for _ in files[c]]
    pixels = _same_mode_and_size(root, images)
    y = torch.tensor(labels)
    smallest = min(len(f) for f in files.values())
    per_class = test_per_class if test_per_class is not None else max(1, smallest // 5)
    positive_int("test_per_class", per_class)
    if per_class >= smallest:
        raise DataError(
            f"{root}: {per_class} test images per class leave none for training in the "
            f"smallest class ({smallest} images)"
        )
    train, test = stratified_split(y, per_class, seed)
    info = {
        "source": str(root),
        "classes": classes,
        "files": sum(len(f) for f in files.values()),
        "split": f"stratified, {per_class} test images per class, seed {seed}",
        "image_size": image_size,
    }
    return Dataset.from_arrays(
        root.name,
        pixels[train],
        pixels[test],
        y[train],
        y[test],
        num_classes=len(classes),
        info=info,
    )


def _read_image(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return _pixels(image, size)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _pixels(image: Any, size: int | None) -> np.ndarray:
    """``(H, W)`` or ``(3, H, W)`` uint8 pixels; colour images become RGB."""
    image = image.convert("L" if image.mode in ("1", "L", "I;16", "I", "F") else "RGB")
    if size is not None:
        image = image.resize((size, size))
    array = np.asarray(image, dtype=np.uint8)
    return array if array.ndim == 2 else array.transpose(2, 0, 1)


def _same_mode_and_size(root: Path, images: list[np.ndarray]) -> np.ndarray:
    """Stack the images; grey ones become colour if the folder mixes both."""
    if any(image.ndim == 3 for image in images):
        images = [np.stack([i] * 3) if i.ndim == 2 else i for i in images]
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise DataError(
            f"{root}: images of different sizes ({shapes[0]} and {shapes[-1]}, ...); give "
            "--dataset-opt image_size=N to resize them all"
        )
    return np.stack(images)
