"""What every command shares: the data as a run models them, and the output folder it writes
(checked, claimed by one process, tidied on failure).

``train``, ``compare`` and ``diagnose`` each write one folder (``--out``). Before any work the
folder is checked (:func:`check_out_dir`); then :func:`claimed_out_dir` creates it and holds an
exclusive lock on it for the whole command. If the command fails or is interrupted, what it
wrote is removed, unless it is worth keeping (``train`` keeps a folder once a checkpoint is in
it, so the run can be resumed); a resumed folder is never removed.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from .checkpoint import latest_checkpoint
from .config import TrainConfig, check_device
from .core.errors import CheckpointError, ConfigError
from .data import BINARIZATIONS, Binarization, Dataset, load_dataset
from .folders import missing_folders, remove_empty, special_kind

#: Draws per training image for the reported train ELBO.
TRAIN_ELBO_SAMPLES = 10


@dataclass
class RunData:
    """A data set on a device, as a run models it.

    ``train_x`` is raw (a fit with dynamic binarization draws it afresh every epoch);
    ``train_fixed`` and ``test_x`` are binarized once with the fixed test seed, so every run and
    every command scores the same pixels.
    """

    data: Dataset
    binarization: Binarization
    train_x: torch.Tensor
    train_fixed: torch.Tensor
    train_labels: torch.Tensor | None
    test_x: torch.Tensor
    test_labels: torch.Tensor | None

    @property
    def num_classes(self) -> int | None:
        return self.data.num_classes

    def record(self) -> dict[str, Any]:
        """What ``metrics.json`` says of the data: the source, its fingerprint, the split and
        the image shape."""
        shape = self.data.image_shape
        return {
            **self.data.info,
            "content_sha256": self.data.content_sha256(),
            "num_train": len(self.train_x),
            "num_test": len(self.test_x),
            "image_shape": None if shape is None else list(shape),
        }


def run_data(
    config: TrainConfig, device: str | torch.device | None = None, num_test: int | None = None
) -> RunData:
    """Load the run's data set onto ``device`` (default: the run's own) as the run models it;
    ``num_test`` keeps the first test images only (before they are binarized)."""
    device = device if device is not None else config.device
    device = check_device(str(device)) if isinstance(device, str) else device
    data = load_dataset(config.dataset, config.data_dir, **config.dataset_options)
    chosen = BINARIZATIONS[config.binarization]
    test_x, test_labels = data.test_x[:num_test], data.test_labels
    train_x = data.train_x.to(device)
    return RunData(
        data=data,
        binarization=chosen,
        train_x=train_x,
        train_fixed=chosen.fixed(train_x),
        train_labels=None if data.train_labels is None else data.train_labels.to(device),
        test_x=chosen.fixed(test_x.to(device)),
        test_labels=None if test_labels is None else test_labels[:num_test].to(device),
    )


#: The lock file that marks a run folder as taken by a running process.
LOCK_NAME = ".lock"


def check_out_dir(out: Path, resume: bool, resumable: bool = True) -> None:
    """Refuse an output folder that is a file, not writable, or (unless resuming) not empty.

    ``resumable``: whether the command has ``--resume`` to suggest for an occupied folder.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {str(out)!r} is a file")
    if resume:
        for path in (out / "config.json", latest_checkpoint(out)):
            kind = special_kind(path)
            if kind:
                raise CheckpointError(f"cannot resume: {path} is {kind}, not a file")
            if not path.is_file():
                raise CheckpointError(f"cannot resume: {path} does not exist")
        if not os.access(out, os.W_OK):
            raise ConfigError(f"output folder {str(out)!r} is not writable")
        return
    if out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        advice = "choose a new one or add --resume" if resumable else "choose a new --out"
        raise ConfigError(f"output folder {str(out)!r} already holds files; {advice}")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot create output folder {str(out)!r}: {parent} is not writable")


@contextmanager
def claimed_out_dir(
    out: Path, *, resume: bool = False, keep_partial: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Create ``out`` and hold it for this process alone while the block runs.

    The lock is an advisory ``fcntl`` lock on ``out/.lock``: the kernel releases it when the
    process ends, however it ends. A folder another pyro-vae process holds is refused in one
    line; so is one that another process filled between the checks and the lock (unless
    resuming). When the block raises (an error, Ctrl-C, SIGTERM) everything it wrote is removed,
    including the folders this call created, unless ``resume`` or ``keep_partial()``.
    """
    created = missing_folders(out)
    try:
        lock = _lock(out, resume)
    except BaseException:
        remove_empty(created)  # only while empty: another process may have made it meanwhile
        raise
    try:
        yield
    except BaseException:
        if not resume and not keep_partial():
            _remove_created(out, created)
        raise
    finally:
        lock.close()


def _lock(out: Path, resume: bool) -> IO[str]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create output folder {str(out)!r}: {err.strerror or err}"
        ) from err
    try:  # never through a link: the lock file is made or opened in the folder itself
        fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC)
        lock = os.fdopen(fd, "r+")
    except OSError as err:
        raise ConfigError(
            f"cannot take output folder {str(out)!r}: {out / LOCK_NAME}: {err.strerror or err}"
        ) from err
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not resume:
            check_out_dir(out, resume=False, resumable=False)  # nobody filled it meanwhile
    except OSError:
        lock.close()
        raise ConfigError(
            f"output folder {str(out)!r} is in use by another pyro-vae process; wait for it "
            "to finish or choose another --out"
        ) from None
    except BaseException:
        lock.close()
        raise
    return lock


def _remove_created(out: Path, created: list[Path]) -> None:
    """Remove what this command wrote: the folders it created, or, in a folder that was
    there (empty) before, everything but the lock file."""
    if created:
        shutil.rmtree(created[0], ignore_errors=True)
        remove_empty(created[1:])
        return
    if not out.is_dir():
        return
    for path in out.iterdir():
        if path.name == LOCK_NAME:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import pyro
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pyro": pyro.__version__,
    }
