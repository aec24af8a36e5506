"""Folders a command creates, taking them away again when it fails, and files that are not
regular files."""

from __future__ import annotations

import os
import stat
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


#: What a file that is not a regular file or folder is, by its ``stat`` type.
_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(path: Path) -> str | None:
    """What ``path`` (links followed) is if it exists but is neither a regular file nor a
    folder: reading such a file can block forever or never end. ``None`` otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((words for test, words in _SPECIAL if test(mode)), None)
