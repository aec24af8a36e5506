"""The user's own images: a folder of class subfolders (torchvision's ``ImageFolder`` layout),
labels in the sorted order of the class names, split stratified and deterministically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError
from ..core.validate import positive_int
from .dataset import Dataset, stratified_split
from .sources import file_format

#: Image files an image folder may hold (by suffix, lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@file_format("image folder", describes="an image folder", matches=Path.is_dir)
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
