"""Stopping gradients through the parameters of log q while draws keep their path gradient:
what sticking the landing and DReG need (see :mod:`.gradients`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.poutine.messenger import Messenger

from pyro_vae.core.errors import ConfigError


def detached(fn: TorchDistribution) -> TorchDistribution:
    """``fn`` with its parameters detached from the graph (same values, no gradient)."""
    if isinstance(fn, dist.Independent):
        return dist.Independent(detached(fn.base_dist), fn.reinterpreted_batch_ndims)
    if isinstance(fn, dist.Normal):
        return dist.Normal(fn.loc.detach(), fn.scale.detach())
    if isinstance(fn, dist.MultivariateNormal):
        return dist.MultivariateNormal(fn.loc.detach(), scale_tril=fn.scale_tril.detach())
    if isinstance(fn, dist.Delta):
        return dist.Delta(fn.v.detach(), fn.log_density.detach(), fn.event_dim)
    raise ConfigError(
        f"stl and dreg need Normal or Delta guide sites; {type(fn).__name__} is not supported"
    )


class StuckLogProb(TorchDistribution):
    """Draws from ``fn`` (reparameterised); ``log_prob`` with ``fn``'s parameters stopped."""

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, fn: TorchDistribution) -> None:
        self.fn, self.frozen = fn, detached(fn)
        super().__init__(fn.batch_shape, fn.event_shape, validate_args=False)

    @property
    def support(self) -> Any:
        return self.fn.support

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return self.fn.rsample(sample_shape)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return self.fn.sample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.frozen.log_prob(value)

    def expand(self, batch_shape: Any, _instance: Any = None) -> StuckLogProb:
        return StuckLogProb(self.fn.expand(batch_shape))


class _StickMessenger(Messenger):
    def _process_message(self, msg: dict) -> None:
        fn = msg["fn"]
        if msg["type"] == "sample" and not msg["is_observed"] and fn.has_rsample:
            msg["fn"] = StuckLogProb(fn)


def stuck(guide: Callable[..., Any]) -> Callable[..., Any]:
    """``guide`` with :class:`StuckLogProb` at every reparameterised latent site. Keeps the
    guide's signature (objectives read its ``particles`` keyword)."""

    @functools.wraps(guide)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _StickMessenger():
            return guide(*args, **kwargs)

    return wrapped
