"""The sections of a diagnosis: each computes its part of ``diagnostics.json`` (and its
pictures) and renders its part of ``report.md``. A new diagnostic is one :class:`Section` added
to :data:`SECTIONS`."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import arviz_bridge, diagnostic_plots
from .data import evenly_spaced
from .diagnostics import (
    KHAT_BAD,
    KHAT_GOOD,
    aggregate_posterior,
    elpd_comparison,
    importance_diagnostics,
    inference_gaps,
    posterior_collapse,
    vi_against_nuts,
)
from .runs import Run

#: Images shown as the worst by k-hat.
WORST_SHOWN = 8


@dataclass
class Diagnosis:
    """What the sections read (run, settings, test images) and add to (report, pictures,
    posterior draws and per-fit log-likelihoods for the InferenceData)."""

    run: Run
    config: Any  # DiagnoseConfig
    rows: torch.Tensor
    out: Path
    others: list[Run] = field(default_factory=list)
    progress: bool = False
    report: dict[str, Any] = field(default_factory=dict)
    pictures: dict[str, str] = field(default_factory=dict)
    draws: dict[str, Any] = field(default_factory=dict)
    log_likelihoods: dict[str, torch.Tensor] = field(default_factory=dict)

    @functools.cached_property
    def x(self) -> torch.Tensor:
        return self.run.test_x[self.rows]

    @functools.cached_property
    def labels(self) -> torch.Tensor | None:
        return None if self.run.test_labels is None else self.run.test_labels[self.rows]

    def say(self, text: str) -> None:
        if self.progress:
            print(f"pyro-vae diagnose: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Section:
    """One diagnostic: ``compute`` adds its entries to the diagnosis's report (and may skip
    itself); ``render`` turns the whole report into its lines of ``report.md`` (none when its
    entries are absent)."""

    name: str
    compute: Callable[[Diagnosis], None]
    render: Callable[[dict[str, Any]], list[str]]


def _f(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------- importance sampling


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
    d.log_likelihoods[_fit_name(d.run.folder, ())] = importance.log_likelihood
    diagnostic_plots.save_khat(importance.khat, d.out / "khat.png")
    d.pictures["k-hat per image"] = "khat.png"
    shape = d.run.data.image_shape
    if shape is not None:
        recon = d.run.vae.reconstruct(x[worst])
        diagnostic_plots.save_worst_images(x[worst], recon, shape, d.out / "worst_images.png")
        d.pictures["images with the largest k-hat, and their reconstructions"] = "worst_images.png"


def _render_importance(report: dict[str, Any]) -> list[str]:
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
        f"| {_f(imp['log_likelihood'])} | {_f(imp['psis_log_likelihood'])} | {_f(imp['elbo'])} "
        f"| {100 * shares['good (< 0.5)']:.1f} % | {100 * shares['ok (0.5-0.7)']:.1f} % | "
        f"{100 * shares['bad (> 0.7)']:.1f} % | {_f(imp['khat_max'])} |",
        "",
        f"Below {KHAT_GOOD} the importance-sampled log p(x) is reliable; above {KHAT_BAD} q(z|x) "
        "misses part of the posterior and the estimate can be far off (with K draws the bound "
        f"for 'good' is min(1 - 1/log10 K, 0.7) = {imp['khat_threshold_for_K']:.2f}). Worst "
        "images (test index: k-hat): "
        + ", ".join(f"{w['test_image']}: {w['khat']:.2f}" for w in imp["worst_images"])
        + ".",
    ]


# ----------------------------------------------------- collapse and aggregate posterior


def _collapse(d: Diagnosis) -> None:
    d.say("posterior collapse and the aggregate posterior")
    collapse = posterior_collapse(d.run.vae, d.x, d.labels)
    aggregate = aggregate_posterior(d.run.vae, d.x, d.labels)
    d.report["collapse"] = {
        **collapse.summary(),
        "mutual_information": aggregate.mutual_information,
    }
    d.report["aggregate_posterior"] = aggregate.summary()
    diagnostic_plots.save_collapse(collapse, d.out / "collapse.png")
    diagnostic_plots.save_aggregate_posterior(aggregate, collapse.activity, d.out / "aggregate.png")
    d.pictures["activity and KL per latent dimension"] = "collapse.png"
    d.pictures["aggregate posterior q(z) against the prior p(z)"] = "aggregate.png"


def _render_collapse(report: dict[str, Any]) -> list[str]:
    col, agg = report["collapse"], report["aggregate_posterior"]
    lines = [
        "## Posterior collapse",
        "",
        f"Active units: **{col['active_units']} of {col['latent_dim']}** (Cov_x E_q[z_u] > "
        f"{col['threshold']}). Mutual information I(x; z) under q: "
        f"{_f(col['mutual_information'])} nats (at most log N = "
        f"{_f(agg['mutual_information_bound'])}).",
    ]
    if col["kl_per_dim"] is None:
        lines.append("KL per dimension: not defined, the prior does not factorise over dimensions.")
    else:
        lines.append(f"KL per dimension: {', '.join(f'{v:.2f}' for v in col['kl_per_dim'])}.")
    lines += [
        "",
        "## Aggregate posterior against the prior",
        "",
        f"KL(q(z) || p(z)) ≈ {_f(agg['kl'])} nats, of E_x KL(q(z|x) || p(z)) = "
        f"{_f(agg['expected_kl'])} (the rest is I(x; z)). Prior draws falling where q(z) is "
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


# ------------------------------------------------------------------------ inference gaps


def _gaps(d: Diagnosis) -> None:
    config, x, labels = d.config, d.x, d.labels
    if not config.gap_images:
        return
    count = min(config.gap_images, len(x))
    d.say(f"amortization gap on {count} images ({config.gap_steps} steps of q*)")
    chosen = evenly_spaced(len(x), count).to(x.device)
    d.report["gaps"] = inference_gaps(
        d.run.vae,
        x[chosen],
        None if labels is None else labels[chosen],
        steps=config.gap_steps,
        is_samples=config.is_samples,
    ).summary()


def _render_gaps(report: dict[str, Any]) -> list[str]:
    if "gaps" not in report:
        return []
    gaps = report["gaps"]
    return [
        "## Inference gaps (Cremer et al. 2018)",
        "",
        f"On {gaps['images']} images; q* is a Gaussian optimised per image "
        f"({gaps['q_star_steps']} Adam steps from the encoder's output), log p(x) is "
        "importance-sampled with q* as proposal.",
        "",
        "| log p(x) | ELBO(q*) | ELBO(q_phi) | approximation gap | amortization gap |",
        "|---:|---:|---:|---:|---:|",
        f"| {_f(gaps['log_likelihood'])} | {_f(gaps['elbo_optimal'])} | "
        f"{_f(gaps['elbo_encoder'])} | {_f(gaps['approximation_gap'])} | "
        f"{_f(gaps['amortization_gap'])} |",
    ]


# ---------------------------------------------------------------------- q against NUTS


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
    diagnostic_plots.save_posterior_overlay(
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


# -------------------------------------------------------------------- model comparison


def _fit_name(folder: Path, taken: Any) -> str:
    """The run folder's name, made unique among ``taken`` (netCDF names hold no ``/``)."""
    base = folder.resolve().name.replace("/", "_") or "run"
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}-{count}"
    return name


def _elpd(d: Diagnosis) -> None:
    d.say("model comparison")
    for other in d.others:
        torch.manual_seed(d.config.seed)  # common random numbers: a run against itself ties
        d.log_likelihoods[_fit_name(other.folder, d.log_likelihoods)] = importance_diagnostics(
            other.vae, d.x, d.labels, is_samples=d.config.is_samples
        ).log_likelihood
    d.report["elpd"] = elpd_comparison(d.log_likelihoods)


def _render_elpd(report: dict[str, Any]) -> list[str]:
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


#: Every diagnostic, in the order it runs and is reported.
SECTIONS: list[Section] = [
    Section("importance", _importance, _render_importance),
    Section("collapse", _collapse, _render_collapse),
    Section("gaps", _gaps, _render_gaps),
    Section("nuts", _nuts, _render_nuts),
    Section("elpd", _elpd, _render_elpd),
]
