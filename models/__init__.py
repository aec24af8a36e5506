"""Pyro programs: networks, priors, likelihoods, and the VAE model + guide."""

from . import (
    conv,  # noqa: F401  (registers the conv network)
    semi_amortized,  # noqa: F401  (registers the semi-amortized guide)
)
from .guides import GUIDES, EncoderGuide, GuideFamily, moments
from .likelihoods import LIKELIHOODS, Likelihood
from .networks import LAYERS, NETWORKS, Decoder, Networks
from .priors import PRIORS, Prior, PriorContext
from .semi_supervised import SemiSupervisedVAE
from .vae import VAE, ModelSpec, build_vae, local_params
from .weight_priors import WEIGHT_PRIORS, WeightPrior

__all__ = [
    "GUIDES",
    "EncoderGuide",
    "GuideFamily",
    "LAYERS",
    "NETWORKS",
    "LIKELIHOODS",
    "PRIORS",
    "VAE",
    "WEIGHT_PRIORS",
    "Decoder",
    "Networks",
    "Likelihood",
    "ModelSpec",
    "Prior",
    "PriorContext",
    "SemiSupervisedVAE",
    "WeightPrior",
    "build_vae",
    "local_params",
    "moments",
]
