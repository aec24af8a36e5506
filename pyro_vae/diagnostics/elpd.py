"""Model comparison on the test images: differences of expected log predictive density between
fits, with standard errors."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ..core.errors import ConfigError
from .importance import importance_diagnostics
from .section import (
    Diagnosis,
    Section,
    fit_name,
    register_section,
)


def elpd_comparison(per_image: Mapping[str, torch.Tensor]) -> list[dict[str, float | str]]:
    """Expected log predictive density of each fit on held-out images, and differences.

    The ELPD of a fit is sum_i log p(x_i) over the test images (held out, so no leave-one-out
    correction is needed); its standard error is sqrt(n var_i log p(x_i)). Fits are sorted
    best first; ``elpd_diff`` is the gap to the best and ``dse`` the standard error of the
    pointwise differences, sqrt(n var_i d_i), as ``arviz.compare`` computes it.

    Args:
        per_image: Per fit, log p(x_i) for the same test images in the same order.
    """
    if not per_image:
        raise ConfigError("elpd_comparison needs at least one fit")
    values = {name: v.double().flatten() for name, v in per_image.items()}
    sizes = {len(v) for v in values.values()}
    if len(sizes) != 1:
        raise ConfigError(f"fits were evaluated on different numbers of images: {sorted(sizes)}")
    n = sizes.pop()
    ranked = sorted(values, key=lambda name: -values[name].sum().item())
    best = values[ranked[0]]
    rows = []
    for name in ranked:
        diff = best - values[name]
        rows.append(
            {
                "fit": name,
                "elpd": values[name].sum().item(),
                "se": math.sqrt(n * values[name].var(unbiased=False).item()),
                "elpd_diff": diff.sum().item(),
                "dse": math.sqrt(n * diff.var(unbiased=False).item()),
            }
        )
    return rows


def _elpd(d: Diagnosis) -> None:
    d.say("model comparison")
    for other in d.others:
        torch.manual_seed(d.config.seed)  # common random numbers: a run against itself ties
        d.log_likelihoods[fit_name(other.folder, d.log_likelihoods)] = importance_diagnostics(
            other.vae, d.x, d.labels, is_samples=d.config.is_samples
        ).log_likelihood
    d.report["elpd"] = elpd_comparison(d.log_likelihoods)


def _render_elpd(report: dict[str, Any]) -> list[str]:
    if "elpd" not in report:
        return []
    return [
        "## Model comparison on the test images",
        "",
        "ELPD = sum of log p(x_i) over the test images (held out); differences to the best fit "
        "with the standard error of the pointwise differences, as `arviz.compare` computes it.",
        "",
        "| fit | ELPD | SE | ELPD diff | SE of diff |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {r['fit']} | {r['elpd']:.1f} | {r['se']:.1f} | {r['elpd_diff']:.1f} | "
            f"{r['dse']:.1f} |"
            for r in report["elpd"]
        ),
    ]


SECTION = register_section(Section("elpd", _elpd, _render_elpd))
