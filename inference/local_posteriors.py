"""q*(z|x): the guide's family with its own parameters for every datapoint, optimised under a
fixed model.

The amortized guide q_phi(z|x) must serve every x with one network; q* optimises each
datapoint's local parameters (for the diagonal family its mean and scale) separately, starting
from the guide's output. ELBO(q*) -
ELBO(q_phi) is then the amortization gap and log p(x) - ELBO(q*) the approximation gap
(Cremer et al. 2018).
"""

from __future__ import annotations

from typing import Any

import pyro
import torch
from pyro import poutine
from pyro_vae.models import VAE
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import positive_float, positive_int

from .objectives import OBJECTIVES


class LocalPosterior(nn.Module):
    """The VAE's model with a guide of the VAE's own family whose local parameters are free
    parameters, one row per row of ``x``: q*(z_i|x_i).

    Args:
        vae: A VAE with a point decoder; its guide gives the starting values.
        x: The datapoints this guide is for, ``(num_data, features)``.
        labels: Their labels, for priors that use them (a refining family reads them).

    Both programs take the VAE's arguments; the guide's i-th row belongs to ``x[i]`` (or to
    ``x[indices[i]]`` when the data plate subsamples), so it must be called on that same data.
    """

    def __init__(self, vae: VAE, x: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        super().__init__()
        self.vae = vae
        with torch.no_grad():
            start = vae.encoder.fitted_local(x, labels, vae.model)
        self.local = nn.ParameterList([nn.Parameter(p.detach().clone()) for p in start])

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
        rows = self.local[0].shape[0]
        if indices is None and x.shape[0] != rows:
            raise ConfigError(
                f"this LocalPosterior guide holds {rows} datapoints; it was called with "
                f"{x.shape[0]} (pass indices= or the same data)"
            )
        params = [p if indices is None else p[indices] for p in self.local]
        q = self.vae.encoder.distribution(*params)
        with self.vae.data_plate(x, x.shape[0], num_data, indices):
            with poutine.scale(scale=beta):
                pyro.sample("z", q)


def fit_local_posteriors(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    steps: int = 500,
    lr: float = 0.02,
    particles: int = 8,
) -> tuple[LocalPosterior, list[float]]:
    """Optimise q*(z_i|x_i) for every row of ``x`` with the model held fixed.

    q* is the VAE's own family with each datapoint's local parameters free (for ``iaf`` the
    base Gaussian and the context, the flow networks shared). Each datapoint's ELBO depends
    only on its own parameters, so one full-batch Adam run
    on the summed ELBO optimises them all separately; its rate decays linearly to 0. The KL
    term is analytic where the prior allows it (lower variance), else Monte Carlo.

    Args:
        vae: The fitted VAE (point decoder); it is not changed.
        x: Datapoints, ``(num_data, features)``.
        labels: Their labels, for priors that use them.
        steps: Adam steps.
        lr: Adam learning rate.
        particles: Draws of z per datapoint and step.

    Returns:
        The fitted guide and its loss (negative ELBO, nats per datapoint) at every step.
    """
    positive_int("steps", steps)
    positive_float("lr", lr)
    positive_int("particles", particles)
    if vae.weight_sites:
        raise ConfigError("q* needs a point decoder; call vae.fix_weights() first")
    program = LocalPosterior(vae, x, labels)
    objective = "elbo-analytic-kl" if vae.prior.analytic_kl and vae.encoder.analytic_kl else "elbo"
    elbo = OBJECTIVES.build(objective, particles)
    optimizer = torch.optim.Adam(list(program.local), lr=lr)
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
