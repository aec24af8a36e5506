"""Importance sampling with q(z|x) as the proposal: log p(x), plain and Pareto-smoothed, and
Pareto k-hat per image (is q(z|x) a usable proposal for p(z|x)?)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from matplotlib.figure import Figure

from pyro_vae.inference import Evaluation, evaluate
from pyro_vae.inference.svi import Program

from .. import arviz_bridge
from ..core.errors import ConfigError
from ..core.validate import check_allocation
from ..plots import save_figure, save_image_rows
from .section import (
    Budget,
    Column,
    Diagnosis,
    Scored,
    Section,
    fit_name,
    fmt,
    mean_of,
    register_section,
)

#: Fewest importance samples per image that k-hat is estimated from. PSIS fits the Pareto
#: tail to the largest min(K/5, 3 sqrt K) weights (Vehtari et al. 2024); at K = 20 that is 4,
#: too few for a fit (ArviZ returns k-hat = inf), and the paper's sample-size-dependent
#: threshold min(1 - 1/log10 K, 0.7) only reaches 0.5 at K = 100. 200 gives a 28-draw tail.
MIN_IS_SAMPLES = 200
#: Pareto k-hat bins of Vehtari et al.: good, usable, unreliable.
KHAT_GOOD, KHAT_BAD = 0.5, 0.7
#: Images shown as the worst by k-hat.
WORST_SHOWN = 8


class ImportanceDiagnostics(NamedTuple):
    """Per-image importance sampling with the guide as proposal; tensors of shape (num_data,).

    - ``log_likelihood``: log (1/K) sum_k w_k, the plain IS estimate of log p(x);
    - ``psis_log_likelihood``: the same with Pareto-smoothed weights;
    - ``khat``: Pareto shape of each image's weights (-inf: constant weights, exact posterior);
    - ``elbo``: mean over the K draws of log w_k.
    """

    log_likelihood: torch.Tensor
    psis_log_likelihood: torch.Tensor
    khat: torch.Tensor
    elbo: torch.Tensor
    is_samples: int

    @property
    def khat_threshold(self) -> float:
        """The sample-size-dependent bound for "good" (Vehtari et al. 2024):
        min(1 - 1/log10 K, 0.7)."""
        return min(1.0 - 1.0 / math.log10(self.is_samples), KHAT_BAD)

    def khat_shares(self) -> dict[str, float]:
        """Shares of images with k-hat below 0.5, from 0.5 to 0.7, and above 0.7."""
        k = self.khat
        return {
            "good (< 0.5)": mean_of(k < KHAT_GOOD),
            "ok (0.5-0.7)": mean_of((k >= KHAT_GOOD) & (k <= KHAT_BAD)),
            "bad (> 0.7)": mean_of(k > KHAT_BAD),
        }

    def worst(self, num: int = 8) -> list[int]:
        """Indices of the ``num`` images with the largest k-hat, worst first."""
        return self.khat.argsort(descending=True)[:num].tolist()

    def summary(self) -> dict[str, object]:
        return {
            "is_samples": self.is_samples,
            "log_likelihood": mean_of(self.log_likelihood),
            "psis_log_likelihood": mean_of(self.psis_log_likelihood),
            "elbo": mean_of(self.elbo),
            "khat_max": self.khat.max().item(),
            "khat_median": self.khat.median().item(),
            "khat_shares": self.khat_shares(),
            "khat_threshold_for_K": self.khat_threshold,
        }


def importance_diagnostics(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    is_samples: int = 1000,
    batch_size: int = 100,
) -> ImportanceDiagnostics:
    """IS log p(x), PSIS log p(x) and Pareto k-hat for every row of ``x``.

    Args:
        program: Module with ``model`` and ``guide``; the guide is the proposal.
        x: Data as the model expects it, ``(num_data, features)``.
        labels: Labels for priors that use them.
        is_samples: K, draws per image (k-hat needs a few hundred to be meaningful).
        batch_size: Images per chunk.
    """
    if is_samples < MIN_IS_SAMPLES:
        raise ConfigError(
            f"Pareto k-hat needs at least {MIN_IS_SAMPLES} importance samples, not {is_samples}"
        )
    result = evaluate(
        program, x, labels, is_samples=is_samples, batch_size=batch_size, keep_log_weights=True
    )
    return pareto_diagnostics(result)


def pareto_diagnostics(result: Evaluation) -> ImportanceDiagnostics:
    """PSIS and k-hat from an :func:`~pyro_vae.inference.evaluate` run with
    ``keep_log_weights=True`` (so one pass gives the ELBO terms and the diagnostics)."""
    if result.log_weights is None:
        raise ConfigError("pareto_diagnostics needs evaluate(..., keep_log_weights=True)")
    smoothed, khat = arviz_bridge.pareto_smoothed(result.log_weights)
    device = result.log_weights.device
    return ImportanceDiagnostics(
        result.log_likelihood,
        torch.logsumexp(torch.as_tensor(smoothed, device=device), dim=-1)
        - math.log(result.is_samples),
        torch.as_tensor(khat, device=device),
        result.elbo,
        result.is_samples,
    )


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


def _importance(d: Diagnosis) -> None:
    config, x, rows = d.config, d.x, d.rows
    d.say(f"importance sampling, K={config.is_samples}, {len(x)} images")
    torch.manual_seed(config.seed)  # every fit is scored with the same random numbers
    importance = importance_diagnostics(d.run.vae, x, d.labels, is_samples=config.is_samples)
    worst = importance.worst(WORST_SHOWN)
    d.report["importance"] = {
        **importance.summary(),
        "worst_images": [
            {"test_image": int(rows[i]), "khat": importance.khat[i].item()} for i in worst
        ],
        "per_image": {
            "log_likelihood": importance.log_likelihood.tolist(),
            "psis_log_likelihood": importance.psis_log_likelihood.tolist(),
            "khat": [k if k > float("-inf") else None for k in importance.khat.tolist()],
        },
    }
    d.log_likelihoods[fit_name(d.run.folder, ())] = importance.log_likelihood
    save_khat(importance.khat, d.out / "khat.png")
    d.pictures["k-hat per image"] = "khat.png"
    shape = d.run.data.image_shape
    if shape is not None:
        recon = d.run.vae.reconstruct(x[worst])
        save_worst_images(x[worst], recon, shape, d.out / "worst_images.png")
        d.pictures["images with the largest k-hat, and their reconstructions"] = "worst_images.png"


def _render_importance(report: dict[str, Any]) -> list[str]:
    if "importance" not in report:
        return []
    imp = report["importance"]
    shares = imp["khat_shares"]
    return [
        "## Importance sampling and Pareto k-hat",
        "",
        f"q(z|x) is the proposal, K = {imp['is_samples']} draws per image.",
        "",
        "| log p(x), plain IS | log p(x), PSIS | ELBO | k-hat < 0.5 | 0.5–0.7 | > 0.7 | "
        "max k-hat |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {fmt(imp['log_likelihood'])} | {fmt(imp['psis_log_likelihood'])} | {fmt(imp['elbo'])} "
        f"| {100 * shares['good (< 0.5)']:.1f} % | {100 * shares['ok (0.5-0.7)']:.1f} % | "
        f"{100 * shares['bad (> 0.7)']:.1f} % | {fmt(imp['khat_max'])} |",
        "",
        f"Below {KHAT_GOOD} the importance-sampled log p(x) is reliable; above {KHAT_BAD} q(z|x) "
        "misses part of the posterior and the estimate can be far off (with K draws the bound "
        f"for 'good' is min(1 - 1/log10 K, 0.7) = {imp['khat_threshold_for_K']:.2f}). Worst "
        "images (test index: k-hat): "
        + ", ".join(f"{w['test_image']}: {w['khat']:.2f}" for w in imp["worst_images"])
        + ".",
    ]


def _check(config: Any) -> None:
    if config.is_samples < MIN_IS_SAMPLES:
        raise ConfigError(
            f"is_samples must be at least {MIN_IS_SAMPLES} for Pareto k-hat, not "
            f"{config.is_samples}"
        )
    check_allocation(
        f"K = {config.is_samples} log weights for each of up to {config.num_test} test images",
        config.num_test * config.is_samples,
    )


def _score(scored: Scored) -> dict[str, Any]:
    """The shares of a fit's test images with good and bad k-hat (where K allows k-hat)."""
    if scored.evaluation.log_weights is None:
        return {}
    shares = pareto_diagnostics(scored.evaluation).khat_shares()
    return {"khat_good": shares["good (< 0.5)"], "khat_bad": shares["bad (> 0.7)"]}


SECTION = register_section(
    Section(
        "importance",
        _importance,
        _render_importance,
        budget=(
            Budget(
                "is_samples",
                1000,
                "K, importance samples per image for log p(x) and k-hat",
                smoke=MIN_IS_SAMPLES,
            ),
        ),
        check=_check,
        columns=(Column("share k-hat > 0.7", "khat_bad", 7),),
        score=_score,
    )
)
