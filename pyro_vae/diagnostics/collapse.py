"""Posterior collapse (KL per latent dimension, active units) and the aggregate posterior: the
mixture of q(z|x) over the data against p(z), and the mutual information I(x; z) under q."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import pyro.distributions as dist
import torch
from matplotlib.figure import Figure
from torch.distributions import kl_divergence

from pyro_vae.models import VAE, moments

from ..core.errors import ConfigError
from ..core.validate import positive_float, positive_int
from ..plots import save_figure
from .section import (
    Column,
    Diagnosis,
    Scored,
    Section,
    fmt,
    mean_of,
    register_section,
)

#: A latent unit is active when Cov_x(E_q[z_u]) exceeds this (Burda et al. 2016).
ACTIVE_THRESHOLD = 1e-2


class Collapse(NamedTuple):
    """How much each latent dimension is used.

    - ``kl_per_dim``: mean over the data of KL(q(z_u|x) || p(z_u)), ``(latent_dim,)``; ``None``
      when the prior does not factorise over dimensions (mixtures, VampPrior, flows);
    - ``activity``: Cov_x(E_q[z_u]) per dimension;
    - ``active_units``: how many exceed ``threshold``.
    """

    kl_per_dim: torch.Tensor | None
    activity: torch.Tensor
    active_units: int
    threshold: float

    def summary(self) -> dict[str, object]:
        return {
            "active_units": self.active_units,
            "latent_dim": len(self.activity),
            "threshold": self.threshold,
            "activity": self.activity.tolist(),
            "kl_per_dim": None if self.kl_per_dim is None else self.kl_per_dim.tolist(),
        }


def _factorised(prior: dist.Distribution) -> dist.Distribution | None:
    """The per-dimension distribution of a prior that is a product over dimensions."""
    while isinstance(prior, dist.ExpandedDistribution):
        prior = prior.base_dist
    if isinstance(prior, torch.distributions.Independent) and prior.base_dist.event_shape == ():
        return prior.base_dist
    return None


@torch.no_grad()
def posterior_collapse(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    threshold: float = ACTIVE_THRESHOLD,
    draws: int = 100,
) -> Collapse:
    """KL per latent dimension and active units of the encoder on ``x``.

    Args:
        vae: The fitted VAE.
        x: Data, ``(num_data, features)``.
        labels: Labels for priors that use them.
        threshold: Activity above which a unit counts as active.
        draws: Draws per datapoint for the KL where it has no closed form, and for q's
            moments where they have none (``iaf``).

    q(z_u|x) is the marginal of q in coordinate u: exact for the Gaussian families, the
    Gaussian with its mean and standard deviation for ``iaf``.
    """
    positive_float("threshold", threshold)
    positive_int("draws", draws)
    loc, scale = moments(vae.posterior(x, labels), draws)
    activity = loc.double().var(0, unbiased=False) if len(x) > 1 else torch.zeros_like(loc[0])
    base = _factorised(vae.prior(len(x), labels))
    kl = None
    if base is not None:
        q = dist.Normal(loc, scale)
        p = base.expand(loc.shape)
        try:
            kl = kl_divergence(q, p).mean(0)
        except NotImplementedError:
            z = q.sample((draws,))
            kl = (q.log_prob(z) - p.log_prob(z)).mean((0, 1))
    return Collapse(kl, activity, int((activity > threshold).sum()), threshold)


class AggregatePosterior(NamedTuple):
    """q(z) = (1/N) sum_n q(z|x_n) against the prior p(z), estimated on N datapoints.

    - ``kl``: KL(q(z) || p(z)) = E_q(z)[log q(z) - log p(z)];
    - ``mutual_information``: I(x; z) under q = E_x E_q(z|x)[log q(z|x) - log q(z)], a Monte
      Carlo estimate with one draw per datapoint (at most log N; near 0 it can dip below);
    - ``hole_fraction``: share of prior draws where q(z) is lower than at 99 % of its own
      draws, each scored without its own component (0.01 when q(z) = p(z); more means p(z)
      puts mass where no data is encoded: holes that samples from the prior fall into);
    - ``expected_kl``: E_x KL(q(z|x) || p(z)) = ``mutual_information + kl``.

    With N datapoints the mixture is a density estimate: the information estimate cannot
    exceed log N, and when it sits near that cap ``kl`` is overestimated by the excess.
    - ``q_draws``, ``p_draws``: one draw per datapoint from each, ``(N, latent_dim)``.
    """

    kl: float
    mutual_information: float
    hole_fraction: float
    q_draws: torch.Tensor
    p_draws: torch.Tensor

    @property
    def expected_kl(self) -> float:
        return self.mutual_information + self.kl

    @property
    def at_cap(self) -> bool:
        """Whether I(x; z) is within 0.5 nats of log N: N is then too small to resolve it."""
        return self.mutual_information > math.log(len(self.q_draws)) - 0.5

    def summary(self) -> dict[str, float | bool]:
        return {
            "kl": self.kl,
            "mutual_information": self.mutual_information,
            "mutual_information_bound": math.log(len(self.q_draws)),
            "mutual_information_at_bound": self.at_cap,
            "expected_kl": self.expected_kl,
            "hole_fraction": self.hole_fraction,
        }


def _in_float64(q: dist.Distribution) -> dist.Distribution:
    """The Gaussian families' q in float64 (sums of many small densities); others as they are."""
    if isinstance(q, dist.Independent) and isinstance(q.base_dist, dist.Normal):
        return dist.Normal(q.base_dist.loc.double(), q.base_dist.scale.double()).to_event(1)
    if isinstance(q, dist.MultivariateNormal):
        return dist.MultivariateNormal(q.loc.double(), scale_tril=q.scale_tril.double())
    return q


