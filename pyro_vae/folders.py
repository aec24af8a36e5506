"""Folders a command creates, and taking them away again when it fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextmanager
def removed_if_failed(path: Path) -> Iterator[None]:
    """If the block raises (an error or an interrupt), remove again the folders from ``path``
    up that it created and left empty."""
    created = missing_folders(path)
    try:
        yield
    except BaseException:
        remove_empty(created)
        raise
