"""Pictures of a fit: reconstructions, samples, the latent space, and the loss curve.

Image grids go through ``torchvision.utils``; charts use matplotlib's object API (no pyplot
state, no display needed).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from pyro_vae.models import VAE, moments

from .checkpoint import write_bytes
from .data import evenly_spaced


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> None:
    """Render ``fig`` in the format its file name says, and write it atomically, never
    through a link."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    write_bytes(path, buffer.getvalue())


def make_grid(*args, **kwargs):
    """``torchvision.utils.make_grid``, imported on first use (torchvision takes seconds)."""
    from torchvision.utils import make_grid

    return make_grid(*args, **kwargs)


def save_image(images: torch.Tensor, path: str | Path, **kwargs: Any) -> None:
    """``torchvision.utils.save_image`` (imported on first use) as a PNG, written atomically
    and never through a link."""
    from torchvision.utils import save_image

    buffer = io.BytesIO()
    save_image(images, buffer, format="png", **kwargs)
    write_bytes(path, buffer.getvalue())


def _as_images(x: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """Flat rows as ``(N, C, H, W)`` images; ``image_shape`` is ``(H, W)`` (grey) or
    ``(C, H, W)`` (colour)."""
    shape = tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)
    return x.detach().float().cpu().clamp(0, 1).reshape(-1, *shape)


def save_reconstructions(
    vae: VAE, x: torch.Tensor, image_shape: Sequence[int], path: str | Path, num: int = 16
) -> None:
    """Top row: data; bottom row: the mean of p(x | z = E_q[z|x]).

    Shows ``num`` images spread evenly over ``x`` (test sets are often sorted by label).
    """
    x = x[evenly_spaced(len(x), num).to(x.device)]
    grid = torch.cat([_as_images(x, image_shape), _as_images(vae.reconstruct(x), image_shape)])
    save_image(grid, path, nrow=len(x), padding=2, pad_value=1.0)


def save_samples(
    vae: VAE,
    image_shape: Sequence[int],
    path: str | Path,
    num: int = 64,
    labels: torch.Tensor | None = None,
) -> None:
    """Means of p(x|z) for z drawn from the prior: a square-ish grid, or with ``labels`` (for
    class-conditional priors) one row per run of 8 equal labels."""
    images = _as_images(vae.generate(num, labels), image_shape)
    save_image(
        images, path, nrow=8 if labels is not None else int(num**0.5), padding=2, pad_value=1.0
    )


def latent_coordinates(loc: torch.Tensor) -> tuple[torch.Tensor, str]:
    """2-D coordinates for a scatter: z itself if 2-D, else its first two principal components."""
    loc = loc.detach().double().cpu()
    if loc.shape[1] <= 2:
        coords = loc if loc.shape[1] == 2 else torch.cat([loc, torch.zeros_like(loc)], 1)
        return coords, "z"
    centred = loc - loc.mean(0)
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "PC of E_q[z|x]"


def save_latent_scatter(
    vae: VAE, x: torch.Tensor, labels: torch.Tensor | None, path: str | Path
) -> None:
    """Means of q(z|x) for ``x``, coloured by label."""
    with torch.no_grad():
        loc, _ = moments(vae.posterior(x, labels))
    coords, axis = latent_coordinates(loc)
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=6, alpha=0.8)
    else:
        points = ax.scatter(
            coords[:, 0], coords[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=6, alpha=0.8
        )
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title("latent space of the test data")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def save_loss_curve(
    losses: Sequence[float],
    path: str | Path,
    test_elbo: float | None = None,
    betas: Sequence[float] | None = None,
) -> None:
    """Training loss per epoch (nats per datapoint), with the final test -ELBO as a line."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = range(1, len(losses) + 1)
    ax.plot(epochs, losses, marker=".", label="train: -ELBO (KL-weighted) per datapoint")
    if test_elbo is not None:
        ax.axhline(-test_elbo, color="C1", linestyle="--", label="test: -ELBO per datapoint")
    if betas is not None and any(b != 1.0 for b in betas):
        twin = ax.twinx()
        twin.plot(epochs, betas, color="C2", alpha=0.5, label="KL weight")
        twin.set_ylabel("KL weight")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per datapoint")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def save_image_rows(
    rows: dict[str, torch.Tensor], image_shape: Sequence[int], path: str | Path, per_row: int
) -> None:
    """One labelled row of images per entry (e.g. per method)."""
    fig = Figure(figsize=(per_row * 0.55 + 1.8, len(rows) * 0.62 + 0.2))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (label, images) in zip(axes, rows.items(), strict=True):
        grid = make_grid(_as_images(images, image_shape), nrow=per_row, padding=2, pad_value=1.0)
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.3)
    save_figure(fig, path, dpi=110)


def save_samples_by_method(
    vaes: dict[str, VAE],
    image_shape: Sequence[int],
    path: str | Path,
    num: int = 10,
    num_classes: int | None = None,
) -> None:
    """``num`` samples from each model's p(x|z) p(z), one row per model (same seed for all);
    class-conditional priors draw one per label ``0 .. num - 1``."""
    rows = {}
    for label, vae in vaes.items():
        torch.manual_seed(0)
        labels = None
        if vae.prior.needs_labels:
            device = next(vae.decoder.parameters()).device
            labels = torch.arange(num, device=device) % (num_classes or num)
        rows[label] = vae.generate(num, labels)
    save_image_rows(rows, image_shape, path, num)


def save_reconstructions_by_method(
    vaes: dict[str, VAE],
    x: torch.Tensor,
    image_shape: Sequence[int],
    path: str | Path,
    num: int = 10,
) -> None:
    """The data in the top row, then each model's reconstruction of it."""
    x = x[evenly_spaced(len(x), num).to(x.device)]
    rows = {"data": x} | {label: vae.reconstruct(x) for label, vae in vaes.items()}
    save_image_rows(rows, image_shape, path, len(x))


def save_loss_curves(histories: dict[str, Sequence[float]], path: str | Path) -> None:
    """Each method's training loss per epoch on one plot (each its own objective)."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for label, losses in histories.items():
        ax.plot(range(1, len(losses) + 1), losses, marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss, nats per datapoint")
    ax.set_title("each method's own objective (not comparable across methods)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def save_nll_bars(rows: Sequence[dict], path: str | Path) -> None:
    """Test NLL per (method, guide, prior): the mean across seeds, error bars one sd across
    seeds. A row without a ``guide`` is the diagonal one."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        if "test_nll" in row:
            cell = (row["method"], row.get("guide", "diagonal"), row["prior"])
            groups.setdefault("\n".join(cell), []).append(row["test_nll"])
    fig = Figure(figsize=(max(4.0, 1.1 * len(groups) + 1), 4))
    ax = fig.subplots()
    labels = list(groups)
    means = [sum(v) / len(v) for v in groups.values()]
    sds = [
        (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
        for v, m in zip(groups.values(), means, strict=True)
    ]
    ax.bar(range(len(labels)), means, yerr=sds, capsize=4, color="C0")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    if means:
        low, high = min(means), max(means)
        ax.set_ylim(low - 0.1 * (high - low + 1), high + 0.1 * (high - low + 1) + max(sds))
    ax.set_ylabel("test NLL, nats per datapoint (lower is better)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
