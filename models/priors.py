"""Latent priors p(z) as objects passed into the model.

A prior is a :class:`~pyro.nn.PyroModule` whose call ``prior(batch_size, labels)`` returns a
distribution with batch shape ``(batch_size,)`` and event shape ``(latent_dim,)``. Learnable
priors keep their parameters as module parameters, so the optimiser finds them through the VAE.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pyro_vae.registry import Registry


class Prior(PyroModule):
    """Base for p(z). Subclasses set ``name`` and implement :meth:`forward`.

    Args:
        latent_dim: Size of z.
    """

    name = "base"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(
        self, batch_size: int, labels: torch.Tensor | None = None
    ) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError


class StandardNormalPrior(Prior):
    """p(z) = N(0, I), the prior of Kingma & Welling."""

    name = "standard-normal"

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("zeros", torch.zeros(latent_dim))

    def forward(
        self, batch_size: int, labels: torch.Tensor | None = None
    ) -> dist.TorchDistribution:
        zeros = self.zeros
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1).expand([batch_size])


PRIORS: Registry[type[Prior]] = Registry("prior")
for _cls in (StandardNormalPrior,):
    PRIORS[_cls.name] = _cls
