"""Where a data set comes from: a registered name (:data:`DATASETS`) or a path whose file
format (:data:`FILE_FORMATS`) is recognised by the format itself. The one place a name or a
path is resolved, for checking options before anything is loaded and for loading."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import DataError, UnknownNameError
from ..core.registry import Registry
from .dataset import Dataset

#: Data sets by name; each factory takes the data folder (or ``None``) and its options.
DATASETS: Registry[Callable[..., Dataset]] = Registry("data set", positional=1)
#: Loaders of data sets at a path, by format; each takes the path and its options, and
#: declares ``describes`` (words for messages) and ``matches(path)``.
FILE_FORMATS: Registry[Callable[..., Dataset]] = Registry("data file format", positional=1)


def default_data_dir() -> Path:
    """``$PYRO_VAE_DATA`` if set, else ``~/.cache/pyro-vae``."""
    return Path(os.environ.get("PYRO_VAE_DATA", "~/.cache/pyro-vae")).expanduser()


def file_format(
    name: str, *, describes: str, matches: Callable[[Path], bool]
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a loader of data sets at a path: ``matches(path)`` says whether a path is in
    this format, ``describes`` names it in messages (``"a .npz file"``)."""

    def add(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        loader.describes = describes  # type: ignore[attr-defined]
        loader.matches = matches  # type: ignore[attr-defined]
        return FILE_FORMATS.register(name)(loader)

    return add


def _looks_like_path(name: str) -> bool:
    path = Path(name).expanduser()
    return "/" in name or bool(path.suffix) or os.path.lexists(path)


def resolve(name: str) -> tuple[str, Path] | None:
    """``(format, path)`` for a data set at a path, ``None`` for a registered name.

    Raises :class:`UnknownNameError` for a name that is neither, listing both kinds.
    """
    if name in DATASETS:
        return None
    path = Path(name).expanduser()
    for format_name, loader in FILE_FORMATS.items():
        if loader.matches(path):
            return format_name, path
    kinds = " or ".join(loader.describes for loader in FILE_FORMATS.values())
    if _looks_like_path(name):
        raise UnknownNameError(
            f"data set {name!r}: not {kinds}, and not one of: " + ", ".join(sorted(DATASETS))
        )
    raise UnknownNameError(
        f"unknown data set {name!r}; choose one of: {', '.join(sorted(DATASETS))}; or give {kinds}"
    )


def check_dataset(name: str, options: dict[str, Any]) -> None:
    """Refuse an unknown data set, a missing file or folder, or options its loader does not
    take, before anything is loaded."""
    found = resolve(name)
    if found is None:
        DATASETS.check_options(name, options)
    else:
        FILE_FORMATS.check_options(found[0], options)


def load_dataset(name: str, data_dir: str | Path | None = None, **options: Any) -> Dataset:
    """Load the data set registered as ``name``, or the one at a path.

    Args:
        name: One of :data:`DATASETS` (``mnist5k``, ``fashion-mnist``, ``mnist``, ``cifar10``,
            ``ppca``), or a path in one of the :data:`FILE_FORMATS` (a ``.npz`` file, an image
            folder).
        data_dir: Folder to look in and cache into; it must exist if given.
        **options: Loader options (see each loader).
    """
    found = resolve(name)
    if found is not None:
        return FILE_FORMATS.build(found[0], found[1], **options)
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise DataError(f"data folder {str(data_dir)!r} does not exist or is not a folder")
    return DATASETS.build(name, data_dir, **options)
