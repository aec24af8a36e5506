"""``pyro-vae diagnose``: every diagnostic of a trained run, written as a report.

Outputs (in ``RUN/diagnostics`` unless told otherwise): ``report.md`` (numbers and pictures),
``report.html`` (the same as one self-contained page for a browser, with a glossary),
``diagnostics.json`` (the same numbers, per-image values included), ``inference_data.nc``
(ArviZ InferenceData: NUTS and q(z|x) draws in ``posterior``, per-image test log-likelihoods of
every fit in ``log_likelihood``, the posterior predictive checks' statistics in
``posterior_predictive`` and ``observed_data``, and the calibration ranks in ``sbc_ranks``), and
the pictures the report shows. A section that cannot run (too few draws for a rank test, no
point decoder) is named with its reason in the report, the rest is written, and the command
exits 2.
"""

from __future__ import annotations

from dataclasses import asdict, make_dataclass
from pathlib import Path
from typing import Any

import torch

from . import arviz_bridge
from .checkpoint import write_json, write_text
from .config import option
from .core.errors import CheckpointError
from .core.validate import nonnegative_int, positive_int
from .data import evenly_spaced
from .diagnostics import SECTIONS, Diagnosis, SectionRefused
from .html_page import write_page
from .run_folder import check_out_dir, claimed_out_dir, versions
from .runs import Run, load_run


def _check_budget(config: Any) -> None:
    """Every count against its minimum, then each section's own checks."""
    positive_int("num_test", config.num_test)
    nonnegative_int("seed", config.seed)
    for section in SECTIONS.values():
        for budget in section.budget:
            check = positive_int if budget.minimum > 0 else nonnegative_int
            check(budget.name, getattr(config, budget.name))
    for section in SECTIONS.values():
        if section.check is not None:
            section.check(config)


def _budget_fields() -> list[tuple[str, type, Any]]:
    """The fields of :class:`DiagnoseConfig`: the test images, every section's budget options
    (in the sections' order), the seed and the device."""
    declared = [
        (budget.name, int, option(budget.default, budget.help))
        for section in SECTIONS.values()
        for budget in section.budget
    ]
    return [
        ("num_test", int, option(1000, "test images used (spread evenly over the test set)")),
        *declared,
        ("seed", int, option(0, "random seed of every estimate")),
        (
            "device",
            str | None,
            option(None, "cpu or cuda[:N] (default: the run's own)", metavar="DEVICE"),
        ),
    ]


#: Budget of a diagnosis: the test images, the options every registered section declares
#: (``is_samples``, ``gap_images``, ``nuts_chains``, ...), the seed and the device; field
#: names are the CLI's options (``is_samples``: ``--is-samples``).
DiagnoseConfig = make_dataclass(
    "DiagnoseConfig",
    _budget_fields(),
    namespace={"__post_init__": _check_budget, "__module__": __name__},
)


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
        for section in SECTIONS.values():
            try:
                section.compute(d)
            except SectionRefused as refusal:  # the rest of the report is still written
                d.report.setdefault("refused", {})[section.name] = str(refusal)
                d.say(f"{section.name} refused: {refusal}")
        idata = arviz_bridge.inference_data(
            **d.draws, log_likelihood=d.log_likelihoods, test_images=rows.tolist()
        )
        arviz_bridge.save(idata, out / "inference_data.nc")
        d.report["pictures"] = d.pictures
        d.report["versions"] = versions()
        write_json(out / "diagnostics.json", d.report)
        text = render_report(d.report)
        write_text(out / "report.md", text)
        write_page(out / "report.html", text, f"pyro-vae diagnose: {run.folder}")
        d.say(f"report in {out / 'report.md'} and {out / 'report.html'}")
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
    for section in SECTIONS.values():
        part = section.render(report)
        if part:
            lines += ["", *part]
    if report.get("refused"):
        lines += ["", "## Sections not run", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in report["refused"].items()]
    lines += ["", "## Pictures", ""]
    lines += [f"**{title}**\n\n![{name}]({name})\n" for title, name in report["pictures"].items()]
    return "\n".join(lines) + "\n"
