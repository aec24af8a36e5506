"""What every benchmark shares: the record of the machine, the versions and the matmul peak;
the JSON file; the ways of running pyro-vae's loss and estimate that the benchmarks compare;
and the hand-written PyTorch VAE they are measured against.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.distributions.util import is_validation_enabled
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from pyro_vae import smoke

#: The ways of running pyro-vae's loss (``SVIConfig`` / ``TrainConfig``) and its estimate
#: (``evaluate``), as keywords. All three make the same draws, so a resumed run may switch.
LOSSES: dict[str, dict[str, bool]] = {
    "eager": {"jit": False, "compile": False},
    "jit": {"jit": True, "compile": False},
    "compile": {"jit": False, "compile": True},
}


def describe(device: torch.device) -> dict[str, Any]:
    """Date, device, CPU, threads, GPU name, versions and whether Pyro validates."""
    return {
        "date": time.strftime("%Y-%m-%d"),
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__},
        "validation": is_validation_enabled(),
    }


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 20) -> float:
    """fp32 FLOP/s of an n x n matrix product (median of ``repeats``)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def smoke_caps(args: argparse.Namespace, **caps: int) -> None:
    """Under ``PYRO_VAE_SMOKE=1`` (see :mod:`pyro_vae.smoke`), cap each named argument at its
    value (each entry of a list, duplicates dropped) and say so on stderr."""
    if not smoke.active():
        return
    for name, cap in caps.items():
        value = getattr(args, name)
        if value is None:
            continue
        if isinstance(value, list):
            setattr(args, name, list(dict.fromkeys(min(v, cap) for v in value)))
        else:
            setattr(args, name, min(value, cap))
    print(f"{smoke.ENV} is set: {caps} (a smoke test, not a result)", file=sys.stderr)


def write_report(path: Path | None, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON to ``path`` (nothing when ``path`` is None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")


# ------------------------------------------------------ the hand-written reference VAE

DATA_DIM, HIDDEN, LATENT = 784, 400, 20


class ReferenceVAE(nn.Module):
    """Kingma & Welling's VAE written directly in PyTorch, with the networks of pyro-vae."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(DATA_DIM, HIDDEN), nn.ReLU())
        self.loc = nn.Linear(HIDDEN, LATENT)
        self.raw_scale = nn.Linear(HIDDEN, LATENT)
        self.dec = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, DATA_DIM))

    def loss(self, x: torch.Tensor, num_data: int) -> torch.Tensor:
        """-ELBO of the minibatch scaled to the data set, as pyro-vae's data plate scales it."""
        h = self.enc(x)
        loc, scale = self.loc(h), softplus(self.raw_scale(h)) + 1e-6
        z = loc + scale * torch.randn_like(loc)
        recon = binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum() - scale.log().sum()
        return (recon + kl) * (num_data / x.shape[0])


#: The conv network of the throughput benchmark: pyro-vae's ``conv`` defaults on 1x28x28.
CHANNELS, WIDTH, SIDE = (32, 64), 256, 28


class ReferenceConvVAE(nn.Module):
    """The same VAE with pyro-vae's ``conv`` networks, written directly in PyTorch: two
    stride-2 convolutions (kernel 4, padding 1) and a dense layer of ``WIDTH``; the decoder
    mirrors them with transposed convolutions."""

    def __init__(self) -> None:
        super().__init__()
        small = SIDE // 4
        self.enc = nn.Sequential(
            nn.Unflatten(1, (1, SIDE, SIDE)),
            nn.Conv2d(1, CHANNELS[0], 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(CHANNELS[0], CHANNELS[1], 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(CHANNELS[1] * small * small, WIDTH),
            nn.ReLU(),
        )
        self.loc = nn.Linear(WIDTH, LATENT)
        self.raw_scale = nn.Linear(WIDTH, LATENT)
        self.dec = nn.Sequential(
            nn.Linear(LATENT, WIDTH),
            nn.ReLU(),
            nn.Linear(WIDTH, CHANNELS[1] * small * small),
            nn.ReLU(),
            nn.Unflatten(1, (CHANNELS[1], small, small)),
            nn.ConvTranspose2d(CHANNELS[1], CHANNELS[0], 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(CHANNELS[0], 1, 4, 2, 1),
            nn.Flatten(),
        )

    loss = ReferenceVAE.loss


def step_macs_per_image(network: str) -> int:
    """Multiply-accumulates of one forward pass (encoder, both heads, decoder) per image."""
    if network == "mlp":
        return DATA_DIM * HIDDEN + 2 * HIDDEN * LATENT + LATENT * HIDDEN + HIDDEN * DATA_DIM
    small, half = SIDE // 4, SIDE // 2
    kernel = 4 * 4
    convs = kernel * (CHANNELS[0] * half * half + CHANNELS[1] * CHANNELS[0] * small * small)
    dense = CHANNELS[1] * small * small * WIDTH
    heads = 2 * WIDTH * LATENT + LATENT * WIDTH
    return 2 * convs + 2 * dense + heads  # the decoder mirrors the convolutions and dense layer


#: The hand-written VAE of each network the throughput benchmark measures.
REFERENCES: dict[str, type[nn.Module]] = {"mlp": ReferenceVAE, "conv": ReferenceConvVAE}
