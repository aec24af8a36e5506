"""Plain PyTorch networks: the amortized encoder of q(z|x) and the decoder of p(x|z).

They know nothing about Pyro; :class:`~pyro_vae.models.vae.VAE` uses them inside its model and
guide. With ``hidden=()`` both are single linear maps, which gives the linear-Gaussian VAE whose
optimum is probabilistic PCA.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.functional import softplus

#: Added to the encoder's softplus scale so q(z|x) never degenerates.
MIN_SCALE = 1e-6


def mlp(in_dim: int, hidden: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Stack ``Linear -> activation`` for each hidden width (an empty stack for ``hidden=()``)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Maps data ``x`` of shape ``(..., data_dim)`` to the loc and scale of a diagonal Gaussian.

    Args:
        data_dim: Number of input features (784 for 28x28 images).
        latent_dim: Size of z.
        hidden: Hidden layer widths, input side first.
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (400,)) -> None:
        super().__init__()
        self.body = mlp(data_dim, hidden)
        width = hidden[-1] if hidden else data_dim
        self.loc = nn.Linear(width, latent_dim)
        self.raw_scale = nn.Linear(width, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.loc(h), softplus(self.raw_scale(h)) + MIN_SCALE


class Decoder(nn.Module):
    """Maps ``z`` of shape ``(..., latent_dim)`` to the likelihood's parameter per feature.

    The output is unconstrained (logits for Bernoulli-type likelihoods, a location for
    real-valued ones); the likelihood object decides what it means.

    Args:
        latent_dim: Size of z.
        data_dim: Number of output features.
        hidden: Hidden layer widths, latent side first.
    """

    def __init__(self, latent_dim: int, data_dim: int, hidden: Sequence[int] = (400,)) -> None:
        super().__init__()
        self.body = mlp(latent_dim, hidden)
        self.out = nn.Linear(hidden[-1] if hidden else latent_dim, data_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z))
