"""Posterior predictive checks: replicated images from p(x|z), z ~ q(z|x), against the test
images, through test statistics and their Bayesian p-values (Gelman et al. 1996).

Two statistics: each image's intensity (its mean pixel value), compared image by image, and
each pixel's mean over the test images, compared pixel by pixel. The p-value of a statistic T
is P(T(x_rep) > T(x)) + P(T(x_rep) = T(x)) / 2 over the replicates: near 0 or 1 the model's
images differ from the data in T. The replicated and observed statistics go to the exported
InferenceData as ``posterior_predictive`` and ``observed_data`` (what ``arviz.plot_ppc``
reads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from matplotlib.figure import Figure

from pyro_vae.inference.estimators import MAX_ELEMENTS
from pyro_vae.models import VAE

from ..plots import save_figure
from .section import (
    Budget,
    Column,
    Diagnosis,
    Scored,
    Section,
    SectionRefused,
    mean_of,
    register_section,
)

#: A p-value outside (EXTREME, 1 - EXTREME) counts as extreme.
EXTREME = 0.025
#: Replicated intensity densities drawn in the picture.
CURVES = 20


class PredictiveChecks(NamedTuple):
    """Observed and replicated statistics: ``intensity`` per image ``(N,)`` and
    ``(replicates, N)``, ``pixel_mean`` per pixel ``(features,)`` and
    ``(replicates, features)``."""

    intensity: torch.Tensor
    intensity_replicated: torch.Tensor
    pixel_mean: torch.Tensor
    pixel_mean_replicated: torch.Tensor

    def p_values(self) -> dict[str, torch.Tensor]:
        """Bayesian p-values of each image's intensity and each pixel's mean."""
        return {
            "intensity": bayesian_p_values(self.intensity_replicated, self.intensity),
            "pixel_mean": bayesian_p_values(self.pixel_mean_replicated, self.pixel_mean),
        }

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"replicates": len(self.intensity_replicated)}
        for name, p in self.p_values().items():
            out[name] = {
                "p_mean": mean_of(p),
                "extreme_share": mean_of((p < EXTREME) | (p > 1 - EXTREME)),
                "p_values": p.tolist(),
            }
        return out


def bayesian_p_values(replicated: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """P(T_rep > T_obs) + P(T_rep = T_obs) / 2 over the first dimension of ``replicated``."""
    above = (replicated > observed).double().mean(0)
    return above + 0.5 * (replicated == observed).double().mean(0)


@torch.no_grad()
def posterior_predictive_checks(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    replicates: int = 100,
    seed: int = 0,
) -> PredictiveChecks:
    """Replicate every image of ``x`` ``replicates`` times from p(x|z), z ~ q(z|x), and
    return the statistics of the replicates and of ``x``.

    Args:
        vae: The fitted VAE (point decoder).
        x: The test images, ``(N, features)``, as the model reads them.
        labels: Their labels, for priors and guides that read them.
        replicates: Replicated data sets.
        seed: Seed of the draws.
    """
    if vae.weight_sites:
        raise SectionRefused("no decoder to replicate from: its weights are random")
    flat = x.flatten(1)
    per_chunk = max(1, MAX_ELEMENTS // flat.numel())
    intensity, pixel_mean = [], []
    devices = [x.device.index or 0] if x.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        q = vae.posterior(x, labels)
        for start in range(0, replicates, per_chunk):
            z = q.sample((min(per_chunk, replicates - start),))
            images = vae.likelihood(vae.decoder(z)).sample().flatten(2)  # (R, N, features)
            intensity.append(images.double().mean(-1))
            pixel_mean.append(images.double().mean(1))
    x = flat.double()
    return PredictiveChecks(
        x.mean(-1).cpu(), torch.cat(intensity).cpu(), x.mean(0).cpu(), torch.cat(pixel_mean).cpu()
    )


def save_predictive_checks(checks: PredictiveChecks, path: str | Path) -> None:
    """Densities of the per-image intensity (test images against replicated data sets, as
    ``arviz.plot_ppc`` draws them) and histograms of both statistics' p-values."""
    fig = Figure(figsize=(10, 2.8))
    density, by_image, by_pixel = fig.subplots(1, 3)
    for curve in checks.intensity_replicated[:CURVES]:
        density.hist(curve.numpy(), bins=30, density=True, histtype="step", color="C0", alpha=0.3)
    density.hist(checks.intensity.numpy(), bins=30, density=True, histtype="step", color="k")
    density.set_title("image intensity: test (black), replicated (blue)", fontsize=8)
    for ax, (name, p) in zip((by_image, by_pixel), checks.p_values().items(), strict=True):
        ax.hist(p.numpy(), bins=20, range=(0, 1), color="C1")
        ax.set_title(f"Bayesian p-values of {name.replace('_', ' ')}", fontsize=8)
    for ax in (density, by_image, by_pixel):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _predictive(d: Diagnosis) -> None:
    replicates = d.config.ppc_replicates
    if not replicates:
        return
    d.say(f"posterior predictive checks: {replicates} replicates of {len(d.x)} images")
    checks = posterior_predictive_checks(
        d.run.vae, d.x, d.labels, replicates=replicates, seed=d.config.seed
    )
    d.report["predictive"] = checks.summary()
    d.draws.update(
        predictive={
            "intensity": checks.intensity_replicated,
            "pixel_mean": checks.pixel_mean_replicated,
        },
        observed={"intensity": checks.intensity, "pixel_mean": checks.pixel_mean},
        predictive_dims={"intensity": "test_image", "pixel_mean": "pixel"},
    )
    save_predictive_checks(checks, d.out / "ppc.png")
    d.pictures["Posterior predictive checks: intensity per image, p-values"] = "ppc.png"


def _render(report: dict[str, Any]) -> list[str]:
    if "predictive" not in report:
        return []
    c = report["predictive"]
    row = "| {} | {:.2f} | {:.3f} |"
    return [
        "## Posterior predictive checks",
        "",
        f"{c['replicates']} replicated data sets from p(x|z), z ~ q(z|x). A Bayesian p-value "
        "near 0 or 1 means the replicates differ from the data in that statistic; the share "
        f"of extreme ones counts p below {EXTREME} or above {1 - EXTREME}.",
        "",
        "| statistic | mean p-value | share extreme |",
        "|---|---:|---:|",
        row.format(
            "intensity of each image", c["intensity"]["p_mean"], c["intensity"]["extreme_share"]
        ),
        row.format(
            "mean of each pixel", c["pixel_mean"]["p_mean"], c["pixel_mean"]["extreme_share"]
        ),
    ]


def _score(scored: Scored) -> dict[str, Any]:
    checks = posterior_predictive_checks(
        scored.vae, scored.x, scored.labels, replicates=scored.config.ppc_replicates
    )
    return {"ppc_extreme": checks.summary()["intensity"]["extreme_share"]}


REPLICATES = Budget(
    "ppc_replicates",
    100,
    "replicated data sets of the posterior predictive checks (0 skips them)",
    0,
    smoke=10,
)

SECTION = register_section(
    Section(
        "predictive",
        _predictive,
        _render,
        budget=(REPLICATES,),
        columns=(Column("PPC extreme images", "ppc_extreme", 8),),
        score=_score,
    )
)
