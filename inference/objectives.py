"""Variational objectives by name. Each factory takes ``particles`` and returns an object
with Pyro's ``differentiable_loss(model, guide, *args, **kwargs)``.

Particles are vectorized. Programs in the VAE calling convention (model and guide both take a
``particles`` keyword, as :class:`~pyro_vae.models.VAE` and the programs of
:mod:`~pyro_vae.inference.programs` do) draw the K particles of each *local* z in their own
``particles`` plate (dim -2), inside the data plate; global sites (decoder weights under a
weight prior) stay outside it and are drawn once per step, as they are outside the data plate.
Every site in the particles plate is weighted by 1/K, so the loss is

    -[ log p(w) - log q(w) + (1/K) sum_k (local ELBO terms of particle k) ],

the mean of K one-particle losses that share the global draw. Any other program gets Pyro's
own vectorization, which puts the whole program (globals included) in a plate.
"""

from __future__ import annotations

from typing import Any

import pyro.infer
from pyro.infer import ELBO
from pyro.poutine.messenger import Messenger

from pyro_vae.core.registry import Registry

from .iwae import ImportanceWeightedELBO, takes_particles

#: The model's plates: ``data`` at dim -1, ``particles`` at dim -2.
MAX_PLATE_NESTING = 2
#: Name of the programs' own particles plate.
PARTICLES_PLATE = "particles"

OBJECTIVES: Registry = Registry("objective")


class _MeanOverParticles(Messenger):
    """Weights every sample site inside the ``particles`` plate by 1 / ``particles``."""

    def __init__(self, particles: int) -> None:
        super().__init__()
        self.particles = particles

    def _process_message(self, msg: dict) -> None:
        if any(frame.name == PARTICLES_PLATE for frame in msg["cond_indep_stack"]):
            msg["scale"] = msg["scale"] / self.particles


class LocalParticlesELBO:
    """A Pyro ELBO whose K particles vectorize the local latents only (see the module doc).

    Args:
        elbo_class: ``pyro.infer.Trace_ELBO`` or ``pyro.infer.TraceMeanField_ELBO``.
        particles: K.
    """

    def __init__(self, elbo_class: type[ELBO], particles: int = 1) -> None:
        self.particles = particles
        self._one = elbo_class(num_particles=1, max_plate_nesting=MAX_PLATE_NESTING)
        self._pyro_vectorized = elbo_class(
            num_particles=particles,
            vectorize_particles=particles > 1,
            max_plate_nesting=MAX_PLATE_NESTING - 1,
        )

    def differentiable_loss(self, model, guide, *args: Any, **kwargs: Any) -> Any:
        k = self.particles
        if k == 1 or not (takes_particles(model) and takes_particles(guide)):
            return self._pyro_vectorized.differentiable_loss(model, guide, *args, **kwargs)
        mean = _MeanOverParticles(k)
        return self._one.differentiable_loss(
            mean(model), mean(guide), *args, **{**kwargs, "particles": k}
        )


def _declares(**capabilities: Any) -> Any:
    """Set what an objective can do on its factory (``analytic_kl``: it takes the KL term in
    closed form where one is registered), for the code that reads it."""

    def declare(factory: Any) -> Any:
        for name, value in capabilities.items():
            setattr(factory, name, value)
        return factory

    return declare


@OBJECTIVES.register("elbo")
@_declares(analytic_kl=False)
def monte_carlo_kl(particles: int = 1) -> LocalParticlesELBO:
    """``Trace_ELBO``: the KL term estimated by sampling (Kingma & Welling's estimator A)."""
    return LocalParticlesELBO(pyro.infer.Trace_ELBO, particles)


@OBJECTIVES.register("elbo-analytic-kl")
@_declares(analytic_kl=True)
def analytic_kl(particles: int = 1) -> LocalParticlesELBO:
    """``TraceMeanField_ELBO``: the KL term in closed form where one is registered (estimator B).

    Pyro falls back to a Monte Carlo estimate for latent sites without a registered KL.
    """
    return LocalParticlesELBO(pyro.infer.TraceMeanField_ELBO, particles)


@OBJECTIVES.register("iwae")
@_declares(analytic_kl=False)
def importance_weighted(particles: int = 5) -> ImportanceWeightedELBO:
    """The importance-weighted bound with K = ``particles`` (Burda et al. 2016), per
    datapoint, correct under minibatch subsampling and beta (see :mod:`.iwae`)."""
    return ImportanceWeightedELBO(particles)
