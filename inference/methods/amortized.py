"""Amortized VI with the encoder as q(z|x) (``vae``)."""

from __future__ import annotations

import time
from dataclasses import replace

from pyro_vae.models import WEIGHT_PRIORS
from pyro_vae.models.weight_priors import check_point_estimate

from ..guide_checks import check_guide
from ..programs import PointWeights
from ..svi import SVIConfig
from .problem import (
    METHODS,
    MethodResult,
    Problem,
    Runner,
    fit_problem,
    point_decoder,
)
from .refusals import (
    weight_prior_of,
)


@METHODS.register("vae")
def amortized_vi(objective: str | None = None, particles: int | None = None) -> Runner:
    """Amortized VI; ``objective`` / ``particles`` override the problem's SVI settings."""

    def svi_of(problem: Problem) -> SVIConfig:
        return replace(
            problem.svi,
            objective=objective or problem.svi.objective,
            particles=particles or problem.svi.particles,
        )

    def check(problem: Problem) -> None:
        svi = svi_of(problem)
        weight_prior = weight_prior_of(problem, "flat")
        plain = WEIGHT_PRIORS[weight_prior].plain_decoder
        if not plain:
            check_point_estimate(weight_prior, "the vae and iwae decoders are point estimates")
        check_guide(problem.model.guide, svi, point_decoder=plain)

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        svi = svi_of(problem)
        weight_prior = weight_prior_of(problem, "flat")
        notes = []
        if WEIGHT_PRIORS[weight_prior].plain_decoder:
            vae = program = problem.build(None)
            notes.append(
                "decoder weights: plain parameters maximising the ELBO with the encoder "
                "(variational EM, not maximum likelihood)"
            )
        else:
            vae = problem.build(weight_prior)
            program = PointWeights(vae)
            notes.append(
                f"decoder weights: point estimate maximising the ELBO plus the log "
                f"{weight_prior} weight prior"
            )
        history = fit_problem(program, problem, svi)
        return MethodResult(
            "vae" if svi.objective != "iwae" else "iwae",
            point_decoder(program, vae),
            history,
            notes=notes,
            details={"objective": svi.objective, "particles": svi.particles},
            wall_time=time.perf_counter() - start,
            program=program,
        )

    return Runner("iwae" if objective == "iwae" else "vae", run, check)
