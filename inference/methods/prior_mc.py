"""Maximum likelihood through random draws of the prior (``mle-prior-mc``)."""

from __future__ import annotations

import time
from dataclasses import replace

from pyro_vae.models import WEIGHT_PRIORS

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import positive_int

from ..programs import PriorProposal
from .problem import (
    METHODS,
    MethodResult,
    Problem,
    Runner,
    fit_problem,
    with_proposal,
)
from .refusals import (
    refuse_encoder_prior,
    refuse_gradient,
    refuse_kl_weight,
    refuse_learnable_prior,
    weight_prior_of,
)


@METHODS.register("mle-prior-mc")
def mle_prior_mc(particles: int = 10) -> Runner:
    """Maximise the simulated likelihood log (1/K) sum_k p(x|z_k), z_k ~ p(z), K = particles."""
    positive_int("mle-prior-mc particles", particles)

    name = "mle-prior-mc"

    def check(problem: Problem) -> None:
        prior = problem.latent_prior()  # built once for both prior checks
        refuse_encoder_prior(prior, name)
        if not WEIGHT_PRIORS[weight_prior_of(problem, "flat")].plain_decoder:
            raise ConfigError(f"{name} is maximum likelihood: its weight prior must be flat")
        refuse_kl_weight(problem, name, "has no KL term")
        if problem.svi.particles != 1:
            raise ConfigError(
                f"{name} sets its own number of prior draws: use its particles option, "
                f"not particles={problem.svi.particles}"
            )
        refuse_learnable_prior(prior, name, "draws z from the prior and never fits it")
        refuse_gradient(problem, name, "draws z from the prior")

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        vae = problem.build(None)
        program = PriorProposal(vae)
        svi = replace(problem.svi, objective="iwae", particles=particles)
        history = fit_problem(program, problem, svi)
        result = with_proposal(name, program, vae, history, problem, start)
        result.details = {**result.details, "particles": particles}
        return result

    return Runner(name, run, check)
