"""Plain PyTorch networks: the amortized encoder of q(z|x) and the decoder of p(x|z).

They know nothing about Pyro; :class:`~pyro_vae.models.vae.VAE` uses them inside its model and
guide. With ``hidden=()`` both are single linear maps, which gives the linear-Gaussian VAE whose
optimum is probabilistic PCA. Hidden layers come from :data:`LAYERS` by name: ``relu``, ``tanh``
and ``softplus`` are ``Linear`` + activation; ``gated`` is the gated linear unit
``(W x + b) * sigmoid(V x + c)`` of the VampPrior and Exemplar VAE papers' MLPs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.functional import softplus

from pyro_vae.registry import Registry

#: Added to the encoder's softplus scale so q(z|x) never degenerates.
MIN_SCALE = 1e-6


#: Hidden layer name -> ``factory(in_dim, width)`` returning the modules that map
#: ``(..., in_dim)`` to ``(..., width)``, in order.
LAYERS: Registry[Callable[[int, int], list[nn.Module]]] = Registry("layer")


def _linear_then(activation: type[nn.Module]) -> Callable[[int, int], list[nn.Module]]:
    def factory(in_dim: int, width: int) -> list[nn.Module]:
        return [nn.Linear(in_dim, width), activation()]

    return factory


for _name, _activation in (("relu", nn.ReLU), ("tanh", nn.Tanh), ("softplus", nn.Softplus)):
    LAYERS.register(_name)(_linear_then(_activation))


class GatedLinear(nn.Module):
    """``(W x + b) * sigmoid(V x + c)``, both halves computed by one ``Linear(in_dim, 2 width)``."""

    def __init__(self, in_dim: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, 2 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.linear(x).chunk(2, dim=-1)
        return value * torch.sigmoid(gate)


@LAYERS.register("gated")
def _gated(in_dim: int, width: int) -> list[nn.Module]:
    return [GatedLinear(in_dim, width)]


def mlp(in_dim: int, hidden: Sequence[int], layer: str = "relu") -> nn.Sequential:
    """Stack one :data:`LAYERS` ``layer`` per hidden width (empty for ``hidden=()``)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += LAYERS[layer](in_dim, width)
        in_dim = width
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Maps data ``x`` of shape ``(..., data_dim)`` to the loc and scale of a diagonal Gaussian.

    Args:
        data_dim: Number of input features (784 for 28x28 images).
        latent_dim: Size of z.
        hidden: Hidden layer widths, input side first.
        layer: Hidden layer type, a name in :data:`LAYERS`.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (400,),
        layer: str = "relu",
    ) -> None:
        super().__init__()
        self.body = mlp(data_dim, hidden, layer)
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
        layer: Hidden layer type, a name in :data:`LAYERS`.
    """

    def __init__(
        self,
        latent_dim: int,
        data_dim: int,
        hidden: Sequence[int] = (400,),
        layer: str = "relu",
    ) -> None:
        super().__init__()
        self.body = mlp(latent_dim, hidden, layer)
        self.out = nn.Linear(hidden[-1] if hidden else latent_dim, data_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z))
