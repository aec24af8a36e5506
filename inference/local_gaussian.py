"""q*(z|x): a Gaussian with its own parameters for every datapoint, optimised under a fixed model.

The amortized guide q_phi(z|x) must serve every x with one network; q* optimises each
datapoint's mean and scale separately, starting from the encoder's output. ELBO(q*) -
ELBO(q_phi) is then the amortization gap and log p(x) - ELBO(q*) the approximation gap
(Cremer et al. 2018).
"""

from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro_vae.models import VAE
from torch import nn

from pyro_vae.errors import ConfigError
from pyro_vae.validate import positive_float, positive_int

from .objectives import OBJECTIVES


class LocalGaussian(nn.Module):
    """The VAE's model with the guide q(z_i|x_i) = N(loc_i, diag scale_i^2), one per row of x.

    Args:
        vae: A VAE with a point decoder; its encoder gives the starting values.
        x: The datapoints this guide is for, ``(num_data, features)``.

    Both programs take the VAE's arguments; the guide's i-th row belongs to ``x[i]`` (or to
    ``x[indices[i]]`` when the data plate subsamples), so it must be called on that same data.
    """

    def __init__(self, vae: VAE, x: torch.Tensor) -> None:
        super().__init__()
        self.vae = vae
        with torch.no_grad():
            loc, scale = vae.encoder(x)
        self.loc = nn.Parameter(loc.detach().clone())
        self.log_scale = nn.Parameter(scale.detach().log().clone())

    def model(self, *args: Any, **kwargs: Any) -> Any:
        return self.vae.model(*args, **kwargs)

    def guide(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
        beta: float = 1.0,
        batch_size: int | None = None,
    ) -> None:
        rows = self.loc.shape[0]
        if indices is None and x.shape[0] != rows:
            raise ConfigError(
                f"this LocalGaussian guide holds {rows} datapoints; it was called with "
                f"{x.shape[0]} (pass indices= or the same data)"
            )
        with self.vae.data_plate(x, x.shape[0], num_data, indices):
            loc = self.loc if indices is None else self.loc[indices]
            log_scale = self.log_scale if indices is None else self.log_scale[indices]
            with poutine.scale(scale=beta):
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def fit_local_gaussians(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    steps: int = 500,
    lr: float = 0.02,
    num_particles: int = 8,
) -> tuple[LocalGaussian, list[float]]:
    """Optimise q*(z_i|x_i) for every row of ``x`` with the model held fixed.

    Each datapoint's ELBO depends only on its own (loc_i, scale_i), so one full-batch Adam run
    on the summed ELBO optimises them all separately; its rate decays linearly to 0. The KL
    term is analytic where the prior allows it (lower variance), else Monte Carlo.

    Args:
        vae: The fitted VAE (point decoder); it is not changed.
        x: Datapoints, ``(num_data, features)``.
        labels: Their labels, for priors that use them.
        steps: Adam steps.
        lr: Adam learning rate.
        num_particles: Draws of z per datapoint and step.

    Returns:
        The fitted guide and its loss (negative ELBO, nats per datapoint) at every step.
    """
    positive_int("steps", steps)
    positive_float("lr", lr)
    positive_int("num_particles", num_particles)
    if vae.weight_sites:
        raise ConfigError("q* needs a point decoder; call vae.fix_weights() first")
    program = LocalGaussian(vae, x)
    objective = "elbo-analytic-kl" if vae.prior.analytic_kl else "elbo"
    elbo = OBJECTIVES.build(objective, num_particles)
    optimizer = torch.optim.Adam([program.loc, program.log_scale], lr=lr)
    # a decaying rate lets the noisy Monte Carlo gradients settle at the optimum
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    frozen = [p for p in vae.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    losses = []
    try:
        for _ in range(steps):
            loss = elbo.differentiable_loss(program.model, program.guide, x, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item() / x.shape[0])
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return program, losses
