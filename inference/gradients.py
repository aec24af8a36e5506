"""Gradient estimators for the guide, by name. They change gradients, never the loss's value.

- ``reparam``: plain reparameterisation, the gradient of the objective as written.
- ``stl``, sticking the landing (Roeder et al. 2017), for the ELBO: with z = g(eps, phi) the
  guide's parameters get only the path derivative, grad_phi [log p(x, z) - log q(z; stop(phi))].
  The dropped term, the score of log q, has expectation zero but not variance zero; at
  q = p(z|x) the estimator's variance is exactly zero.
- ``dreg``, doubly reparameterised gradients (Tucker et al. 2018), for the importance-weighted
  bound: the guide's gradient sum_k w_k^2 d log w_k / d z_k * d z_k / d phi (normalised weights
  w_k, log q with stopped parameters); the model's gradient is IWAE's. Its signal-to-noise ratio
  does not fall with K, as IWAE's guide gradient's does (Rainforth et al. 2018).

Both stop gradients through the parameters of log q by wrapping each reparameterised latent
site of the guide (:class:`StuckLogProb`): draws still come from q, so the path through z keeps
its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import Registry

from .iwae import ImportanceWeightedELBO
from .stuck import stuck

GRADIENTS: Registry[Callable[..., Any]] = Registry("gradient estimator", positional=2)


class StickingTheLanding:
    """An ELBO objective whose guide gradient is the path derivative only."""

    def __init__(self, elbo: Any) -> None:
        self.elbo = elbo

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> Any:
        return self.elbo.differentiable_loss(model, stuck(guide), *args, **kwargs)


@GRADIENTS.register("reparam")
def reparameterised(elbo: Any, objective: str) -> Any:
    """The objective's own gradient."""
    return elbo


@GRADIENTS.register("stl")
def sticking_the_landing(elbo: Any, objective: str) -> StickingTheLanding:
    """Sticking the landing, for the Monte Carlo ELBO (``elbo``)."""
    if objective != "elbo":
        raise ConfigError(
            f"gradient stl drops the score of log q from the Monte Carlo ELBO (objective elbo), "
            f"not from {objective}"
            + ("; for iwae use gradient dreg" if objective == "iwae" else "")
        )
    return StickingTheLanding(elbo)


@GRADIENTS.register("dreg")
def doubly_reparameterised(elbo: Any, objective: str) -> ImportanceWeightedELBO:
    """Doubly reparameterised gradients, for the importance-weighted bound (``iwae``)."""
    if not isinstance(elbo, ImportanceWeightedELBO):
        raise ConfigError(
            f"gradient dreg is for the importance-weighted bound (objective iwae), not {objective}"
        )
    return ImportanceWeightedELBO(elbo.particles, doubly_reparameterised=True)
