"""User-facing errors: the CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations


class PyroVAEError(Exception):
    """Base class for errors caused by the user's input (names, values, files, data)."""


class ConfigError(PyroVAEError, ValueError):
    """An option or argument has a value that is not accepted."""


class UnknownNameError(ConfigError):
    """A name is not in its registry; the message lists the valid names."""


class DataError(PyroVAEError):
    """A data set cannot be found, read, or modelled as asked."""


class CheckpointError(PyroVAEError):
    """A run folder or checkpoint is missing, unsafe or incompatible."""


class TrainingDiverged(PyroVAEError):
    """The loss or its gradients became NaN or infinite."""


class TrainingInterrupted(Exception):
    """A fit stopped on request (SIGINT / SIGTERM) after saving its state; not an input error.

    Args:
        epoch: The epoch (1-based) the fit will continue in.
        step: Steps of that epoch already done.
    """

    def __init__(self, epoch: int, step: int, signal_number: int | None = None) -> None:
        super().__init__(f"stopped in epoch {epoch} after step {step}")
        self.epoch = epoch
        self.step = step
        self.signal_number = signal_number
        #: Where the state was saved (set by :func:`pyro_vae.train`).
        self.checkpoint = None
