"""The data-set record every source returns, with the checks it makes of itself, and the row
selections (stratified split, evenly spaced subset) that sources and diagnostics share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError


@dataclass
class Dataset:
    """Train and test data as flat float tensors, with labels and provenance.

    Every array is checked against every other when the record is made, before any work:
    shapes, finite values, one label per image, labels in ``0..num_classes-1`` and every test
    label a class seen in training. ``num_classes`` is the number of classes the data set
    declares; if it is not given it is read from the training labels, which must then hold every
    class from 0 to their maximum.
    """

    name: str
    train_x: torch.Tensor
    test_x: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    image_shape: tuple[int, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None

    def __post_init__(self) -> None:
        _check_images(self)
        if self.train_labels is not None and self.test_labels is not None:
            self.num_classes = _check_labels(self)
        elif (self.train_labels is None) != (self.test_labels is None):
            raise DataError(f"{self.name}: labels for one split only; give both or neither")
        else:
            self.num_classes = None

    @classmethod
    def from_arrays(
        cls,
        name: str,
        train: Any,
        test: Any,
        train_labels: Any = None,
        test_labels: Any = None,
        *,
        num_classes: int | None = None,
        info: dict[str, Any] | None = None,
    ) -> Dataset:
        """A data set from arrays (NumPy or torch) in one call.

        Args:
            name: What to call it in messages and results.
            train: Training images ``(N, H, W)`` or ``(N, C, H, W)``, or features ``(N, D)``.
                ``uint8`` images are scaled to [0, 1] (k / 255); floats are kept as they are.
            test: Test data of the same shape per datapoint.
            train_labels: Integer labels, one per training datapoint (optional).
            test_labels: The same for the test data (give both or neither).
            num_classes: Classes the labels come from (default: the largest label + 1).
            info: Provenance recorded in ``metrics.json``.
        """
        train_x, shape = _as_rows(name, "training", train)
        test_x, test_shape = _as_rows(name, "test", test)
        if shape != test_shape:
            raise DataError(
                f"{name}: training datapoints have shape {shape or train_x.shape[1:]}, test "
                f"datapoints {test_shape or test_x.shape[1:]}"
            )
        return cls(
            name,
            train_x,
            test_x,
            _as_labels(name, "training", train_labels),
            _as_labels(name, "test", test_labels),
            shape,
            dict(info or {}),
            num_classes=num_classes,
        )

    @property
    def data_dim(self) -> int:
        return self.train_x.shape[1]

    @property
    def has_labels(self) -> bool:
        return self.train_labels is not None


def _as_rows(name: str, split: str, array: Any) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """Flat float rows and the image shape (``None`` for features) of one split's array."""
    x = torch.as_tensor(np.asarray(array)) if not isinstance(array, torch.Tensor) else array
    if x.dim() not in (2, 3, 4):
        raise DataError(
            f"{name}: the {split} data must be (N, D) features or (N, H, W) / (N, C, H, W) "
            f"images, not shape {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype == torch.bool:
        x = x.float()
    elif x.is_floating_point():
        x = x.float()
    else:
        raise DataError(
            f"{name}: the {split} data are {x.dtype}; give uint8 images (0..255) or floats"
        )
    shape = tuple(x.shape[1:]) if x.dim() > 2 else None
    if shape is not None and len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]  # one channel: a grey image
    return x.reshape(len(x), -1), shape


def _as_labels(name: str, split: str, labels: Any) -> torch.Tensor | None:
    if labels is None:
        return None
    y = torch.as_tensor(np.asarray(labels)) if not isinstance(labels, torch.Tensor) else labels
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(f"{name}: the {split} labels must be integers, not {y.dtype}")
    return y.long()


def _check_images(data: Dataset) -> None:
    for split, x in (("training", data.train_x), ("test", data.test_x)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
            raise DataError(f"{data.name}: the {split} data must be a 2-D float tensor")
        if len(x) == 0:
            raise DataError(f"{data.name}: the {split} data are empty")
        if not torch.isfinite(x).all():
            raise DataError(f"{data.name}: the {split} data contain NaN or infinite values")
    if data.train_x.shape[1] != data.test_x.shape[1]:
        raise DataError(
            f"{data.name}: training data have {data.train_x.shape[1]} features per datapoint, "
            f"test data {data.test_x.shape[1]}"
        )


def _check_labels(data: Dataset) -> int:
    """Check the labels against the data and each other; return the number of classes."""
    for split, x, y in (
        ("training", data.train_x, data.train_labels),
        ("test", data.test_x, data.test_labels),
    ):
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.is_floating_point():
            raise DataError(f"{data.name}: the {split} labels must be a 1-D integer tensor")
        if len(y) != len(x):
            raise DataError(f"{data.name}: {len(y)} {split} labels for {len(x)} {split} datapoints")
    seen = torch.unique(data.train_labels).tolist()
    classes = data.num_classes if data.num_classes is not None else int(seen[-1]) + 1
    for split, y in (("training", data.train_labels), ("test", data.test_labels)):
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            raise DataError(
                f"{data.name}: {split} labels run from {low} to {high}; "
                f"they must lie in 0..{classes - 1}"
            )
    if data.num_classes is None and len(seen) != classes:
        missing = sorted(set(range(classes)) - set(seen))[:5]
        raise DataError(
            f"{data.name}: training labels run to {classes - 1} but lack class(es) "
            f"{', '.join(map(str, missing))}; labels must be 0..C-1 with every class present"
        )
    unseen = sorted(set(torch.unique(data.test_labels).tolist()) - set(seen))
    if unseen:
        raise DataError(
            f"{data.name}: test labels {', '.join(map(str, unseen[:5]))} are classes the "
            "training data do not have"
        )
    return classes


def stratified_split(y: torch.Tensor, test_per_class: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Train and test rows: ``test_per_class`` rows of each label drawn with ``seed`` for test,
    the rest for training, each sorted."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in torch.unique(y):
        idx = torch.nonzero(y == label).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def evenly_spaced(n: int, count: int) -> torch.Tensor:
    """``count`` indices spread evenly over ``0..n-1`` (all of them if ``count >= n``): a subset
    that covers a test set sorted by label."""
    if count >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, count).round().long()
