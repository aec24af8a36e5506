"""Variational objectives by name. Each factory takes ``num_particles`` and returns an object
with Pyro's ``differentiable_loss(model, guide, *args, **kwargs)``.

Particles are vectorized: Pyro runs the model and guide once over an extra plate (dim -2).
"""

from __future__ import annotations

import pyro.infer
from pyro.infer import ELBO

from pyro_vae.registry import Registry

from .iwae import ImportanceWeightedELBO

#: The model's only plate is ``data`` at dim -1.
MAX_PLATE_NESTING = 1

OBJECTIVES: Registry = Registry("objective")


@OBJECTIVES.register("elbo")
def monte_carlo_kl(num_particles: int = 1) -> ELBO:
    """``Trace_ELBO``: the KL term estimated by sampling (Kingma & Welling's estimator A)."""
    return pyro.infer.Trace_ELBO(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


@OBJECTIVES.register("elbo-analytic-kl")
def analytic_kl(num_particles: int = 1) -> ELBO:
    """``TraceMeanField_ELBO``: the KL term in closed form where one is registered (estimator B).

    Pyro falls back to a Monte Carlo estimate for latent sites without a registered KL.
    """
    return pyro.infer.TraceMeanField_ELBO(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


@OBJECTIVES.register("iwae")
def importance_weighted(num_particles: int = 5) -> ImportanceWeightedELBO:
    """The importance-weighted bound with K = ``num_particles`` (Burda et al. 2016), per
    datapoint, correct under minibatch subsampling and beta (see :mod:`.iwae`)."""
    return ImportanceWeightedELBO(num_particles)
