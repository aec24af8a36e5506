"""q(z|x) against NUTS: draws of the encoder's q beside NUTS draws of the exact posterior under
the fitted decoder, with ArviZ's convergence checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from matplotlib.figure import Figure

from pyro_vae.inference.nuts import LatentPosterior, nuts_latent
from pyro_vae.models import VAE, moments

from .. import arviz_bridge
from ..core.errors import ConfigError
from ..data import evenly_spaced
from ..plots import save_figure
from .section import (
    Budget,
    Diagnosis,
    Section,
    register_section,
)


class LatentComparison(NamedTuple):
    """NUTS and q(z|x) draws for the same images, ``(chains, draws, images, latent_dim)``, and
    q's mean ``loc`` and standard deviation ``scale`` per coordinate, ``(images, latent_dim)``
    (exact for the Gaussian families, from draws for ``iaf``)."""

    nuts: LatentPosterior
    variational: torch.Tensor
    images: list[int]
    loc: torch.Tensor
    scale: torch.Tensor

    def differences(self) -> dict[str, torch.Tensor]:
        """Per image and dimension: (E_q z - E_nuts z) / sd_nuts and sd_q / sd_nuts (see
        :meth:`~pyro_vae.inference.nuts.LatentPosterior.against_moments`)."""
        return self.nuts.against_moments(self.loc, self.scale)

    def gap_summary(self) -> dict[str, float]:
        """``mean_abs_gap_in_sd`` and ``sd_ratio_mean``, as ``compare`` reports them."""
        return self.nuts.gap_summary(self.loc, self.scale)


def vi_against_nuts(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    images: Sequence[int] = (0, 1, 2, 3),
    chains: int = 4,
    draws: int = 200,
    warmup: int = 200,
    seed: int = 0,
) -> LatentComparison:
    """NUTS over z for ``x[images]`` under the fitted decoder, and as many q(z|x) draws.

    Args:
        vae: The fitted VAE (point decoder).
        x: Data; ``images`` index its rows.
        labels: Labels for priors that use them.
        images: Rows to sample.
        chains: NUTS chains (run one after another).
        draws: Draws kept per chain.
        warmup: Warm-up steps per chain.
        seed: Seed of the first chain; the q draws use ``seed`` too.
    """
    images = list(images)
    if not images or min(images) < 0 or max(images) >= len(x):
        raise ConfigError(f"NUTS images must be row indices in 0..{len(x) - 1}, not {images}")
    xs = x[images]
    ys = None if labels is None else labels[images]
    posterior = nuts_latent(vae, xs, ys, chains=chains, draws=draws, warmup=warmup, seed=seed)
    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        q = vae.posterior(xs, ys)
        loc, scale = moments(q)
        draws_q = q.sample((chains, draws))
    return LatentComparison(posterior, draws_q, images, loc, scale)


def save_posterior_overlay(
    nuts: torch.Tensor,
    variational: torch.Tensor,
    images: Sequence[int],
    path: str | Path,
    max_panels: int = 12,
) -> None:
    """Densities (histograms) of NUTS's and q(z|x)'s draws, one panel per (image, latent)
    pair, up to ``max_panels``; both ``(chains, draws, images, latent_dim)``."""
    nuts_draws, vi_draws = (t.detach().double().cpu().flatten(0, 1) for t in (nuts, variational))
    latents = nuts_draws.shape[-1]
    per_image = max(1, min(latents, max_panels // max(1, len(images))))
    rows = max(1, min(len(images), max_panels // per_image))
    fig = Figure(figsize=(2.8 * per_image, 2.4 * rows))
    axes = fig.subplots(rows, per_image, squeeze=False)
    for row in range(rows):
        for col in range(per_image):
            ax = axes[row][col]
            for draws, label in ((nuts_draws, "NUTS"), (vi_draws, "q(z|x)")):
                ax.hist(draws[:, row, col].numpy(), bins=30, density=True, alpha=0.5, label=label)
            ax.set_title(f"image {images[row]}, z[{col}]", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _nuts(d: Diagnosis) -> None:
    config, x = d.config, d.x
    if not config.nuts_images:
        return
    chosen = evenly_spaced(len(x), min(config.nuts_images, len(x))).tolist()
    d.say(
        f"NUTS on {len(chosen)} images, {config.nuts_chains} chains x "
        f"({config.nuts_warmup} + {config.nuts_draws}) steps"
    )
    latent = vi_against_nuts(
        d.run.vae,
        x,
        d.labels,
        images=chosen,
        chains=config.nuts_chains,
        draws=config.nuts_draws,
        warmup=config.nuts_warmup,
        seed=config.seed,
    )
    images = [int(d.rows[i]) for i in chosen]
    d.draws.update(nuts=latent.nuts.samples, variational=latent.variational, images=images)
    idata = arviz_bridge.inference_data(**d.draws)
    summary = {name: arviz_bridge.posterior_summary(idata, name) for name in ("z_nuts", "z_vi")}
    d.report["nuts"] = {
        "images": images,
        "seconds": latent.nuts.seconds,
        **latent.gap_summary(),
        "per_dimension": {k: v.tolist() for k, v in latent.differences().items()},
        "summary": summary,
        **arviz_bridge.convergence(summary["z_nuts"]),
    }
    save_posterior_overlay(
        latent.nuts.samples, latent.variational, images, d.out / "nuts_vs_vi.png"
    )
    d.pictures["NUTS against q(z|x), per image and latent dimension"] = "nuts_vs_vi.png"


def _render_nuts(report: dict[str, Any]) -> list[str]:
    if "nuts" not in report:
        return []
    nuts = report["nuts"]
    lines = [
        "## q(z|x) against NUTS",
        "",
        f"NUTS over z under the fitted decoder for test images {nuts['images']} "
        f"({nuts['seconds']:.0f} s): max R-hat {nuts['rhat_max']:.3f}, min bulk ESS "
        f"{nuts['ess_bulk_min']:.0f} (ArviZ). The encoder's means sit "
        f"{nuts['mean_abs_gap_in_sd']:.2f} posterior sd from NUTS's on average; its sds are "
        f"{nuts['sd_ratio_mean']:.2f} times NUTS's.",
        "",
        "| image | z | NUTS mean | NUTS sd | q mean | q sd | R-hat | ESS bulk |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(nuts["summary"]["z_nuts"], nuts["summary"]["z_vi"], strict=True):
        lines.append(
            f"| {a['image']} | {a['latent']} | {a['mean']:.2f} | {a['sd']:.2f} | "
            f"{b['mean']:.2f} | {b['sd']:.2f} | {a['r_hat']:.3f} | {a['ess_bulk']:.0f} |"
        )
    return lines


def _check(config: Any) -> None:
    if config.nuts_images and config.nuts_chains < 2:
        raise ConfigError("nuts_chains must be at least 2 (R-hat compares chains)")


SECTION = register_section(
    Section(
        "nuts",
        _nuts,
        _render_nuts,
        budget=(
            Budget("nuts_images", 4, "images for NUTS against q(z|x) (0 skips it)", 0, smoke=1),
            Budget("nuts_chains", 4, "NUTS chains (run one after another)", smoke=2),
            Budget("nuts_draws", 200, "NUTS draws kept per chain", smoke=20),
            Budget("nuts_warmup", 200, "NUTS warm-up steps per chain", smoke=20),
        ),
        check=_check,
    )
)
