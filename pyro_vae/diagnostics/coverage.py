"""Coverage on real test images: how many NUTS draws of the exact posterior fall inside q's
central 50 % and 90 % intervals, per latent dimension, and inside those of q reweighted by
Pareto-smoothed importance weights (does reweighting repair q?).

Calibrated intervals hold their share of the posterior: 0.5 and 0.9. Less means q is too
narrow or shifted there; more, too wide. It runs on the images of the ``nuts`` section, and
its means count only the coordinates whose NUTS chains converged (R-hat and bulk ESS by
ArviZ).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pyro_vae.inference import weighted_draws

from .. import arviz_bridge
from .section import Budget, Diagnosis, Section, register_section

#: The central intervals checked.
PROBS = (0.5, 0.9)
#: NUTS counts as converged for an image when every coordinate's R-hat is at most this ...
RHAT_MAX = 1.01
#: ... and its bulk ESS at least this (Vehtari et al. 2021).
ESS_MIN = 100.0


def weighted_quantiles(
    draws: torch.Tensor, probs: Sequence[float], log_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Quantiles of each column of ``draws`` (``(K, ...)``), with optional log weights
    (``(K, ...)`` broadcast over the trailing dimensions): ``(len(probs), ...)``.

    The q-quantile is the smallest draw whose normalised cumulative weight reaches q.
    """
    k, shape = len(draws), draws.shape[1:]
    flat = draws.double().reshape(k, -1)
    if log_weights is None:
        weights = torch.ones_like(flat)
    else:
        lw = log_weights.double().reshape(
            k, *log_weights.shape[1:], *([1] * (len(shape) - log_weights.dim() + 1))
        )
        weights = torch.softmax(lw.expand(k, *shape).reshape(k, -1), dim=0)
    ordered, order = flat.sort(dim=0)
    cumulative = weights.gather(0, order).cumsum(0)
    cumulative = (cumulative / cumulative[-1:]).T.contiguous()  # (columns, K)
    targets = torch.tensor(probs, dtype=torch.float64).expand(len(cumulative), len(probs))
    at = torch.searchsorted(cumulative, targets.contiguous()).clamp(max=k - 1)
    return ordered.gather(0, at.T).reshape(len(probs), *shape)


def interval_coverage(
    reference: torch.Tensor,
    draws: torch.Tensor,
    log_weights: torch.Tensor | None = None,
    probs: Sequence[float] = PROBS,
) -> torch.Tensor:
    """Share of ``reference`` draws (``(R, images, latent)``, e.g. NUTS's) inside the central
    intervals of ``draws`` (``(K, images, latent)``, q's, weighted by ``log_weights``
    ``(K, images)`` if given): ``(len(probs), images, latent)``."""
    tails = [(1 - p) / 2 for p in probs]
    bounds = weighted_quantiles(draws, [*tails, *(1 - t for t in tails)], log_weights)
    low, high = bounds[: len(probs)], bounds[len(probs) :]
    reference = reference.double()[None]
    return ((reference >= low[:, None]) & (reference <= high[:, None])).double().mean(1)


def _converged(rows: list[dict[str, Any]], images: list[int], latent_dim: int) -> torch.Tensor:
    """Per NUTS image and latent coordinate: whether its R-hat and bulk ESS pass."""
    mask = torch.zeros(len(images), latent_dim, dtype=torch.bool)
    for r in rows:
        mask[images.index(r["image"]), r["latent"]] = (
            r["r_hat"] <= RHAT_MAX and r["ess_bulk"] >= ESS_MIN
        )
    return mask


def _summary(coverage: torch.Tensor, converged: torch.Tensor) -> dict[str, Any]:
    """Per interval: the per-image values, and means over the converged coordinates (per
    dimension and in all) and over every coordinate."""
    out: dict[str, Any] = {"per_image": coverage.tolist()}
    kept = converged.double()
    for p, values in zip(PROBS, coverage, strict=True):
        counts = kept.sum(0)
        per_dimension = (values * kept).sum(0) / counts
        out[f"{round(100 * p)}"] = {
            "per_dimension": [
                None if n == 0 else v.item() for v, n in zip(per_dimension, counts, strict=True)
            ],
            "mean": None if not converged.any() else values[converged].mean().item(),
            "mean_all_coordinates": values.mean().item(),
        }
    return out


