"""Arrays from outside (NumPy, torch, the arrays of a file) turned into the record's tensors:
their element type read by kind and refused by name where it is not numbers, the byte order
made native, channels-last images read as channels-first.

The same checks serve a file's arrays before they are read (:func:`check_values_dtype` and
:func:`check_labels_dtype` on the dtype in a ``.npy`` header) and arrays given from Python.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError
from ..core.validate import MAX_INT

#: What each NumPy dtype kind that is not a number is, in a user's words.
_NOT_NUMBERS = {
    "U": "text",
    "S": "bytes",
    "V": "structured or raw-byte records",
    "O": "Python objects, which pyro-vae never unpickles",
    "M": "dates",
    "m": "time spans",
    "c": "complex numbers",
}
#: Channel counts an image may have (grey, colour, colour with alpha).
CHANNELS = (1, 3, 4)


def _kind_words(dtype: np.dtype) -> str:
    """``text (dtype <U1)``: what the elements are, and the dtype as NumPy writes it."""
    words = _NOT_NUMBERS.get(dtype.kind, "of an unknown kind")
    head, _, tail = words.partition(", ")
    return f"{head} (dtype {dtype.str})" + (f", {tail}" if tail else "")


def check_values_dtype(what: str, dtype: np.dtype) -> None:
    """Data are uint8 images (0..255), booleans or floats; anything else is refused by name."""
    dtype = np.dtype(dtype)
    if dtype.kind in "bf" or (dtype.kind == "u" and dtype.itemsize == 1):
        return
    if dtype.kind in "iu":
        raise DataError(f"{what} are {dtype.name}; give uint8 images (0..255) or floats")
    raise DataError(f"{what} are {_kind_words(dtype)}; give uint8 images (0..255) or floats")


def check_labels_dtype(what: str, dtype: np.dtype) -> None:
    """Labels are integers; floats, booleans and non-numbers are refused by name."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return
    words = dtype.name if dtype.kind in "bf" else _kind_words(dtype)
    raise DataError(f"{what} must be integers, not {words}")


def native(array: np.ndarray) -> np.ndarray:
    """The array in this machine's byte order (big-endian files are legal)."""
    if array.dtype.byteorder not in ("=", "|") and not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def _as_numpy(what: str, array: Any) -> np.ndarray | torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array
    try:
        return np.asarray(array)
    except (ValueError, TypeError) as err:  # ragged nested lists, unconvertible objects
        raise DataError(f"{what} are not one rectangular array: {err}") from None


def image_rows(
    name: str, split: str, array: Any
) -> tuple[torch.Tensor, tuple[int, ...] | None, bool]:
    """Flat float rows, the image shape (``None`` for features) and whether the images were
    stored channels-last, for one split's array.

    A 4-D array whose second axis is not a channel count (1, 3 or 4) but whose last axis is
    one, ``(N, H, W, C)``, is read as ``(N, C, H, W)``; where both are, channels-first is
    assumed, as documented.
    """
    what = f"{name}: the {split} data"
    x = _as_numpy(what, array)
    if isinstance(x, np.ndarray):
        check_values_dtype(what, x.dtype)
        x = torch.from_numpy(native(x))
    if x.dim() not in (2, 3, 4):
        raise DataError(
            f"{what} must be (N, D) features or (N, H, W) / (N, C, H, W) / (N, H, W, C) "
            f"images, not shape {tuple(x.shape)}"
        )
    channels_last = x.dim() == 4 and x.shape[1] not in CHANNELS and x.shape[-1] in CHANNELS
    if channels_last:
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype == torch.bool or x.is_floating_point():
        x = x.float()
    else:
        raise DataError(f"{what} are {x.dtype}; give uint8 images (0..255) or floats")
    shape = tuple(x.shape[1:]) if x.dim() > 2 else None
    if shape is not None and len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]  # one channel: a grey image
    return x.reshape(len(x), math.prod(x.shape[1:])), shape, channels_last


def label_vector(name: str, split: str, labels: Any) -> torch.Tensor | None:
    """Integer labels as a ``long`` tensor; values beyond 2^31 - 1 are refused before any
    size is derived from them."""
    if labels is None:
        return None
    what = f"{name}: the {split} labels"
    y = _as_numpy(what, labels)
    if isinstance(y, np.ndarray):
        check_labels_dtype(what, y.dtype)
        y = native(y)
        if y.size and y.dtype.kind == "u" and int(y.max()) > MAX_INT:
            raise DataError(f"{what} run to {int(y.max())}; labels must be 0..C-1")
        y = torch.from_numpy(y.astype(np.int64, copy=False))
    elif y.is_floating_point() or y.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise DataError(f"{what} must be integers, not {y.dtype}")
    return y.long()
