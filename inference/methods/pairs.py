"""One point z per datapoint and the decoder, by ``AutoDelta``: ``mle-pairs`` under flat
priors, ``map-pairs`` under the latent prior and a weight prior."""

from __future__ import annotations

import time

import pyro
from pyro_vae.models import WEIGHT_PRIORS
from pyro_vae.models.weight_priors import check_point_estimate

from pyro_vae.core.errors import ConfigError

from ..programs import PointLatents
from .problem import (
    METHODS,
    MethodResult,
    Problem,
    Runner,
    fit_problem,
    with_proposal,
)
from .refusals import (
    point_estimate_svi,
    refuse_encoder_prior,
    refuse_kl_weight,
    refuse_learnable_prior,
    weight_prior_of,
)


def _pairs(name: str, flat_latent: bool, default_weight_prior: str) -> Runner:
    def check(problem: Problem) -> None:
        point_estimate_svi(problem, name)
        prior = problem.latent_prior()  # built once for both prior checks
        refuse_encoder_prior(prior, name)
        refuse_kl_weight(problem, name, "is a joint point estimate of z and the weights")
        weight_prior = weight_prior_of(problem, default_weight_prior)
        if flat_latent and not WEIGHT_PRIORS[weight_prior].plain_decoder:
            raise ConfigError(
                f"{name} is maximum likelihood: its weight prior is flat, not {weight_prior!r}; "
                "use map-pairs for a weight prior"
            )
        check_point_estimate(weight_prior, f"{name} is a point estimate")
        why = (
            "puts a flat prior on z"
            if flat_latent
            else "has no maximum under a learned prior (it can collapse onto one z_i)"
        )
        refuse_learnable_prior(prior, name, why)

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        svi = point_estimate_svi(problem, name)
        vae = problem.build(weight_prior_of(problem, default_weight_prior), flat_latent=flat_latent)
        program = PointLatents(vae, problem.x, problem.labels)
        history = fit_problem(program, problem, svi)
        if flat_latent:  # the fitted decoder is evaluated under the model's real prior
            with pyro.settings.context(module_local_params=True):
                vae.prior = vae.prior.base
        return with_proposal(name, program, vae, history, problem, start)

    return Runner(name, run, check)


@METHODS.register("mle-pairs")
def mle_pairs() -> Runner:
    """Maximum likelihood with a point z_i per datapoint: flat priors on z and weights."""
    return _pairs("mle-pairs", flat_latent=True, default_weight_prior="flat")


@METHODS.register("map-pairs")
def map_pairs() -> Runner:
    """MAP with a point z_i per datapoint under the latent prior and a weight prior."""
    return _pairs("map-pairs", flat_latent=False, default_weight_prior="normal")
