"""The convolutional networks (``--network conv``): for ``(C, H, W)`` images, flat in and out.

Encoder body: ``len(channels)`` convolutions of kernel 4, stride 2, padding 1 (each halves the
sides), ReLU after each, then a fully connected layer of ``width`` with ReLU. Decoder: the
mirror image, a fully connected layer of ``width``, one to the smallest feature map, and
transposed convolutions (kernel 4, stride 2, padding 1) back to ``C`` channels, ReLU between
them and nothing after the last (the likelihood reads its output). The sides must be divisible
by ``2 ** len(channels)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import check_allocation, positive_int

from .networks import NETWORKS, Networks

KERNEL = 4


def _channels_first(image_shape: Sequence[int] | None) -> tuple[int, int, int]:
    if image_shape is None or len(image_shape) not in (2, 3):
        raise ConfigError(
            "the conv network needs images ((H, W) or (C, H, W)); these data are features "
            "without an image shape: use --network mlp"
        )
    return tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)


class ConvBody(nn.Module):
    """Images ``(..., C*H*W)`` to features ``(..., width)``."""

    def __init__(self, image_shape: tuple[int, int, int], channels: Sequence[int], width: int):
        super().__init__()
        self.image_shape = image_shape
        layers: list[nn.Module] = []
        previous = image_shape[0]
        for out in channels:
            layers += [nn.Conv2d(previous, out, KERNEL, stride=2, padding=1), nn.ReLU()]
            previous = out
        scale = 2 ** len(channels)
        flat = previous * (image_shape[1] // scale) * (image_shape[2] // scale)
        layers += [nn.Flatten(), nn.Linear(flat, width), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, *self.image_shape)).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """``(..., latent_dim)`` to the likelihood's parameter per pixel, ``(..., C*H*W)``."""

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        channels: Sequence[int],
        width: int,
    ) -> None:
        super().__init__()
        scale = 2 ** len(channels)
        self.smallest = (channels[-1], image_shape[1] // scale, image_shape[2] // scale)
        flat = self.smallest[0] * self.smallest[1] * self.smallest[2]
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, width), nn.ReLU(), nn.Linear(width, flat), nn.ReLU()
        )
        layers: list[nn.Module] = []
        widths = [*channels[::-1], image_shape[0]]
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            layers.append(nn.ConvTranspose2d(a, b, KERNEL, stride=2, padding=1))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.up = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, *self.smallest)
        return self.up(h).reshape(*lead, -1)


def conv_parameters(
    image_shape: tuple[int, int, int], latent_dim: int, channels: Sequence[int], width: int
) -> int:
    """How many numbers the conv body and decoder hold, counted before anything is allocated."""
    widths = [image_shape[0], *channels]
    convs = sum(a * b * KERNEL * KERNEL + b for a, b in zip(widths, widths[1:], strict=False))
    scale = 2 ** len(channels)
    flat = channels[-1] * (image_shape[1] // scale) * (image_shape[2] // scale)
    transposed = sum(
        a * b * KERNEL * KERNEL + b for a, b in zip(widths[::-1], widths[::-1][1:], strict=False)
    )
    body = convs + flat * width + width
    decoder = latent_dim * width + width + width * flat + flat + transposed
    return body + decoder


@NETWORKS.register("conv")
def conv_networks(
    data_dim: int,
    image_shape: Sequence[int] | None,
    latent_dim: int,
    channels: Sequence[int] = (32, 64),
    width: int = 256,
) -> Networks:
    """Strided convolutions with ``channels`` feature maps, then a layer of ``width``."""
    shape = _channels_first(image_shape)
    channels = tuple(channels) if isinstance(channels, list | tuple) else (channels,)
    if not channels:
        raise ConfigError("the conv network needs at least one entry in channels")
    for value in channels:
        positive_int("conv channels", value)
    positive_int("conv width", width)
    scale = 2 ** len(channels)
    if shape[1] % scale or shape[2] % scale:
        raise ConfigError(
            f"the conv network with {len(channels)} layers needs image sides divisible by "
            f"{scale}, not {shape[1]}x{shape[2]} (give fewer channels, or resize the images)"
        )
    check_allocation(
        f"a conv VAE on {'x'.join(map(str, shape))} images with gradients and optimizer state",
        4 * conv_parameters(shape, latent_dim, channels, width),
    )
    return Networks(
        ConvBody(shape, channels, width), width, ConvDecoder(latent_dim, shape, channels, width)
    )