def _coverage(d: Diagnosis) -> None:
    config = d.config
    if not config.coverage_draws:
        return
    if "nuts" not in d.draws:
        d.report["coverage"] = {"skipped": "needs the nuts section's draws (nuts_images > 0)"}
        return
    images, nuts = d.draws["images"], d.draws["nuts"]
    rows = [int((d.rows == i).nonzero()) for i in images]
    x, labels = d.x[rows], None if d.labels is None else d.labels[rows]
    d.say(f"coverage of q's intervals on {len(images)} NUTS images")
    torch.manual_seed(config.seed)
    z, log_weights = weighted_draws(d.run.vae, x, labels, particles=config.coverage_draws)
    smoothed, khat = arviz_bridge.pareto_smoothed(log_weights.T)
    reference = nuts.flatten(0, 1).to(z.device)
    converged = _converged(d.report["nuts"]["summary"]["z_nuts"], images, z.shape[-1])
    plain = interval_coverage(reference, z)
    reweighted = interval_coverage(reference, z, torch.as_tensor(smoothed).T.to(z.device))
    d.report["coverage"] = {
        "images": images,
        "converged": converged.tolist(),
        "draws": config.coverage_draws,
        "khat": khat.tolist(),
        "q": _summary(plain.cpu(), converged),
        "psis_q": _summary(reweighted.cpu(), converged),
    }


def _cell(entry: dict[str, Any], level: str) -> str:
    """The mean over converged coordinates, or over all in brackets if none converged."""
    mean = entry[level]["mean"]
    return f"({entry[level]['mean_all_coordinates']:.2f})" if mean is None else f"{mean:.2f}"


def _render(report: dict[str, Any]) -> list[str]:
    if "coverage" not in report:
        return []
    c = report["coverage"]
    if "skipped" in c:
        return ["## Coverage of q's intervals", "", f"Skipped: {c['skipped']}."]
    good = sum(map(sum, c["converged"]))
    total = sum(map(len, c["converged"]))
    lines = [
        "## Coverage of q's intervals",
        "",
        f"Share of NUTS draws inside q's central intervals, on test images {c['images']}, "
        f"averaged over the {good} of {total} coordinates (image, z dimension) whose NUTS "
        f"converged (R-hat <= {RHAT_MAX}, bulk ESS >= {ESS_MIN:.0f}). Calibrated: 0.50 and "
        "0.90; less, q too narrow or shifted; more, too wide. The PSIS-reweighted q uses "
        f"{c['draws']} draws per image (k-hat {', '.join(f'{k:.2f}' for k in c['khat'])}; "
        "above 0.7 the reweighting cannot repair q).",
        "",
        "| proposal | 50 % interval | 90 % interval |",
        "|---|---:|---:|",
        f"| q(z\\|x) | {_cell(c['q'], '50')} | {_cell(c['q'], '90')} |",
        f"| q reweighted (PSIS) | {_cell(c['psis_q'], '50')} | {_cell(c['psis_q'], '90')} |",
    ]
    if good:
        lines += ["", "| z | q 50 % | q 90 % | PSIS q 50 % | PSIS q 90 % |", "|---:|" + "---:|" * 4]
        columns = [
            c[kind][level]["per_dimension"] for kind in ("q", "psis_q") for level in ("50", "90")
        ]
        for dim, values in enumerate(zip(*columns, strict=True)):
            cells = " | ".join("—" if v is None else f"{v:.2f}" for v in values)
            lines.append(f"| {dim} | {cells} |")
    else:
        lines += [
            "",
            "No coordinate's NUTS converged, so the figures (in brackets, over all) are "
            "indicative only: give NUTS more draws and warm-up (--nuts-draws, --nuts-warmup).",
        ]
    return lines


SECTION = register_section(
    Section(
        "coverage",
        _coverage,
        _render,
        budget=(
            Budget(
                "coverage_draws",
                4000,
                "draws of q per NUTS image for its intervals (0 skips coverage)",
                0,
                smoke=400,
            ),
        ),
    )
)
