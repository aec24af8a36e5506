"""Model + guide pairs built around one :class:`~pyro_vae.models.VAE` for the other methods.

Each program is a plain ``nn.Module`` with ``model`` and ``guide`` taking the VAE's arguments,
so :func:`~pyro_vae.inference.fit` and every objective run it unchanged, and
``point_weights()`` gives the decoder weights to evaluate it with:

- :class:`PointWeights`: amortized encoder guide, plus ``AutoDelta`` over the decoder's weight
  sites (maximising the ELBO plus log p(w); under a flat prior the ELBO alone), combined in
  an ``AutoGuideList``;
- :class:`BayesianDecoder`: the encoder guide plus a mean-field Normal (``AutoNormal``) over the
  weight sites: Kingma & Welling's "full VB";
- :class:`PointLatents`: ``AutoDelta`` over every z_i and the weights: one point latent paired
  with each datapoint, no encoder;
- :class:`PriorProposal`: the guide draws z from the prior itself, so the IWAE objective becomes
  the simulated likelihood log (1/K) sum_k p(x|z_k), z_k ~ p(z).
"""

from __future__ import annotations

import operator
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide import (
    AutoDelta,
    AutoGuideList,
    AutoNormal,
    init_to_sample,
    init_to_value,
)
from pyro_vae.models import VAE, local_params
from pyro_vae.models.vae import particle_plate
from torch import nn

from pyro_vae.core.errors import ConfigError


def _require_weight_sites(vae: VAE, program: str) -> None:
    if not vae.weight_sites:
        raise ConfigError(f"{program} needs a VAE built with a weight prior (weight_prior=...)")


def _weights_and_encoder(vae: VAE, autoguide: type, **options: Any) -> AutoGuideList:
    """``autoguide`` over the decoder's weight sites, then the encoder guide, as one guide.

    The autoguide sees the model with only the weight sites exposed (an autoguide is not
    amortized: it would otherwise also make a global site of every z_i); the list is built on
    that model too, so it makes no data plate of its own (the encoder guide
    makes the one with the minibatch's subsample indices).
    """
    weights_model = poutine.block(vae.model, expose=list(vae.weight_sites))
    guides = AutoGuideList(weights_model)
    guides.append(autoguide(weights_model, **options))
    guides.append(vae.guide)
    return guides


class _Program(nn.Module):
    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    @local_params
    def model(self, *args: Any, particles: int = 1, **kwargs: Any) -> Any:
        return self.vae.model(*args, particles=particles, **kwargs)


class PointWeights(_Program):
    """q(z|x) from the encoder; a point (Delta) estimate of every decoder weight."""

    @local_params
    def __init__(self, vae: VAE) -> None:
        super().__init__(vae)
        _require_weight_sites(vae, "PointWeights")
        self.guides = _weights_and_encoder(
            vae, AutoDelta, init_loc_fn=init_to_value(values=vae.initial_weights)
        )

    @local_params
    def guide(self, *args: Any, particles: int = 1, **kwargs: Any) -> Any:
        return self.guides(*args, particles=particles, **kwargs)

    @torch.no_grad()
    def point_weights(self) -> dict[str, torch.Tensor]:
        """The current point estimate of each weight site."""
        delta = self.guides[0]
        return {site: operator.attrgetter(site)(delta).detach() for site in self.vae.weight_sites}


class BayesianDecoder(_Program):
    """q(z|x) from the encoder; a mean-field Normal over the decoder weights.

    Args:
        vae: A VAE with a (proper) weight prior.
        init_scale: Initial posterior standard deviation of every weight.
    """

    @local_params
    def __init__(self, vae: VAE, init_scale: float = 1e-3) -> None:
        super().__init__(vae)
        _require_weight_sites(vae, "BayesianDecoder")
        self.guides = _weights_and_encoder(
            vae,
            AutoNormal,
            init_loc_fn=init_to_value(values=vae.initial_weights),
            init_scale=init_scale,
        )

    @local_params
    def guide(self, *args: Any, particles: int = 1, **kwargs: Any) -> Any:
        return self.guides(*args, particles=particles, **kwargs)

    @torch.no_grad()
    def point_weights(self) -> dict[str, torch.Tensor]:
        """The posterior mean of each weight (the decoder the estimators evaluate)."""
        locs = self.guides[0].locs
        return {site: operator.attrgetter(site)(locs).detach() for site in self.vae.weight_sites}

    @torch.no_grad()
    def posterior_scales(self) -> dict[str, torch.Tensor]:
        """The posterior standard deviation of each weight."""
        scales = self.guides[0].scales
        return {site: operator.attrgetter(site)(scales).detach() for site in self.vae.weight_sites}


class PointLatents(_Program):
    """``AutoDelta`` over one z_i per datapoint and over the decoder weights.

    The guide's table of z's is made for the whole data set ``x`` at construction (each z_i
    drawn from the prior, the weights from PyTorch's initialisation); minibatches then read
    their rows through the data plate's subsample indices.

    Args:
        vae: A VAE with a weight prior (``flat`` for MLE).
        x: The full training data.
        labels: Its labels, for priors that use them.
    """

    @local_params
    def __init__(self, vae: VAE, x: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        super().__init__(vae)
        _require_weight_sites(vae, "PointLatents")
        self.delta = AutoDelta(
            vae.model,
            init_loc_fn=init_to_value(values=vae.initial_weights, fallback=init_to_sample),
            create_plates=self._plates,
        )
        with torch.no_grad():
            self.delta(x, labels)  # lay out the full table of z's

    def _plates(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> pyro.plate:
        return VAE.data_plate(x, x.shape[0], num_data, indices)

    @local_params
    def guide(self, *args: Any, **kwargs: Any) -> Any:
        return self.delta(*args, **kwargs)

    @torch.no_grad()
    def point_weights(self) -> dict[str, torch.Tensor]:
        delta = self.delta
        return {site: operator.attrgetter(site)(delta).detach() for site in self.vae.weight_sites}

    @torch.no_grad()
    def latents(self) -> torch.Tensor:
        """The point latent z_i of every training datapoint, ``(num_data, latent_dim)``."""
        return self.delta.z.detach()


class PriorProposal(_Program):
    """The guide samples z ~ p(z): no encoder, no variational parameters."""

    @local_params
    def guide(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
        beta: float = 1.0,
        particles: int = 1,
        **kwargs: Any,
    ) -> None:
        vae = self.vae
        with vae.data_plate(x, x.shape[0], num_data, indices), particle_plate(particles):
            with poutine.scale(scale=beta):
                pyro.sample("z", vae.prior(x.shape[0], labels))

    def point_weights(self) -> dict[str, torch.Tensor]:
        return {}
