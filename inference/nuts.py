"""NUTS over the latents of chosen datapoints under a fixed decoder: the reference posterior.

The VAE's own model is the target (p(z) p_theta(x|z) with x observed); only z is sampled, so
the result is the exact posterior p(z|x) the guide q(z|x) approximates. Chains run one after
another (no worker processes), each with its own seed. Convergence (rank-normalised R-hat, bulk
and tail ESS) is computed from the draws by ArviZ in the application
(``pyro_vae.arviz_bridge.convergence``), the one source for every command.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import pyro
import torch
from pyro.infer import MCMC, NUTS
from pyro_vae.models import VAE

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import positive_int


class LatentPosterior(NamedTuple):
    """NUTS draws of z.

    - ``samples``: ``(chains, draws, num_images, latent_dim)``;
    - ``seconds``: wall time of all chains.
    """

    samples: torch.Tensor
    seconds: float

    @property
    def mean(self) -> torch.Tensor:
        return self.samples.flatten(0, 1).mean(0)

    @property
    def std(self) -> torch.Tensor:
        return self.samples.flatten(0, 1).std(0)

    def against_moments(self, loc: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        """How far q(z|x), with mean ``loc`` and standard deviation ``scale`` per coordinate,
        is from these draws, per image and dimension.

        ``mean_gap_in_sd`` is (E_q z - E_nuts z) / sd_nuts and ``sd_ratio`` is sd_q / sd_nuts.
        For the Gaussian families q's moments are exact (no draws from q), so the only Monte
        Carlo error is NUTS's.
        """
        return {"mean_gap_in_sd": (loc - self.mean) / self.std, "sd_ratio": scale / self.std}

    def gap_summary(self, loc: torch.Tensor, scale: torch.Tensor) -> dict[str, float]:
        """Means over images and dimensions of :meth:`against_moments`: ``mean_abs_gap_in_sd``
        and ``sd_ratio_mean``."""
        gaps = self.against_moments(loc, scale)
        return {
            "mean_abs_gap_in_sd": gaps["mean_gap_in_sd"].abs().mean().item(),
            "sd_ratio_mean": gaps["sd_ratio"].mean().item(),
        }

    def summary(self) -> dict[str, float]:
        return {
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
    return LatentPosterior(torch.stack(runs), time.perf_counter() - start)