def _log_aggregate(
    z: torch.Tensor,
    q: dist.Distribution,
    leave_own_out: bool = False,
    chunk: int = 256,
) -> torch.Tensor:
    """log (1/N) sum_n q(z_i | x_n) for every row z_i, in chunks of rows; ``q`` has batch
    shape ``(N,)``.

    With ``leave_own_out`` (z_i drawn from component i) the i-th component is left out and the
    mean is over the other N - 1, so z_i is scored like a point the mixture has not seen.
    """
    out = []
    components = _in_float64(q)
    count = q.batch_shape[0]
    for start in range(0, len(z), chunk):
        zi = z[start : start + chunk]
        zi = zi if components is q else zi.double()
        log_p = components.log_prob(zi[:, None, :].expand(len(zi), count, zi.shape[-1])).double()
        log_p = log_p.nan_to_num(nan=-math.inf)  # an inverted flow that overflowed: density 0
        if leave_own_out:
            own = torch.arange(start, start + len(zi), device=z.device)
            log_p[torch.arange(len(zi), device=z.device), own] = -math.inf
        out.append(torch.logsumexp(log_p, dim=1))
    return torch.cat(out) - math.log(count - (1 if leave_own_out else 0))


def _log_prior(vae: VAE, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """log p(z); for a prior conditioned on labels, the mixture over the labels' frequencies."""
    if not vae.prior.needs_labels:
        return vae.prior(len(z), None).log_prob(z).double()
    classes, counts = labels.unique(return_counts=True)
    terms = [
        vae.prior(len(z), torch.full_like(labels[: len(z)], int(c))).log_prob(z).double()
        + math.log(n / len(labels))
        for c, n in zip(classes.tolist(), counts.tolist(), strict=True)
    ]
    return torch.logsumexp(torch.stack(terms), dim=0)


@torch.no_grad()
def aggregate_posterior(
    vae: VAE, x: torch.Tensor, labels: torch.Tensor | None = None
) -> AggregatePosterior:
    """Compare the aggregate posterior of the encoder on ``x`` with the prior.

    Args:
        vae: The fitted VAE.
        x: Data, ``(num_data, features)``; at least 2 rows.
        labels: Labels (needed by label-conditioned priors; their p(z) is the mixture over the
            labels' frequencies in ``labels``).
    """
    if len(x) < 2:
        raise ConfigError("the aggregate posterior needs at least 2 datapoints")
    if vae.prior.needs_labels and labels is None:
        raise ConfigError(f"the {vae.prior.name} prior needs labels")
    q = vae.posterior(x, labels)
    z = q.sample()
    log_q_own = q.log_prob(z).double()
    log_q = _log_aggregate(z, q)
    prior_draws = vae.prior(len(x), labels).sample()
    log_q_at_prior = _log_aggregate(prior_draws, q)
    cutoff = torch.quantile(_log_aggregate(z, q, leave_own_out=True), 0.01)
    return AggregatePosterior(
        mean_of(log_q - _log_prior(vae, z, labels)),
        mean_of(log_q_own - log_q),
        mean_of(log_q_at_prior < cutoff),
        z,
        prior_draws,
    )


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


def _collapse(d: Diagnosis) -> None:
    d.say("posterior collapse and the aggregate posterior")
    collapse = posterior_collapse(d.run.vae, d.x, d.labels)
    aggregate = aggregate_posterior(d.run.vae, d.x, d.labels)
    d.report["collapse"] = {
        **collapse.summary(),
        "mutual_information": aggregate.mutual_information,
    }
    d.report["aggregate_posterior"] = aggregate.summary()
    save_collapse(collapse, d.out / "collapse.png")
    save_aggregate_posterior(aggregate, collapse.activity, d.out / "aggregate.png")
    d.pictures["activity and KL per latent dimension"] = "collapse.png"
    d.pictures["aggregate posterior q(z) against the prior p(z)"] = "aggregate.png"


def _render_collapse(report: dict[str, Any]) -> list[str]:
    if "collapse" not in report:
        return []
    col, agg = report["collapse"], report["aggregate_posterior"]
    lines = [
        "## Posterior collapse",
        "",
        f"Active units: **{col['active_units']} of {col['latent_dim']}** (Cov_x E_q[z_u] > "
        f"{col['threshold']}). Mutual information I(x; z) under q: "
        f"{fmt(col['mutual_information'])} nats (at most log N = "
        f"{fmt(agg['mutual_information_bound'])}).",
    ]
    if col["kl_per_dim"] is None:
        lines.append("KL per dimension: not defined, the prior does not factorise over dimensions.")
    else:
        lines.append(f"KL per dimension: {', '.join(f'{v:.2f}' for v in col['kl_per_dim'])}.")
    lines += [
        "",
        "## Aggregate posterior against the prior",
        "",
        f"KL(q(z) || p(z)) ≈ {fmt(agg['kl'])} nats, of E_x KL(q(z|x) || p(z)) = "
        f"{fmt(agg['expected_kl'])} (the rest is I(x; z)). Prior draws falling where q(z) is "
        f"lower than at 99 % of its own draws: {100 * agg['hole_fraction']:.1f} % (1 % if "
        "q(z) = p(z); more means holes that samples from the prior fall into).",
    ]
    if agg["mutual_information_at_bound"]:
        lines += [
            "",
            f"Note: I(x; z) reaches its cap log N for N = {len(report['test_images'])} images, "
            "so N is too small to resolve it; KL(q(z) || p(z)) is then an overestimate. Use "
            "more test images (--num-test) for a sharper estimate.",
        ]
    return lines


def _score(scored: Scored) -> dict[str, Any]:
    return {"active_units": posterior_collapse(scored.vae, scored.x, scored.labels).active_units}


SECTION = register_section(
    Section(
        "collapse",
        _collapse,
        _render_collapse,
        columns=(Column("active units", "active_units", 6),),
        score=_score,
    )
)
