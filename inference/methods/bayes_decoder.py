"""VI over the decoder weights too (``bayes-decoder``)."""

from __future__ import annotations

import time

import torch
from pyro_vae.models import WEIGHT_PRIORS

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import positive_float

from ..guide_checks import check_guide
from ..programs import BayesianDecoder
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


@METHODS.register("bayes-decoder")
def bayes_decoder(init_scale: float = 1e-3) -> Runner:
    """VI over the decoder weights (mean-field Normal) with the amortized encoder."""
    positive_float("bayes-decoder init_scale", init_scale)

    def check(problem: Problem) -> None:
        name = weight_prior_of(problem, "normal")
        if not WEIGHT_PRIORS[name].proper:
            raise ConfigError(f"bayes-decoder needs a proper weight prior, not {name!r}")
        check_guide(problem.model.guide, problem.svi, point_decoder=False)

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        weight_prior = weight_prior_of(problem, "normal")
        vae = problem.build(weight_prior)
        program = BayesianDecoder(vae, init_scale=init_scale)
        history = fit_problem(program, problem, problem.svi)
        scales = torch.cat([s.flatten() for s in program.posterior_scales().values()])
        num_weights = scales.numel()
        return MethodResult(
            "bayes-decoder",
            point_decoder(program, vae),
            history,
            notes=[
                f"decoder weights: mean-field Normal posterior under the {weight_prior} prior; "
                "log p(x) is evaluated at the posterior mean"
            ],
            details={
                "weights": num_weights,
                "posterior_sd_median": scales.median().item(),
                "objective": problem.svi.objective,
            },
            wall_time=time.perf_counter() - start,
            program=program,
        )

    return Runner("bayes-decoder", run, check)
