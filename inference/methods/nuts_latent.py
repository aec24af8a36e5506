"""NUTS over z under a trained decoder (``nuts-latent``)."""

from __future__ import annotations

import time

import torch
from pyro_vae.models import local_params, moments

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import positive_int

from ..nuts import nuts_latent
from ..svi import FitResult
from .amortized import amortized_vi
from .problem import (
    METHODS,
    MethodResult,
    Problem,
    Runner,
)


@METHODS.register("nuts-latent")
def nuts_reference(images: int = 4, chains: int = 2, draws: int = 200, warmup: int = 200) -> Runner:
    """NUTS over z for ``images`` datapoints under the decoder of a ``vae`` fit.

    The runner takes ``reference=`` a fitted :class:`MethodResult` (``compare`` passes its
    ``vae`` result); without one it fits ``vae`` first.
    """
    for name, value in (("images", images), ("chains", chains), ("draws", draws)):
        positive_int(f"nuts-latent {name}", value)
    positive_int("nuts-latent warmup", warmup)
    if chains < 2:
        raise ConfigError("nuts-latent needs at least 2 chains to check convergence (R-hat)")

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        notes = []
        if reference is None or reference.vae is None:
            reference = amortized_vi()(problem)
            notes.append("decoder: a vae fit made for this reference")
        else:
            notes.append(f"decoder: the {reference.method} fit")
        vae = reference.vae
        x = problem.nuts_x if problem.nuts_x is not None else problem.x
        y = problem.nuts_labels if problem.nuts_x is not None else problem.labels
        x, y = x[:images], None if y is None else y[:images]
        posterior = local_params(nuts_latent)(
            vae, x, y, chains=chains, draws=draws, warmup=warmup, seed=problem.seed
        )
        with torch.no_grad():
            loc, scale = moments(vae.posterior(x, y))
        # how far the encoder's q(z|x) is from the NUTS posterior
        details = {**posterior.summary(), **posterior.gap_summary(loc, scale)}
        return MethodResult(
            "nuts-latent",
            None,
            FitResult(),
            notes=notes,
            details={**details, "posterior": posterior},
            wall_time=time.perf_counter() - start,
        )

    return Runner("nuts-latent", run)


#: Its options under the smoke budget (one image, a short NUTS).
nuts_reference.smoke_options = {"images": 1, "chains": 2, "draws": 20, "warmup": 20}
