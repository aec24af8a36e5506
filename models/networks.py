"""Plain PyTorch networks, by name: the encoder's body (x to features, on which a guide
family puts its heads, :mod:`.guides`) and the decoder (z to the likelihood's parameters).

They know nothing about Pyro; :class:`~pyro_vae.models.vae.VAE` uses them inside its model and
guide. :data:`NETWORKS` holds the pairs:

- ``mlp``: fully connected layers. With ``hidden=()`` both are single linear maps, which gives
  the linear-Gaussian VAE whose optimum is probabilistic PCA. Hidden layers come from
  :data:`LAYERS` by name: ``relu``, ``tanh`` and ``softplus`` are ``Linear`` + activation;
  ``gated`` is the gated linear unit ``(W x + b) * sigmoid(V x + c)`` of the VampPrior and
  Exemplar VAE papers' MLPs.
- ``conv``: strided convolutions down to a fully connected layer, and the transposed path back
  up, for ``(C, H, W)`` images (:mod:`.conv`).

Data come in flat, ``(..., features)``, whatever the network; a convolutional one reshapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pyro_vae.core.registry import Registry

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


@dataclass
class Networks:
    """What a :data:`NETWORKS` member builds: the encoder's body mapping ``(..., features)``
    to ``(..., width)``, and the decoder mapping ``(..., latent_dim)`` to ``(..., features)``."""

    body: nn.Module
    width: int
    decoder: nn.Module


#: Network name -> ``factory(data_dim, image_shape, latent_dim, **options)`` returning
#: :class:`Networks`; ``image_shape`` is ``(H, W)``, ``(C, H, W)`` or ``None`` for features.
NETWORKS: Registry[Callable[..., Networks]] = Registry("network", positional=3)


def mlp_parameters(
    data_dim: int, latent_dim: int, hidden: Sequence[int], gated: bool = False
) -> int:
    """How many numbers the MLP body and decoder hold (the guide's heads not counted; gated
    layers have two weight matrices), counted before anything is allocated."""
    per_layer = 2 if gated else 1

    def body(widths: Sequence[int]) -> int:
        return sum(per_layer * (a * b + b) for a, b in zip(widths, widths[1:], strict=False))

    first = hidden[0] if hidden else latent_dim
    decoder = body([latent_dim, *hidden[::-1]]) + first * data_dim + data_dim
    return body([data_dim, *hidden]) + decoder


@NETWORKS.register("mlp")
def mlp_networks(
    data_dim: int,
    image_shape: Sequence[int] | None,
    latent_dim: int,
    hidden: Sequence[int] = (400,),
    layer: str = "relu",
) -> Networks:
    """Fully connected: ``hidden`` widths on the encoder side, mirrored by the decoder."""
    hidden = tuple(hidden)
    LAYERS[layer]
    return Networks(
        mlp(data_dim, hidden, layer),
        hidden[-1] if hidden else data_dim,
        Decoder(latent_dim, data_dim, hidden[::-1], layer),
    )
