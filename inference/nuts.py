"""NUTS over the latents of chosen datapoints under a fixed decoder: the reference posterior.

The VAE's own model is the target (p(z) p_theta(x|z) with x observed); only z is sampled, so
the result is the exact posterior p(z|x) the guide q(z|x) approximates. Chains run one after
another (no worker processes), each with its own seed; R-hat and ESS come from
``pyro.ops.stats``.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import pyro
import torch
from pyro.infer import MCMC, NUTS
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from pyro_vae.models import VAE

from pyro_vae.errors import ConfigError
from pyro_vae.validate import positive_int


class LatentPosterior(NamedTuple):
    """NUTS draws of z and their diagnostics.

    - ``samples``: ``(chains, draws, num_images, latent_dim)``;
    - ``rhat``, ``ess``: split R-hat and effective sample size per image and dimension;
    - ``seconds``: wall time of all chains.
    """

    samples: torch.Tensor
    rhat: torch.Tensor
    ess: torch.Tensor
    seconds: float

    @property
    def mean(self) -> torch.Tensor:
        return self.samples.flatten(0, 1).mean(0)

    @property
    def std(self) -> torch.Tensor:
        return self.samples.flatten(0, 1).std(0)

    def summary(self) -> dict[str, float]:
        return {
            "rhat_max": self.rhat.max().item(),
            "ess_min": self.ess.min().item(),
            "chains": self.samples.shape[0],
            "draws": self.samples.shape[1],
            "images": self.samples.shape[2],
            "seconds": self.seconds,
        }


def nuts_latent(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    chains: int = 2,
    draws: int = 200,
    warmup: int = 200,
    seed: int = 0,
) -> LatentPosterior:
    """Sample p(z | x) for each row of ``x`` by NUTS under the VAE's (point) decoder.

    Args:
        vae: A VAE whose decoder is a point estimate (no weight sites).
        x: The datapoints, ``(num_images, features)``, as the model expects them.
        labels: Their labels, for priors that use them.
        chains: Independent chains, run one after another (at least 2 for R-hat).
        draws: Kept draws per chain.
        warmup: Adaptation steps per chain.
        seed: Seed of the first chain (chain c uses ``seed + c``).
    """
    positive_int("chains", chains)
    positive_int("draws", draws)
    positive_int("warmup", warmup)
    if chains < 2:
        raise ConfigError("NUTS needs at least 2 chains to check convergence (R-hat)")
    if vae.weight_sites:
        raise ConfigError("NUTS over z needs a point decoder; call vae.fix_weights() first")
    start = time.perf_counter()
    runs = []
    for chain in range(chains):
        pyro.set_rng_seed(seed + chain)
        mcmc = MCMC(
            NUTS(vae.model, jit_compile=False),
            num_samples=draws,
            warmup_steps=warmup,
            num_chains=1,
            disable_progbar=True,
        )
        mcmc.run(x, labels)
        runs.append(mcmc.get_samples()["z"].detach())
    samples = torch.stack(runs)
    return LatentPosterior(
        samples,
        split_gelman_rubin(samples, chain_dim=0, sample_dim=1),
        effective_sample_size(samples, chain_dim=0, sample_dim=1),
        time.perf_counter() - start,
    )
