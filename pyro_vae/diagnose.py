"""``pyro-vae diagnose``: every diagnostic of a trained run, written as a report.

Outputs (in ``RUN/diagnostics`` unless told otherwise): ``report.md`` (numbers and pictures),
``diagnostics.json`` (the same numbers, per-image values included), ``inference_data.nc``
(ArviZ InferenceData: NUTS and q(z|x) draws in ``posterior``, per-image test log-likelihoods of
every fit in ``log_likelihood``), and the pictures the report shows.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from . import arviz_bridge, diagnostic_plots
from .checkpoint import write_json, write_text
from .config import option
from .data import evenly_spaced
from .diagnostics import (
    KHAT_BAD,
    KHAT_GOOD,
    MIN_IS_SAMPLES,
    aggregate_posterior,
    elpd_comparison,
    importance_diagnostics,
    inference_gaps,
    posterior_collapse,
    vi_against_nuts,
)
from .errors import CheckpointError, ConfigError
from .run_folder import check_out_dir, claimed_out_dir, versions
from .runs import Run, load_run
from .validate import check_allocation, nonnegative_int, positive_int

#: Images shown as the worst by k-hat.
WORST_SHOWN = 8


@dataclass
class DiagnoseConfig:
    """Budget of a diagnosis; field names are the CLI's options (``is_samples``:
    ``--is-samples``)."""

    num_test: int = option(1000, "test images used (spread evenly over the test set)")
    is_samples: int = option(1000, "K, importance samples per image for log p(x) and k-hat")
    gap_images: int = option(100, "images for the amortization gap (0 skips it)")
    gap_steps: int = option(500, "Adam steps of the per-image Gaussian q*")
    nuts_images: int = option(4, "images for NUTS against q(z|x) (0 skips it)")
    nuts_chains: int = option(4, "NUTS chains (run one after another)")
    nuts_draws: int = option(200, "NUTS draws kept per chain")
    nuts_warmup: int = option(200, "NUTS warm-up steps per chain")
    seed: int = option(0, "random seed of every estimate")
    device: str | None = option(None, "cpu or cuda[:N] (default: the run's own)", metavar="DEVICE")

    def __post_init__(self) -> None:
        for name in ("num_test", "is_samples", "gap_steps", "nuts_draws", "nuts_warmup"):
            positive_int(name, getattr(self, name))
        for name in ("gap_images", "nuts_images", "seed"):
            nonnegative_int(name, getattr(self, name))
        positive_int("nuts_chains", self.nuts_chains)
        if self.is_samples < MIN_IS_SAMPLES:
            raise ConfigError(
                f"is_samples must be at least {MIN_IS_SAMPLES} for Pareto k-hat, not "
                f"{self.is_samples}"
            )
        check_allocation(
            f"K = {self.is_samples} log weights for each of up to {self.num_test} test images",
            self.num_test * self.is_samples,
        )
        if self.nuts_images and self.nuts_chains < 2:
            raise ConfigError("nuts_chains must be at least 2 (R-hat compares chains)")


def _check_comparable(run: Run, other: Run) -> None:
    mine = (run.config.dataset, run.config.binarize, len(run.test_x))
    theirs = (other.config.dataset, other.config.binarize, len(other.test_x))
    if mine != theirs:
        raise CheckpointError(
            f"cannot compare {other.folder} with {run.folder}: data set, binarization or test "
            f"size differ ({theirs} against {mine})"
        )


def _fit_name(folder: Path, taken: Any) -> str:
    """The run folder's name, made unique among ``taken`` (netCDF names hold no ``/``)."""
    base = folder.resolve().name.replace("/", "_") or "run"
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}-{count}"
    return name


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"pyro-vae diagnose: {text}", file=sys.stderr, flush=True)


