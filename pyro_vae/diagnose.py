"""``pyro-vae diagnose``: every diagnostic of a trained run, written as a report.

Outputs (in ``RUN/diagnostics`` unless told otherwise): ``report.md`` (numbers and pictures),
``diagnostics.json`` (the same numbers, per-image values included), ``inference_data.nc``
(ArviZ InferenceData: NUTS and q(z|x) draws in ``posterior``, per-image test log-likelihoods of
every fit in ``log_likelihood``), and the pictures the report shows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from . import arviz_bridge
from .checkpoint import write_json, write_text
from .config import option
from .core.errors import CheckpointError, ConfigError
from .core.validate import check_allocation, nonnegative_int, positive_int
from .data import evenly_spaced
from .diagnose_sections import SECTIONS, Diagnosis
from .diagnostics import MIN_IS_SAMPLES
from .run_folder import check_out_dir, claimed_out_dir, versions
from .runs import Run, load_run


@dataclass
class DiagnoseConfig:
    """Budget of a diagnosis; field names are the CLI's options (``is_samples``:
    ``--is-samples``)."""

    num_test: int = option(1000, "test images used (spread evenly over the test set)")
    is_samples: int = option(1000, "K, importance samples per image for log p(x) and k-hat")
    gap_images: int = option(100, "images for the amortization gap (0 skips it)")
    gap_steps: int = option(500, "Adam steps of the per-image q* (the guide's own family)")
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
    mine = (run.config.dataset, run.config.binarization, len(run.test_x))
    theirs = (other.config.dataset, other.config.binarization, len(other.test_x))
    if mine != theirs:
        raise CheckpointError(
            f"cannot compare {other.folder} with {run.folder}: data set, binarization or test "
            f"size differ ({theirs} against {mine})"
        )


def diagnose(
    run_dir: str | Path,
    config: DiagnoseConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    against: tuple[str | Path, ...] = (),
    progress: bool = True,
    allow_changed_data: bool = False,
) -> dict[str, Any]:
    """Diagnose the run in ``run_dir``; returns what ``diagnostics.json`` holds.

    Args:
        run_dir: A run folder written by ``pyro-vae train``.
        config: Sample sizes and what to skip.
        out_dir: Where to write (default ``run_dir/diagnostics``; must be new or empty).
        against: Other run folders on the same data: their per-image test log-likelihoods join
            the ELPD comparison.
        progress: Report each stage on stderr.
        allow_changed_data: Go on even if a run's data set has changed since it was fitted.
    """
    config = config or DiagnoseConfig()
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "diagnostics"
    run = load_run(run_dir, device=config.device, allow_changed_data=allow_changed_data)
    others = [
        load_run(folder, device=config.device, allow_changed_data=allow_changed_data)
        for folder in against
    ]
    for other in others:
        _check_comparable(run, other)
    check_out_dir(out, resume=False, resumable=False)
    torch.manual_seed(config.seed)
    rows = evenly_spaced(len(run.test_x), config.num_test).to(run.test_x.device)
    d = Diagnosis(run, config, rows, out, others, progress)
    d.report = {
        "run": str(run.folder),
        "dataset": run.config.dataset,
        "binarization": run.config.binarization,
        "epochs": run.epochs,
        "units": "nats per datapoint",
        "test_images": rows.tolist(),
        "config": asdict(config),
    }
    with claimed_out_dir(out):
        for section in SECTIONS:
            section.compute(d)
        idata = arviz_bridge.inference_data(
            **d.draws, log_likelihood=d.log_likelihoods, test_images=rows.tolist()
        )
        arviz_bridge.save(idata, out / "inference_data.nc")
        d.report["pictures"] = d.pictures
        d.report["versions"] = versions()
        write_json(out / "diagnostics.json", d.report)
        write_text(out / "report.md", render_report(d.report))
        d.say(f"report in {out / 'report.md'}")
        return d.report


def render_report(report: dict[str, Any]) -> str:
    """``report.md`` from what :func:`diagnose` returns: a heading, then every section's part."""
    lines = [
        f"# pyro-vae diagnose: {report['run']}",
        "",
        f"Data: {report['dataset']} ({report['binarization']} binarization), "
        f"{len(report['test_images'])} test images; {report['epochs']} epochs of training. "
        "All numbers in nats per datapoint.",
    ]
    for section in SECTIONS:
        part = section.render(report)
        if part:
            lines += ["", *part]
    lines += ["", "## Pictures", ""]
    lines += [f"**{title}**\n\n![{name}]({name})\n" for title, name in report["pictures"].items()]
    return "\n".join(lines) + "\n"
