"""pyro-vae: variational autoencoders written as explicit Pyro probabilistic programs.

The main pieces::

    from pyro_vae import load_dataset, build_vae, fit, evaluate, SVIConfig
    from pyro_vae import TrainConfig, train   # the whole run behind ``pyro-vae train``
"""

from pyro_vae.inference import OBJECTIVES, Evaluation, FitResult, SVIConfig, evaluate, fit
from pyro_vae.models import LIKELIHOODS, PRIORS, VAE, build_vae

from .config import TrainConfig
from .data import BINARIZATIONS, DATASETS, Dataset, load_dataset
from .errors import PyroVAEError
from .training import resume_config, train

__version__ = "0.1.0"

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "LIKELIHOODS",
    "OBJECTIVES",
    "PRIORS",
    "VAE",
    "Dataset",
    "Evaluation",
    "FitResult",
    "PyroVAEError",
    "SVIConfig",
    "TrainConfig",
    "build_vae",
    "evaluate",
    "fit",
    "load_dataset",
    "resume_config",
    "train",
]
