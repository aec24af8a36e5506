"""Pictures of a diagnosis: k-hat per image, the worst images, collapse, aggregate posterior,
and NUTS against q(z|x) (histograms drawn with matplotlib, the same with either ArviZ line)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from .diagnostics import KHAT_BAD, KHAT_GOOD, AggregatePosterior, Collapse
from .plots import save_figure, save_image_rows


def save_khat(khat: torch.Tensor, path: str | Path) -> None:
    """k-hat of every image (sorted), with the 0.5 and 0.7 bounds."""
    values = khat.detach().double().cpu()
    finite = values[torch.isfinite(values)].sort().values
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    ax.plot(range(len(finite)), finite.numpy(), ".", markersize=3)
    ax.axhline(KHAT_GOOD, color="C1", linestyle="--", label="0.5: good below")
    ax.axhline(KHAT_BAD, color="C3", linestyle="--", label="0.7: unreliable above")
    ax.set_xlabel("test image (sorted by k-hat)")
    ax.set_ylabel("Pareto k-hat")
    if len(finite) < len(values):
        ax.set_title(
            f"{len(values) - len(finite)} images with constant weights left out", fontsize=8
        )
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def save_worst_images(
    x: torch.Tensor, reconstructions: torch.Tensor, image_shape: Sequence[int], path: str | Path
) -> None:
    """The images with the largest k-hat (worst first) above their reconstructions."""
    save_image_rows({"data": x, "recon.": reconstructions}, image_shape, path, len(x))


def save_collapse(collapse: Collapse, path: str | Path) -> None:
    """Activity Cov_x(E_q[z_u]) and, where defined, KL per latent dimension."""
    panels = 1 if collapse.kl_per_dim is None else 2
    fig = Figure(figsize=(6, 2.6 * panels))
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    units = range(len(collapse.activity))
    axes[0].bar(units, collapse.activity.cpu().numpy())
    axes[0].axhline(collapse.threshold, color="C3", linestyle="--", label="active above")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("Cov_x E_q[z_u]")
    axes[0].legend(fontsize=8)
    if collapse.kl_per_dim is not None:
        axes[1].bar(units, collapse.kl_per_dim.cpu().numpy(), color="C2")
        axes[1].set_ylabel("KL per dim (nats)")
    axes[-1].set_xlabel("latent dimension u")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def save_aggregate_posterior(
    aggregate: AggregatePosterior, activity: torch.Tensor, path: str | Path
) -> None:
    """Draws of q(z) and of p(z) in the two most active latent dimensions."""
    dims = activity.argsort(descending=True)[:2].tolist()
    if len(dims) == 1:
        dims = dims * 2
    q = aggregate.q_draws.detach().cpu()[:, dims]
    p = aggregate.p_draws.detach().cpu()[:, dims]
    fig = Figure(figsize=(5.2, 5))
    ax = fig.subplots()
    ax.scatter(p[:, 0], p[:, 1], s=5, alpha=0.35, color="C7", label="p(z)")
    ax.scatter(q[:, 0], q[:, 1], s=5, alpha=0.5, color="C0", label="q(z) (aggregate)")
    ax.set_xlabel(f"z_{dims[0]}")
    ax.set_ylabel(f"z_{dims[1]}")
    ax.set_title(
        f"KL(q(z) || p(z)) ~ {aggregate.kl:.2f} nats; prior draws in holes: "
        f"{100 * aggregate.hole_fraction:.1f} %",
        fontsize=8,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


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
