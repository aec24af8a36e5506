"""The semi-amortized family (Kim et al. 2018): the encoder's diagonal Gaussian, refined for
each datapoint by a few gradient steps on that datapoint's own ELBO.

The encoder gives lambda_0(x) = (mu, raw sigma); each step draws ``particles`` z per datapoint
from q(z; lambda_t), takes the gradient of the negative ELBO (Pyro's ``Trace_ELBO`` on the VAE's own
model, with the outer program's handlers blocked) with respect to lambda_t, clips its norm per
datapoint and steps: lambda_{t+1} = lambda_t - lr * g_t. The guide samples from
q(z; lambda_steps).

While gradients are on (training), the steps stay in the graph, so the encoder and decoder are
trained through the refinement, as in Kim et al.'s SA-VAE; under ``torch.no_grad`` (evaluation)
the steps still run, with gradients enabled locally and the result detached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import nn

from pyro_vae.core.validate import nonnegative_int, positive_float, positive_int

from .guides import GUIDES, GuideFamily, LocalParameters


@GUIDES.register("semi-amortized")
class SemiAmortized(GuideFamily):
    """The diagonal family refined per datapoint by ``steps`` clipped gradient steps.

    Args:
        steps: Refinement steps (0: the diagonal family).
        lr: Step size on the unconstrained parameters (mean and softplus-inverse sd).
        max_norm: Largest norm of one datapoint's step gradient (larger ones are scaled down).
        particles: Draws of z per datapoint in each step's ELBO estimate.
    """

    name = "semi-amortized"
    reads_model = True

    def __init__(
        self,
        body: nn.Module,
        width: int,
        latent_dim: int,
        steps: int = 5,
        lr: float = 0.1,
        max_norm: float = 10.0,
        particles: int = 4,
    ) -> None:
        nonnegative_int("semi-amortized steps", steps)
        positive_float("semi-amortized lr", lr)
        positive_float("semi-amortized max_norm", max_norm)
        positive_int("semi-amortized particles", particles)
        super().__init__(body, width, latent_dim)
        self.steps, self.lr, self.max_norm, self.particles = steps, lr, max_norm, particles

    def fitted_local(
        self, x: torch.Tensor, labels: torch.Tensor | None, model: Callable[..., Any]
    ) -> LocalParameters:
        return refine(
            self,
            self.local(x),
            x,
            labels,
            model,
            self.steps,
            self.lr,
            self.max_norm,
            self.particles,
        )


def refine(
    family: GuideFamily,
    params: LocalParameters,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    model: Callable[..., Any],
    steps: int,
    lr: float,
    max_norm: float,
    particles: int = 1,
) -> LocalParameters:
    """``steps`` clipped gradient steps on each datapoint's negative ELBO from ``params``."""
    through = torch.is_grad_enabled()  # keep the steps in the graph
    params = tuple(
        p if through and p.requires_grad else p.detach().requires_grad_() for p in params
    )
    # the vectorized particles sit left of any plate the calling objective or estimator has open
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=3)

    def guide(x: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", family.distribution(*params))

    with torch.enable_grad():
        for _ in range(steps):
            with poutine.block():
                loss = elbo.differentiable_loss(model, guide, x, labels)
            grads = torch.autograd.grad(loss, params, create_graph=through)
            norms = torch.stack([g.detach().pow(2).sum(-1) for g in grads]).sum(0).sqrt()
            shrink = (max_norm / norms.clamp_min(1e-12)).clamp(max=1.0).unsqueeze(-1)
            params = tuple(p - lr * shrink * g for p, g in zip(params, grads, strict=True))
    return params if through else tuple(p.detach() for p in params)
