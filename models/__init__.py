"""Pyro programs: networks, priors, likelihoods, and the VAE model + guide."""

from . import semi_amortized  # noqa: F401  (registers the semi-amortized guide)
from .guides import GUIDES, GuideFamily, moments
from .likelihoods import LIKELIHOODS, Likelihood
from .networks import LAYERS, Decoder, Encoder
from .priors import PRIORS, Prior, PriorContext
from .vae import VAE, ModelSpec, build_vae, local_params
from .weight_priors import WEIGHT_PRIORS, WeightPrior

__all__ = [
    "GUIDES",
    "GuideFamily",
    "LAYERS",
    "LIKELIHOODS",
    "PRIORS",
    "VAE",
    "WEIGHT_PRIORS",
    "Decoder",
    "Encoder",
    "Likelihood",
    "ModelSpec",
    "Prior",
    "PriorContext",
    "WeightPrior",
    "build_vae",
    "local_params",
    "moments",
]
