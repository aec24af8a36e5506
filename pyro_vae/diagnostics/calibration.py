"""Simulation-based calibration of the amortized q (Talts et al. 2018; in its variational form
VSBC, Yao et al. 2018): is q(z|x) right about its own uncertainty?

Simulate z* ~ p(z) and x ~ p(x|z*) from the fitted model (the likelihood's own draws, so
binary where it is Bernoulli), draw L values from q(z|x), and count the draws below the truth.
If q were the exact posterior, every such rank would be uniform on 0..L, for each latent
dimension and for any scalar function of (z, x); here also ||z|| and log p(x|z). The ranks'
uniformity is tested per row (:mod:`.uniformity`), with the direction of any failure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import torch
from matplotlib.figure import Figure
from pyro import poutine

from pyro_vae.inference.estimators import MAX_ELEMENTS
from pyro_vae.models import VAE

from .. import arviz_bridge
from ..plots import save_figure
from .section import (
    Budget,
    Column,
    Diagnosis,
    Scored,
    Section,
    SectionRefused,
    register_section,
)
from .uniformity import (
    LEVEL,
    MIN_DRAWS,
    MIN_SIMULATIONS,
    RankTest,
    ecdf_difference,
    rank_tests,
)

#: Panels of the ECDF picture at most.
MAX_PANELS = 12


class Calibration(NamedTuple):
    """SBC ranks ``(quantities, simulations)`` (values in 0..``draws``), one row per name in
    ``names``: ``z[0]``, ..., ``|z|``, ``log p(x|z)``."""

    ranks: torch.Tensor
    names: list[str]
    draws: int

    def tests(self) -> list[RankTest]:
        return rank_tests(self.ranks, self.draws)

    def spread_ratio(self) -> float:
        """Mean over the latent dimensions of sd(u) / sd(uniform), u the normalised rank: 1
        when calibrated, above 1 when q is over-confident, below when under-confident."""
        bins = self.draws + 1
        u = (self.ranks[: self.latent_dim].double() + 0.5) / bins  # normalised ranks
        uniform_sd = math.sqrt((bins**2 - 1) / (12 * bins**2))
        return (u.std(-1, correction=0) / uniform_sd).mean().item()

    @property
    def latent_dim(self) -> int:
        return len(self.names) - 2

    def summary(self) -> dict[str, Any]:
        tests = self.tests()
        return {
            "simulations": self.ranks.shape[1],
            "draws": self.draws,
            "level": LEVEL,
            "min_p_value": min(t.p_value for t in tests),
            "calibrated": all(t.verdict == "calibrated" for t in tests),
            "spread_ratio": self.spread_ratio(),
            "rows": [
                {"quantity": n, **t._asdict()} for n, t in zip(self.names, tests, strict=True)
            ],
        }


def _check_simulable(vae: VAE, simulations: int, draws: int) -> None:
    if draws < MIN_DRAWS:
        raise SectionRefused(
            f"sbc_draws must be at least {MIN_DRAWS} for a rank test (ranks in 0..L need "
            f"L + 1 >= 10 bins), not {draws}"
        )
    if simulations < MIN_SIMULATIONS:
        raise SectionRefused(
            f"sbc_simulations must be at least {MIN_SIMULATIONS} for a rank test, not {simulations}"
        )
    if vae.weight_sites:
        raise SectionRefused(
            "no decoder to simulate from: its weights are random under a weight prior "
            "(fix_weights() gives a point decoder)"
        )


@torch.no_grad()
def simulation_based_calibration(
    vae: VAE,
    *,
    simulations: int = 500,
    draws: int = 99,
    labels: torch.Tensor | None = None,
    seed: int = 0,
) -> Calibration:
    """SBC ranks of q(z|x) on data simulated from the fitted model.

    Args:
        vae: The fitted VAE (point decoder).
        simulations: N, pairs (z*, x) simulated from p(z) p(x|z).
        draws: L, draws from q(z|x) per simulation.
        labels: Under a prior that reads labels, the labels to draw each simulation's from
            (uniformly, e.g. the test labels).
        seed: Seed of the simulations and of q's draws.
    """
    _check_simulable(vae, simulations, draws)
    device = next(vae.parameters()).device
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        ys = None
        if vae.prior.needs_labels:
            if labels is None:
                raise SectionRefused("the prior reads labels, and no labels were given")
            ys = labels[torch.randint(len(labels), (simulations,), device=labels.device)]
        trace = poutine.trace(vae.model).get_trace(None, ys, batch_size=simulations)
        truth, x = trace.nodes["z"]["value"], trace.nodes["x"]["value"]
        q_draws = vae.posterior(x, ys).sample((draws,))  # (L, N, latent)
    both = torch.cat([truth[None], q_draws])  # (1 + L, N, latent): the truth first
    fitted = _log_likelihoods(vae, both, x)  # (1 + L, N)
    values = torch.cat([both, both.norm(dim=-1, keepdim=True), fitted[..., None]], -1)
    ranks = (values[1:] < values[:1]).sum(0).T  # (quantities, N)
    names = [f"z[{i}]" for i in range(truth.shape[-1])] + ["|z|", "log p(x|z)"]
    return Calibration(ranks.cpu(), names, draws)


def _log_likelihoods(vae: VAE, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) for every draw, ``z`` ``(draws, N, latent)``, a few draws at a time."""
    per_chunk = max(1, MAX_ELEMENTS // x.numel())
    return torch.cat([vae.likelihood(vae.decoder(part)).log_prob(x) for part in z.split(per_chunk)])


def save_ecdf_differences(calibration: Calibration, path: str | Path) -> None:
    """The ECDF of each row's ranks minus the uniform CDF, with ArviZ's simultaneous 95 %
    band. A curve that leaves the band is miscalibrated: a hump above zero means q's draws sit
    too high (the truth's ranks are low), a dip below zero too low; a curve falling from above
    zero to below it means q is over-confident (ranks at both ends), one rising from below to
    above, under-confident (ranks in the middle)."""
    rows = calibration.names[:MAX_PANELS]
    ranks = calibration.ranks[: len(rows)].numpy()
    points, difference = ecdf_difference(ranks, calibration.draws)
    lower, upper = arviz_bridge.ecdf_band(ranks.shape[1], points)
    cols = min(4, len(rows))
    fig = Figure(figsize=(2.8 * cols, 2.2 * math.ceil(len(rows) / cols)))
    axes = fig.subplots(math.ceil(len(rows) / cols), cols, squeeze=False).ravel()
    for ax, name, curve in zip(axes, rows, difference, strict=False):
        ax.fill_between(points, lower - points, upper - points, color="0.85", step="post")
        ax.step(points, curve, where="post", color="C0")
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(rows) :]:
        ax.set_axis_off()
    fig.supxlabel("normalised rank", fontsize=8)
    fig.supylabel("ECDF - uniform", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _calibration(d: Diagnosis) -> None:
    config = d.config
    if not config.sbc_simulations:
        return
    d.say(
        f"simulation-based calibration: {config.sbc_simulations} simulations x "
        f"{config.sbc_draws} draws of q"
    )
    pool = d.run.test_labels if d.run.test_labels is not None else d.run.train_labels
    calibration = simulation_based_calibration(
        d.run.vae,
        simulations=config.sbc_simulations,
        draws=config.sbc_draws,
        labels=pool,
        seed=config.seed,
    )
    d.report["calibration"] = calibration.summary()
    d.draws.update(ranks=calibration.ranks, rank_names=calibration.names)
    save_ecdf_differences(calibration, d.out / "sbc_ecdf.png")
    d.pictures["Simulation-based calibration: rank ECDF minus uniform, 95 % band"] = "sbc_ecdf.png"


def _render(report: dict[str, Any]) -> list[str]:
    if "calibration" not in report:
        return []
    c = report["calibration"]
    rows = len(c["rows"])
    lines = [
        "## Is q calibrated? Simulation-based calibration",
        "",
        f"{c['simulations']} pairs (z*, x) simulated from the fitted model, {c['draws']} draws "
        "of q(z|x) each; the rank of z* among the draws is uniform when q is the posterior. "
        f"Test of Säilynoja et al. (2022) per row, verdict at {c['level']} shared over the "
        f"{rows} rows (each at {c['level'] / rows:.4f}). Mean sd of the ranks against a "
        f"uniform's: {c['spread_ratio']:.2f} (above 1: q too narrow).",
        "",
        "| quantity | p-value | bias (z) | spread (z) | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for r in c["rows"]:
        quantity = r["quantity"].replace("|", "\\|")  # a bar would end the table's cell
        lines.append(
            f"| {quantity} | {r['p_value']:.4f} | {r['bias']:+.1f} | {r['spread']:+.1f} "
            f"| {r['verdict']} |"
        )
    return lines


def _score(scored: Scored) -> dict[str, Any]:
    pool = scored.labels
    calibration = simulation_based_calibration(
        scored.vae,
        simulations=scored.config.sbc_simulations,
        draws=scored.config.sbc_draws,
        labels=pool,
    )
    summary = calibration.summary()
    return {"sbc_min_p": summary["min_p_value"], "sbc_spread": summary["spread_ratio"]}


SIMULATIONS = Budget(
    "sbc_simulations",
    500,
    "pairs (z, x) simulated for simulation-based calibration (0 skips it)",
    0,
    smoke=50,
)
DRAWS = Budget("sbc_draws", 99, "draws of q(z|x) per simulation (ranks in 0..L)", smoke=19)

SECTION = register_section(
    Section(
        "calibration",
        _calibration,
        _render,
        budget=(SIMULATIONS, DRAWS),
        columns=(
            Column("SBC min p", "sbc_min_p", 8),
            Column("SBC rank spread", "sbc_spread", 8),
        ),
        score=_score,
    )
)
