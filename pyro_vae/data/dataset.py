"""The data-set record every source returns, with the checks it makes of itself, and the row
selections (stratified split, evenly spaced subset) that sources and diagnostics share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.errors import ConfigError, DataError
from ..core.validate import positive_int
from .arrays import image_rows, label_vector


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
    _sha256: str | None = field(default=None, init=False, repr=False, compare=False)

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
        train_x, shape, train_last = image_rows(name, "training", train)
        test_x, test_shape, test_last = image_rows(name, "test", test)
        if shape != test_shape:
            raise DataError(
                f"{name}: training datapoints have shape {shape or tuple(train_x.shape[1:])}, "
                f"test datapoints {test_shape or tuple(test_x.shape[1:])}"
            )
        return cls(
            name,
            train_x,
            test_x,
            label_vector(name, "training", train_labels),
            label_vector(name, "test", test_labels),
            shape,
            _with_layout(info, train_last or test_last),
            num_classes=num_classes,
        )

    @property
    def data_dim(self) -> int:
        return self.train_x.shape[1]

    @property
    def has_labels(self) -> bool:
        return self.train_labels is not None

    def content_sha256(self) -> str:
        """SHA-256 of the values a model sees: both splits' data and labels (their shapes,
        element types and bytes) and the image shape; computed once.

        Two loads of the same data give the same fingerprint; any changed value, a label
        added or removed, or a new split gives another, whatever file format held them.
        """
        if self._sha256 is None:
            digest = hashlib.sha256(repr(self.image_shape).encode())
            for part in (self.train_x, self.test_x, self.train_labels, self.test_labels):
                if part is None:
                    digest.update(b"none")
                    continue
                array = part.detach().cpu().contiguous().numpy()
                digest.update(f"{array.dtype.str}{array.shape}".encode())
                digest.update(memoryview(array).cast("B"))
            self._sha256 = digest.hexdigest()
        return self._sha256


def _with_layout(info: dict[str, Any] | None, channels_last: bool) -> dict[str, Any]:
    info = dict(info or {})
    if channels_last:
        info["layout"] = "channels-last (N, H, W, C), read as (N, C, H, W)"
    return info


def _check_images(data: Dataset) -> None:
    for split, x in (("training", data.train_x), ("test", data.test_x)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
            raise DataError(f"{data.name}: the {split} data must be a 2-D float tensor")
        if len(x) == 0:
            raise DataError(f"{data.name}: the {split} data are empty")
        if x.shape[1] == 0:
            raise DataError(
                f"{data.name}: the {split} datapoints have no values (shape "
                f"{data.image_shape or (0,)}); a datapoint needs at least one"
            )
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
    if data.num_classes is not None:
        try:
            positive_int("num_classes", data.num_classes)
        except ConfigError as err:
            raise DataError(f"{data.name}: {err}") from None
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
        missing = _first_missing(seen, count=5)
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


def _first_missing(seen: list[int], count: int) -> list[int]:
    """The first ``count`` integers from 0 not in ``seen`` (sorted, distinct, non-negative),
    found without enumerating the range, whose end may be as large as a label."""
    missing: list[int] = []
    expected = 0
    for value in seen:
        while expected < value and len(missing) < count:
            missing.append(expected)
            expected += 1
        if len(missing) == count:
            break
        expected = value + 1
    return missing


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
