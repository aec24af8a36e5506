"""The user's own images: a folder of class subfolders (torchvision's ``ImageFolder`` layout),
labels in the sorted order of the class names, split stratified and deterministically."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError, PyroVAEError
from ..core.validate import check_allocation, nonnegative_int, positive_int
from ..folders import special_kind
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
    nonnegative_int("seed", seed)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {c: _image_files(root / c) for c in classes}
    if not classes or not all(files.values()):
        empty = [c for c in classes if not files[c]]
        raise DataError(
            f"{root}: an image folder needs class subfolders holding images "
            f"({', '.join(IMAGE_SUFFIXES)})" + (f"; empty: {', '.join(empty[:5])}" if empty else "")
        )
    images, modes = _read_images(root, [path for c in classes for path in files[c]], image_size)
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
        "modes": modes,
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


#: The most pixels one image may declare (8192 x 8192); larger ones are refused unread.
MAX_IMAGE_PIXELS = 8192 * 8192
#: Bytes a decoded value costs until the data set is made (decoded, stacked, as float32).
BYTES_PER_VALUE = 12
#: Integer modes wider than 8 bits, by Pillow's name, and the largest value each declares.
WIDE_GREY = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535}


def _read_images(
    root: Path, paths: list[Path], size: int | None
) -> tuple[list[np.ndarray], dict[str, int]]:
    """Every image decoded, each checked against :data:`MAX_IMAGE_PIXELS` and the running
    total against this machine's memory before it is decoded; with the count of each mode."""
    images, modes, values = [], {}, 0
    for path in paths:
        kind = special_kind(path)
        if kind:
            raise DataError(f"{path} is {kind}, not an image file")
        image, mode = _read_image(path, size, root, values)
        values += image.size
        modes[mode] = modes.get(mode, 0) + 1
        images.append(image)
    return images, modes


def _read_image(path: Path, size: int | None, root: Path, before: int) -> tuple[np.ndarray, str]:
    """One image's pixels and mode; ``before``: the values of the folder decoded so far."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow's notes on damaged metadata stay silent;
            warnings.simplefilter("ignore")  # damaged pixels fail to decode, and are refused
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(_too_big(path, f"{width} x {height}"))
                count = (size * size if size else width * height) * len(image.getbands())
                check_allocation(f"the images of {root}", before + count, BYTES_PER_VALUE)
                return _pixels(path, image, size), image.mode
    except PyroVAEError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(_too_big(path, "more than 89 million")) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _too_big(path: Path, pixels: str) -> str:
    return (
        f"image {path} declares {pixels} pixels; pyro-vae reads images of at most "
        f"{MAX_IMAGE_PIXELS:,} pixels (8192 x 8192)"
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _pixels(path: Path, image: Any, size: int | None) -> np.ndarray:
    """``(H, W)`` or ``(3, H, W)`` pixels: uint8 for 8-bit images (colour ones as RGB), float32
    in [0, 1] for 16-bit grey ones (value / 65535), float32 as stored for float images."""
    mode = image.mode
    if mode == "I" and image.format != "PNG":  # a PNG's "I" is 16-bit grey in older Pillows
        raise DataError(
            f"image {path} holds 32-bit integer pixels, which declare no range; save it as an "
            "8- or 16-bit image, or as floats"
        )
    if mode in WIDE_GREY or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if mode != "F":
            values = values / WIDE_GREY.get(mode, 65535)
        return _resized_float(values, size)
    image = image.convert("L" if mode in ("1", "L", "LA", "La") else "RGB")
    if size is not None:
        image = image.resize((size, size))
    array = np.asarray(image, dtype=np.uint8)
    return array if array.ndim == 2 else array.transpose(2, 0, 1)


def _resized_float(values: np.ndarray, size: int | None) -> np.ndarray:
    from PIL import Image

    if size is None:
        return values
    return np.asarray(Image.fromarray(values, mode="F").resize((size, size)), dtype=np.float32)


def _same_mode_and_size(root: Path, images: list[np.ndarray]) -> np.ndarray:
    """Stack the images; grey ones become colour if the folder mixes both, and 8-bit ones
    become floats in [0, 1] if it mixes them with wider ones."""
    if any(image.ndim == 3 for image in images):
        images = [np.stack([i] * 3) if i.ndim == 2 else i for i in images]
    if any(image.dtype != np.uint8 for image in images):
        images = [i.astype(np.float32) / 255 if i.dtype == np.uint8 else i for i in images]
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise DataError(
            f"{root}: images of different sizes ({shapes[0]} and {shapes[-1]}, ...); give "
            "--dataset-opt image_size=N to resize them all"
        )
    return np.stack(images)
