"""What every diagnostic shares: the diagnosis it reads and adds to, the options of the budget
it declares, the columns it gives ``compare``'s table, and the registry that lists them."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pyro_vae.inference import Evaluation
from pyro_vae.models import VAE

from ..core.errors import ConfigError
from ..core.registry import Registry
from ..runs import Run


class SectionRefused(ConfigError):
    """A section cannot run on this run or budget: ``diagnose`` records the reason, writes
    the rest of the report and exits 2."""


@dataclass(frozen=True)
class Budget:
    """One option of ``diagnose``'s budget that a section declares: it becomes a field of
    :class:`~pyro_vae.diagnose.DiagnoseConfig` and a command-line option
    (``gap_images``: ``--gap-images``).

    Args:
        name: The field's name.
        default: Its default.
        help: What it sets, for ``--help``.
        minimum: 1 for a positive count; 0 where 0 skips the section.
        smoke: Its cap under the smoke budget (``PYRO_VAE_SMOKE=1``), if any.
    """

    name: str
    default: int
    help: str
    minimum: int = 1
    smoke: int | None = None


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
class Scored:
    """One fit of ``compare`` scored on the test images: what a section's columns read.

    ``evaluation`` keeps its log weights when K is large enough for k-hat; ``config`` is the
    budget a section's score runs with (``diagnose``'s defaults, capped under the smoke
    budget).
    """

    vae: VAE
    x: torch.Tensor
    labels: torch.Tensor | None
    evaluation: Evaluation
    config: Any = None  # DiagnoseConfig


@dataclass(frozen=True)
class Column:
    """A column of ``compare``'s table: its title, the row's key, and its place (the table's
    own columns are at 1-5, the fit time at 9)."""

    title: str
    key: str
    position: int


@dataclass(frozen=True)
class Section:
    """One diagnostic.

    Args:
        name: Its name in the registry and in ``diagnostics.json``.
        compute: Adds its entries to the diagnosis's report (and may skip itself).
        render: Turns the whole report into its lines of ``report.md`` (none when its entries
            are absent).
        budget: The options of ``diagnose`` it declares.
        check: Refuses a ``DiagnoseConfig`` its budget cannot run with (after every budget
            option has been checked against its minimum).
        columns: What it adds to ``compare``'s table ...
        score: ... computed for each fit by this function (entries of the fit's row).
    """

    name: str
    compute: Callable[[Diagnosis], None]
    render: Callable[[dict[str, Any]], list[str]]
    budget: tuple[Budget, ...] = ()
    check: Callable[[Any], None] | None = None
    columns: tuple[Column, ...] = ()
    score: Callable[[Scored], dict[str, Any]] | None = None


#: Every diagnostic by name, in the order it runs and is reported.
SECTIONS: Registry[Section] = Registry("diagnostic")


def register_section(section: Section) -> Section:
    """Add ``section`` to :data:`SECTIONS` under its name."""
    return SECTIONS.register(section.name)(section)


def fit_name(folder: Path, taken: Any) -> str:
    """The run folder's name, made unique among ``taken`` (netCDF names hold no ``/``)."""
    base = folder.resolve().name.replace("/", "_") or "run"
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}-{count}"
    return name


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a report table (``—`` for none)."""
    return "—" if value is None else f"{value:.{digits}f}"


def mean_of(values: torch.Tensor) -> float:
    return values.double().mean().item()
