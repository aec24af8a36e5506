"""``pyro-vae compare``: a grid of methods x guides x latent priors x seeds on one data set and
budget.

Every cell is fitted by :data:`~pyro_vae.inference.methods.METHODS` and measured by the same
estimators; the results folder holds ``results.md`` (a table a person reads), ``report.html``
(the same as one self-contained page for a browser, with a glossary), ``results.csv``,
``results.json``, ``config.json`` and pictures (``samples.png``, ``reconstructions.png``,
``loss.png``, ``nll.png``). Every cell is checked before the first fit starts.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pyro_vae.inference import evaluate
from pyro_vae.inference.methods import METHODS, MethodResult, Problem
from pyro_vae.models import GUIDES, PRIORS, WEIGHT_PRIORS

from . import arviz_bridge, plots, smoke
from .checkpoint import write_json, write_text
from .compare_report import report_markdown, write_csv
from .config import TrainConfig
from .core.errors import ConfigError
from .core.validate import check_allocation, nonnegative_int, positive_int
from .diagnostics import (
    MIN_IS_SAMPLES,
    SECTIONS,
    Scored,
    Section,
    SectionRefused,
    elpd_comparison,
)
from .html_page import write_page
from .run_folder import (
    TRAIN_ELBO_SAMPLES,
    RunData,
    check_out_dir,
    claimed_out_dir,
    run_data,
    versions,
)


def all_methods() -> tuple[str, ...]:
    """Every registered method, in the order they were registered (the built-in ones in the
    order a reader meets them; methods registered from outside the package come after)."""
    return tuple(METHODS)


@dataclass
class CompareConfig:
    """A comparison: the shared training settings plus the grid.

    Args:
        base: Data, model and training budget shared by every cell (its ``guide``,
            ``prior`` and ``seed`` are replaced by each cell's).
        methods: Names in :data:`~pyro_vae.inference.methods.METHODS` (default: all).
        guides: Variational families, names in :data:`~pyro_vae.models.GUIDES`.
        priors: Latent priors, names in :data:`~pyro_vae.models.PRIORS`.
        seeds: One fit per seed; tables show mean and spread across seeds.
        method_options: Options per method, e.g. ``{"iwae": {"particles": 10}}``.
        guide_options: Options per guide, e.g. ``{"iaf": {"steps": 4}}``.
        prior_options: Options per latent prior, e.g. ``{"vamp": {"components": 20}}``.
        weight_prior: Decoder-weight prior for the methods that take one (``None``: each
            method's default).
        proposal_epochs: Encoder epochs (decoder frozen) for methods without an encoder.
        num_test: Test images used for the estimates (``None``: all).
    """

    base: TrainConfig = field(default_factory=TrainConfig)
    methods: tuple[str, ...] = field(default_factory=all_methods)
    guides: tuple[str, ...] = ("diagonal",)
    priors: tuple[str, ...] = ("standard-normal",)
    seeds: tuple[int, ...] = (0,)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    guide_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    prior_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    weight_prior: str | None = None
    proposal_epochs: int = 10
    num_test: int | None = None

    def __post_init__(self) -> None:
        if self.base.labels is not None:
            raise ConfigError(
                "compare does not take --labels yet; fit the semi-supervised VAE with train "
                "--labels"
            )
        self.methods, self.guides, self.priors, self.seeds = (
            tuple(self.methods),
            tuple(self.guides),
            tuple(self.priors),
            tuple(self.seeds),
        )
        for name, values in (
            ("methods", self.methods),
            ("guides", self.guides),
            ("priors", self.priors),
        ):
            if not values:
                raise ConfigError(f"{name} must name at least one")
            if len(set(values)) != len(values):
                raise ConfigError(f"{name} lists a name twice: {', '.join(values)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and at least one, not {self.seeds}")
        for seed in self.seeds:
            nonnegative_int("seed", seed)
        for prior in self.priors:
            PRIORS[prior]
        for guide in self.guides:
            GUIDES.check_options(guide, self.guide_options.get(guide, {}))
        for kind, given, names in (
            ("methods", self.method_options, self.methods),
            ("guides", self.guide_options, self.guides),
            ("priors", self.prior_options, self.priors),
        ):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise ConfigError(f"options given for {kind} not compared: {', '.join(unknown)}")
        if self.weight_prior is not None:
            WEIGHT_PRIORS[self.weight_prior]
        for method in self.methods:
            METHODS.build(method, **self.method_options.get(method, {}))
        nonnegative_int("proposal_epochs", self.proposal_epochs)
        if self.num_test is not None:
            positive_int("num_test", self.num_test)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["base"] = self.base.to_dict()
        return values


#: Presets: (training settings, comparison settings). ``quick`` runs in under 2 minutes and
#: ``default`` in about 10 on a 2-core CPU on mnist5k (see the README for measured times).
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "quick": (
        {"epochs": 4, "hidden": (200,), "latent_dim": 10, "is_samples": 200},
        {
            "proposal_epochs": 3,
            "num_test": 300,
            "method_options": {"nuts-latent": {"images": 2, "draws": 60, "warmup": 60}},
        },
    ),
    "default": (
        {"epochs": 20, "hidden": (400,), "latent_dim": 20, "is_samples": 500},
        {"proposal_epochs": 10, "num_test": None, "method_options": {}},
    ),
}


def preset_config(
    preset: str = "default",
    *,
    base: dict[str, Any] | None = None,
    **grid: Any,
) -> CompareConfig:
    """A :class:`CompareConfig` from a preset with ``base`` and ``grid`` settings overriding it.

    ``method_options`` given here are merged into the preset's, method by method.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    base_preset, grid_preset = PRESETS[preset]
    if (base or {}).get("network", "mlp") != "mlp":  # the presets' widths are the mlp's
        base_preset = {k: v for k, v in base_preset.items() if k != "hidden"}
    methods = grid.get("methods", all_methods())
    options = {  # the preset's options for the methods compared
        k: dict(v) for k, v in grid_preset["method_options"].items() if k in methods
    }
    for method, values in grid.pop("method_options", {}).items():
        options[method] = {**options.get(method, {}), **values}
    return CompareConfig(
        base=TrainConfig(**{**base_preset, **(base or {})}),
        **{**grid_preset, **grid, "method_options": options},
    )


def _problem(config: CompareConfig, cell: tuple[str, str, int], run: RunData) -> Problem:
    """One cell of the grid: (guide, prior, seed)."""
    guide, prior, seed = cell
    base = config.base
    return Problem(
        run.train_x,
        run.train_labels,
        base.model_spec(
            image_shape=run.data.image_shape,
            guide=guide,
            guide_options=config.guide_options.get(guide, {}),
            prior=prior,
            prior_options=config.prior_options.get(prior, {}),
        ),
        base.svi_config(),
        binarization=run.binarization,
        weight_prior=config.weight_prior,
        weight_prior_options=base.weight_prior_options,
        proposal_epochs=config.proposal_epochs,
        nuts_x=run.test_x,
        nuts_labels=run.test_labels,
        seed=seed,
        num_classes=run.num_classes,
    )


def _row(result: MethodResult, cell, train_x, train_labels, test_x, test_labels, k: int):
    """The table row of one fit of ``cell`` (guide, prior, seed), and its per-image test
    log-likelihoods (``None`` if it has no model to score)."""
    guide, prior, seed = cell
    row: dict[str, Any] = {
        "method": result.method,
        "guide": guide,
        "prior": prior,
        "seed": seed,
        "epochs": result.history.epochs,
        "wall_time_s": result.wall_time,
        "notes": "; ".join(result.notes),
    }
    per_image = None
    if result.vae is not None:
        result.vae.eval()
        train = evaluate(result.vae, train_x, train_labels, is_samples=TRAIN_ELBO_SAMPLES)
        with_khat = k >= MIN_IS_SAMPLES  # only then are the log weights kept
        # common random numbers: every fit of a seed is scored with the same draws of the
        # noise, so an ELPD difference's SE reflects the models, not Monte Carlo noise
        torch.manual_seed(seed)
        test = evaluate(result.vae, test_x, test_labels, is_samples=k, keep_log_weights=with_khat)
        summary = test.summary()
        per_image = test.log_likelihood
        row.update(
            train_elbo=train.elbo.mean().item(),
            test_elbo=summary["elbo"],
            test_nll=summary["nll"],
            is_samples=k,
            reconstruction=summary["reconstruction"],
            kl=summary["kl"],
        )
        if test.log_likelihood_given_label is not None:  # a prior that reads labels
            row.update(
                label_classes=test.label_classes,
                test_nll_given_label=-test.log_likelihood_given_label.mean().item(),
            )
        scored = Scored(result.vae, test_x, test_labels, test, _scoring_budget())
        for section in sorted(SECTIONS.values(), key=_first_place):  # in the table's order
            if section.score is not None:
                try:
                    row.update(section.score(scored))
                except SectionRefused:  # e.g. no point decoder: its columns stay empty
                    pass
    row.update({k: v for k, v in result.details.items() if k != "posterior"})
    if "posterior" in result.details:  # NUTS draws: convergence by ArviZ, as diagnose does
        row.update(arviz_bridge.convergence(result.details["posterior"].samples))
    return row, per_image


def _scoring_budget():
    """The budget the sections' columns are scored with: ``diagnose``'s defaults, capped
    under the smoke budget."""
    from .diagnose import DiagnoseConfig

    return smoke.diagnose_config(DiagnoseConfig(), quiet=True)


def _first_place(section: Section) -> int:
    return min((c.position for c in section.columns), default=0)


def _add_elpd(rows: list[dict[str, Any]], per_image: list[torch.Tensor | None]) -> None:
    """Per seed, each fit's ELPD difference to that seed's best fit and its standard error."""
    for seed in dict.fromkeys(r["seed"] for r in rows):
        fits = {
            i: values
            for i, (row, values) in enumerate(zip(rows, per_image, strict=True))
            if row["seed"] == seed and values is not None
        }
        if not fits:
            continue
        for entry in elpd_comparison({str(i): v for i, v in fits.items()}):
            row = rows[int(entry["fit"])]
            row.update(elpd=entry["elpd"], elpd_diff=entry["elpd_diff"], elpd_dse=entry["dse"])


def compare(config: CompareConfig, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Run the grid and fill ``out_dir``; returns what ``results.json`` holds."""
    out = Path(out_dir)
    check_out_dir(out, resume=False, resumable=False)
    base = config.base
    run = run_data(base, num_test=config.num_test)
    if base.is_samples >= MIN_IS_SAMPLES:  # every fit keeps its log weights for k-hat
        check_allocation(
            f"K = {base.is_samples} log weights for each of {len(run.test_x)} test images",
            len(run.test_x) * base.is_samples,
        )
    runners = {m: METHODS.build(m, **config.method_options.get(m, {})) for m in config.methods}
    problems = {
        (guide, prior, seed): _problem(config, (guide, prior, seed), run)
        for seed in config.seeds
        for guide in config.guides
        for prior in config.priors
    }
    _check_grid(config, run, runners, problems)
    with claimed_out_dir(out):
        write_json(out / "config.json", config.to_dict())
        grid = _fit_grid(config, run, runners, problems, progress)
        _add_elpd(grid.rows, grid.per_image)
        pictures = _save_pictures(out, run, grid)
        summary = {"num_train": len(run.train_x), "num_test": len(run.test_x)}
        results = {
            "units": "nats per datapoint",
            "dataset": base.dataset,
            "binarization": base.binarization,
            **summary,
            "rows": grid.rows,
            "pictures": pictures,
            "versions": versions(),
            "device": str(run.train_x.device),
        }
        write_json(out / "results.json", results)
        write_csv(out / "results.csv", grid.rows)
        text = report_markdown(config, grid.rows, summary, pictures)
        write_text(out / "results.md", text)
        write_page(out / "report.html", text, f"pyro-vae compare: {base.dataset}")
        return results


def _check_grid(
    config: CompareConfig,
    run: RunData,
    runners: dict[str, Any],
    problems: dict[tuple[str, str, int], Problem],
) -> None:
    """Refuse a cell no method can fit, or data no likelihood can model, before any work."""
    for guide, prior, seed in problems:
        if seed != config.seeds[0]:  # seeds change nothing here
            continue
        problem = problems[guide, prior, seed]
        for runner in runners.values():
            runner.check(problem)
        # builds the prior (refusing e.g. class-conditional without labels) and the likelihood
        likelihood = problem.build(None).likelihood
        likelihood.check_data(run.train_fixed)
        likelihood.check_data(run.test_x)
    if config.base.batch_size > len(run.train_x):
        raise ConfigError(
            f"batch_size {config.base.batch_size} exceeds the {len(run.train_x)} training images"
        )


@dataclass
class _Grid:
    """What the fits of a grid gave: a row and per-image scores per fit, and the first seed's
    models and loss curves by label for the pictures."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    per_image: list[torch.Tensor | None] = field(default_factory=list)
    shown: dict[str, MethodResult] = field(default_factory=dict)
    histories: dict[str, list[float]] = field(default_factory=dict)


def _fit_grid(
    config: CompareConfig,
    run: RunData,
    runners: dict[str, Any],
    problems: dict[tuple[str, str, int], Problem],
    progress: bool,
) -> _Grid:
    grid = _Grid()
    scored = (
        run.train_fixed,
        run.train_labels,
        run.test_x,
        run.test_labels,
        config.base.is_samples,
    )
    for (guide, prior, seed), problem in problems.items():
        done: dict[str, MethodResult] = {}
        for method, runner in runners.items():
            result = runner(problem, reference=done.get("vae"))
            done[method] = result
            row, values = _row(result, (guide, prior, seed), *scored)
            grid.rows.append(row)
            grid.per_image.append(values)
            if progress:
                nll = f"test NLL {row['test_nll']:.2f}" if "test_nll" in row else "done"
                print(
                    f"pyro-vae compare: {method}, guide {guide}, prior {prior}, seed {seed}: {nll} "
                    f"({result.wall_time:.0f} s fitting)",
                    file=sys.stderr,
                    flush=True,
                )
            label = " / ".join(
                [method]
                + ([guide] if len(config.guides) > 1 else [])
                + ([prior] if len(config.priors) > 1 else [])
            )
            if seed == config.seeds[0]:
                if result.vae is not None:
                    grid.shown[label] = result
                if result.history.losses:
                    grid.histories[label] = result.history.losses
    return grid


def _save_pictures(out: Path, run: RunData, grid: _Grid) -> list[str]:
    plots.save_loss_curves(grid.histories, out / "loss.png")
    plots.save_nll_bars(grid.rows, out / "nll.png")
    shape = run.data.image_shape
    if shape is None or not grid.shown:
        return ["loss.png", "nll.png"]
    models = {k: r.vae for k, r in grid.shown.items()}
    plots.save_samples_by_method(models, shape, out / "samples.png", num_classes=run.num_classes)
    plots.save_reconstructions_by_method(models, run.test_x, shape, out / "reconstructions.png")
    return ["loss.png", "nll.png", "samples.png", "reconstructions.png"]
