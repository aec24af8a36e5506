"""The importance-weighted bound (``iwae``)."""

from __future__ import annotations

from pyro_vae.core.validate import positive_int

from .amortized import amortized_vi
from .problem import (
    METHODS,
    Runner,
)


@METHODS.register("iwae")
def importance_weighted(particles: int = 5) -> Runner:
    """Amortized VI by the importance-weighted bound with K = ``particles``."""
    positive_int("iwae particles", particles)
    return amortized_vi(objective="iwae", particles=particles)
