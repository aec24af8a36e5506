"""Synthetic probabilistic-PCA data, whose exact posterior and likelihood are known."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..core.errors import ConfigError
from ..core.validate import check_allocation, nonnegative_int
from .dataset import Dataset
from .sources import DATASETS


@DATASETS.register("ppca")
def ppca(
    data_dir: Path | None = None,
    num_train: int = 2000,
    num_test: int = 500,
    data_dim: int = 8,
    latent_dim: int = 2,
    noise: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """Synthetic probabilistic-PCA data: z ~ N(0, I), x = W z + mu + eps, eps ~ N(0, noise^2 I).

    W has orthogonal columns with norms 3, 2, 1.5, ... so the true model is identifiable up to
    sign; ``info["truth"]`` holds W, mu and sigma for exact checks.
    """
    for key, value in {
        "num_train": num_train,
        "num_test": num_test,
        "data_dim": data_dim,
        "latent_dim": latent_dim,
    }.items():
        if not (isinstance(value, int) and value > 0):
            raise ConfigError(f"ppca: {key} must be a positive integer, not {value!r}")
    nonnegative_int("seed", seed)
    check_allocation("ppca's data", (num_train + num_test) * data_dim, 8 + 4)
    if latent_dim >= data_dim:
        raise ConfigError("ppca: latent_dim must be smaller than data_dim")
    if not (isinstance(noise, float | int) and noise > 0 and math.isfinite(noise)):
        raise ConfigError(f"ppca: noise must be a positive number, not {noise!r}")
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(
        torch.randn(data_dim, latent_dim, generator=gen, dtype=torch.float64)
    )
    norms = torch.tensor([3.0 / (1 + 0.5 * j) for j in range(latent_dim)], dtype=torch.float64)
    weight = basis * norms
    mu = torch.randn(data_dim, generator=gen, dtype=torch.float64)

    def draw(n: int) -> torch.Tensor:
        z = torch.randn(n, latent_dim, generator=gen, dtype=torch.float64)
        eps = noise * torch.randn(n, data_dim, generator=gen, dtype=torch.float64)
        return (z @ weight.T + mu + eps).float()

    return Dataset(
        "ppca",
        draw(num_train),
        draw(num_test),
        None,
        None,
        None,
        {
            "source": f"synthetic pPCA, seed {seed}",
            "split": "independent draws",
            "truth": {"W": weight.tolist(), "mu": mu.tolist(), "sigma": float(noise)},
        },
    )
