"""pyro-vae: variational autoencoders written as explicit Pyro probabilistic programs.

The main pieces::

    from pyro_vae import load_dataset, build_vae, fit, evaluate, SVIConfig
    from pyro_vae import TrainConfig, train   # the whole run behind ``pyro-vae train``

The names are imported on first use, so ``import pyro_vae`` (and the command line's start-up)
does not load torch, Pyro or matplotlib until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Where each public name lives.
_EXPORTS = {
    "OBJECTIVES": "pyro_vae.inference",
    "Evaluation": "pyro_vae.inference",
    "FitResult": "pyro_vae.inference",
    "SVIConfig": "pyro_vae.inference",
    "evaluate": "pyro_vae.inference",
    "fit": "pyro_vae.inference",
    "LIKELIHOODS": "pyro_vae.models",
    "PRIORS": "pyro_vae.models",
    "VAE": "pyro_vae.models",
    "build_vae": "pyro_vae.models",
    "TrainConfig": "pyro_vae.config",
    "BINARIZATIONS": "pyro_vae.data",
    "DATASETS": "pyro_vae.data",
    "Dataset": "pyro_vae.data",
    "load_dataset": "pyro_vae.data",
    "PyroVAEError": "pyro_vae.core.errors",
    "resume_config": "pyro_vae.training",
    "train": "pyro_vae.training",
}

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "Dataset",
    "Evaluation",
    "FitResult",
    "LIKELIHOODS",
    "OBJECTIVES",
    "PRIORS",
    "PyroVAEError",
    "SVIConfig",
    "TrainConfig",
    "VAE",
    "build_vae",
    "evaluate",
    "fit",
    "load_dataset",
    "resume_config",
    "train",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from pyro_vae.inference import OBJECTIVES, Evaluation, FitResult, SVIConfig, evaluate, fit
    from pyro_vae.models import LIKELIHOODS, PRIORS, VAE, build_vae

    from .config import TrainConfig
    from .core.errors import PyroVAEError
    from .data import BINARIZATIONS, DATASETS, Dataset, load_dataset
    from .training import resume_config, train
