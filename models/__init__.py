"""Pyro programs: networks, priors, likelihoods, and the VAE model + guide."""

from .likelihoods import LIKELIHOODS, Likelihood
from .networks import Decoder, Encoder
from .priors import PRIORS, Prior, PriorContext
from .vae import VAE, build_vae, local_params

__all__ = [
    "LIKELIHOODS",
    "PRIORS",
    "VAE",
    "Decoder",
    "Encoder",
    "Likelihood",
    "Prior",
    "PriorContext",
    "build_vae",
    "local_params",
]