def diagnose(
    run_dir: str | Path,
    config: DiagnoseConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    against: tuple[str | Path, ...] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Diagnose the run in ``run_dir``; returns what ``diagnostics.json`` holds.

    Args:
        run_dir: A run folder written by ``pyro-vae train``.
        config: Sample sizes and what to skip.
        out_dir: Where to write (default ``run_dir/diagnostics``; must be new or empty).
        against: Other run folders on the same data: their per-image test log-likelihoods join
            the ELPD comparison.
        progress: Report each stage on stderr.
    """
    config = config or DiagnoseConfig()
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "diagnostics"
    run = load_run(run_dir, device=config.device)
    others = [load_run(folder, device=config.device) for folder in against]
    for other in others:
        _check_comparable(run, other)
    check_out_dir(out, resume=False, resumable=False)

    torch.manual_seed(config.seed)
    rows = evenly_spaced(len(run.test_x), config.num_test).to(run.test_x.device)
    x = run.test_x[rows]
    y = None if run.test_y is None else run.test_y[rows]
    vae = run.vae
    with claimed_out_dir(out):
        report: dict[str, Any] = {
            "run": str(run.folder),
            "dataset": run.config.dataset,
            "binarization": run.config.binarize,
            "epochs": run.epochs,
            "units": "nats per image",
            "test_images": rows.tolist(),
            "config": asdict(config),
        }
        pictures: dict[str, str] = {}

        _say(progress, f"importance sampling, K={config.is_samples}, {len(x)} images")
        torch.manual_seed(config.seed)  # every fit is scored with the same random numbers
        importance = importance_diagnostics(vae, x, y, num_samples=config.is_samples)
        report["importance"] = importance.summary()
        worst = importance.worst(WORST_SHOWN)
        report["importance"]["worst_images"] = [
            {"test_image": int(rows[i]), "khat": importance.khat[i].item()} for i in worst
        ]
        report["importance"]["per_image"] = {
            "log_likelihood": importance.log_likelihood.tolist(),
            "psis_log_likelihood": importance.psis_log_likelihood.tolist(),
            "khat": [k if k > float("-inf") else None for k in importance.khat.tolist()],
        }
        diagnostic_plots.save_khat(importance.khat, out / "khat.png")
        pictures["k-hat per image"] = "khat.png"
        if run.data.image_shape is not None:
            diagnostic_plots.save_worst_images(
                x[worst], vae.reconstruct(x[worst]), run.data.image_shape, out / "worst_images.png"
            )
            pictures["images with the largest k-hat, and their reconstructions"] = (
                "worst_images.png"
            )

        _say(progress, "posterior collapse and the aggregate posterior")
        collapse = posterior_collapse(vae, x, y)
        aggregate = aggregate_posterior(vae, x, y)
        report["collapse"] = {
            **collapse.summary(),
            "mutual_information": aggregate.mutual_information,
        }
        report["aggregate_posterior"] = aggregate.summary()
        diagnostic_plots.save_collapse(collapse, out / "collapse.png")
        diagnostic_plots.save_aggregate_posterior(
            aggregate, collapse.activity, out / "aggregate.png"
        )
        pictures["activity and KL per latent dimension"] = "collapse.png"
        pictures["aggregate posterior q(z) against the prior p(z)"] = "aggregate.png"

        if config.gap_images:
            count = min(config.gap_images, len(x))
            _say(progress, f"amortization gap on {count} images ({config.gap_steps} steps of q*)")
            chosen = evenly_spaced(len(x), count).to(x.device)
            gaps = inference_gaps(
                vae,
                x[chosen],
                None if y is None else y[chosen],
                steps=config.gap_steps,
                num_samples=config.is_samples,
            )
            report["gaps"] = gaps.summary()

        idata_groups: dict[str, Any] = {}
        if config.nuts_images:
            chosen = evenly_spaced(len(x), min(config.nuts_images, len(x))).tolist()
            _say(
                progress,
                f"NUTS on {len(chosen)} images, {config.nuts_chains} chains x "
                f"({config.nuts_warmup} + {config.nuts_draws}) steps",
            )
            latent = vi_against_nuts(
                vae,
                x,
                y,
                images=chosen,
                chains=config.nuts_chains,
                draws=config.nuts_draws,
                warmup=config.nuts_warmup,
                seed=config.seed,
            )
            images = [int(rows[i]) for i in chosen]
            idata_groups.update(
                nuts=latent.nuts.samples, variational=latent.variational, images=images
            )
            differences = latent.differences()
            report["nuts"] = {
                "images": images,
                "seconds": latent.nuts.seconds,
                **latent.gap_summary(),
                "per_dimension": {k: v.tolist() for k, v in differences.items()},
            }

        _say(progress, "model comparison")
        fits = {_fit_name(run.folder, ()): importance.log_likelihood}
        for other in others:
            torch.manual_seed(config.seed)  # common random numbers: a run against itself ties
            fits[_fit_name(other.folder, fits)] = importance_diagnostics(
                other.vae, x, y, num_samples=config.is_samples
            ).log_likelihood
        report["elpd"] = elpd_comparison(fits)

        idata = arviz_bridge.inference_data(
            **idata_groups, log_likelihood=fits, test_images=rows.tolist()
        )
        if config.nuts_images:
            report["nuts"]["summary"] = {
                name: arviz_bridge.posterior_summary(idata, name) for name in ("z_nuts", "z_vi")
            }
            report["nuts"].update(arviz_bridge.convergence(report["nuts"]["summary"]["z_nuts"]))
            diagnostic_plots.save_posterior_overlay(
                latent.nuts.samples, latent.variational, images, out / "nuts_vs_vi.png"
            )
            pictures["NUTS against q(z|x), per image and latent dimension"] = "nuts_vs_vi.png"
        arviz_bridge.save(idata, out / "inference_data.nc")

        report["pictures"] = pictures
        report["versions"] = versions()
        write_json(out / "diagnostics.json", report)
        write_text(out / "report.md", render_report(report))
        _say(progress, f"report in {out / 'report.md'}")
        return report


def _f(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_report(report: dict[str, Any]) -> str:
    """``report.md`` from what :func:`diagnose` returns."""
    imp = report["importance"]
    shares = imp["khat_shares"]
    lines = [
        f"# pyro-vae diagnose: {report['run']}",
        "",
        f"Data: {report['dataset']} ({report['binarization']} binarization), "
        f"{len(report['test_images'])} test images; {report['epochs']} epochs of training. "
        "All numbers in nats per image.",
        "",
        "## 1. Importance sampling and Pareto k-hat",
        "",
        f"q(z|x) is the proposal, K = {imp['num_samples']} draws per image.",
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
        "",
        "## 2. Posterior collapse",
        "",
    ]
    col = report["collapse"]
    lines += [
        f"Active units: **{col['active_units']} of {col['latent_dim']}** (Cov_x E_q[z_u] > "
        f"{col['threshold']}). Mutual information I(x; z) under q: "
        f"{_f(col['mutual_information'])} nats (at most log N = "
        f"{_f(report['aggregate_posterior']['mutual_information_bound'])}).",
    ]
    if col["kl_per_dim"] is None:
        lines.append("KL per dimension: not defined, the prior does not factorise over dimensions.")
    else:
        kl = ", ".join(f"{v:.2f}" for v in col["kl_per_dim"])
        lines.append(f"KL per dimension: {kl}.")
    agg = report["aggregate_posterior"]
    lines += [
        "",
        "## 3. Aggregate posterior against the prior",
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
    if "gaps" in report:
        gaps = report["gaps"]
        lines += [
            "",
            "## 4. Inference gaps (Cremer et al. 2018)",
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
    if "nuts" in report:
        nuts = report["nuts"]
        lines += [
            "",
            "## 5. q(z|x) against NUTS",
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
    lines += [
        "",
        "## 6. Model comparison on the test images",
        "",
        "ELPD = sum of log p(x_i) over the test images (held out); differences to the best fit "
        "with the standard error of the pointwise differences, as `arviz.compare` computes it.",
        "",
        "| fit | ELPD | SE | ELPD diff | SE of diff |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['fit']} | {r['elpd']:.1f} | {r['se']:.1f} | {r['elpd_diff']:.1f} | {r['dse']:.1f} |"
        for r in report["elpd"]
    ]
    lines += ["", "## Pictures", ""]
    lines += [f"**{title}**\n\n![{name}]({name})\n" for title, name in report["pictures"].items()]
    return "\n".join(lines) + "\n"
