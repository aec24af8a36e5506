"""What ``pyro-vae compare`` writes for a person to read: ``results.md`` (the table of every
cell, mean ± sd across seeds, with the NUTS and ELPD sections) and ``results.csv``."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import write_text
from .data import TEST_BINARIZATION_SEED
from .diagnostics import MIN_IS_SAMPLES, SECTIONS, Column
from .run_folder import TRAIN_ELBO_SAMPLES

if TYPE_CHECKING:
    from .compare import CompareConfig


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


#: The table's own columns; each diagnostic adds its own (:attr:`Section.columns`).
TABLE_COLUMNS = [
    Column("train ELBO", "train_elbo", 1),
    Column("test ELBO", "test_elbo", 2),
    Column("test NLL", "test_nll", 3),
    Column("recon.", "reconstruction", 4),
    Column("KL", "kl", 5),
    Column("fit time (s)", "wall_time_s", 9),
]


def _section_columns() -> list[Column]:
    return [column for section in SECTIONS.values() for column in section.columns]


def _place(column: Column) -> int:
    return column.position


def results_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: one line per (method, guide, prior), mean ± sd across seeds."""
    columns = [(c.title, c.key) for c in sorted(TABLE_COLUMNS + _section_columns(), key=_place)]
    lines = [
        "| method | guide | prior | " + " | ".join(title for title, _ in columns) + " |",
        "|---|---|---|" + "---:|" * len(columns),
    ]
    cell = ("method", "guide", "prior")
    for key in dict.fromkeys(tuple(r[c] for c in cell) for r in rows):
        group = [r for r in rows if tuple(r[c] for c in cell) == key]
        cells = [
            _mean_sd([r[key] for r in group]) if key in group[0] else "—" for _, key in columns
        ]
        if "proposal_epochs" in group[0]:  # the NLL is an upper bound through a weak proposal
            cells[2] = f"≥ {cells[2]}"
        lines.append(f"| {' | '.join(key)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _nuts_section(rows: list[dict[str, Any]]) -> list[str]:
    nuts = [r for r in rows if "rhat_max" in r]  # the rows of a method that ran NUTS
    if not nuts:
        return []
    lines = [
        "",
        "## NUTS over z (reference posterior) against the encoder's q(z|x)",
        "",
        "R-hat (rank-normalised, split) and bulk/tail ESS by ArviZ; q's mean and sd are "
        "exact for the Gaussian guides (from draws for iaf), as in `pyro-vae diagnose`.",
        "",
        "| guide | prior | seed | images | chains × draws | max R-hat | min bulk ESS | "
        "min tail ESS | mean abs(E_q z − E_nuts z) / sd | sd_q / sd_nuts | time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['guide']} | {r['prior']} | {r['seed']} | {r['images']} | "
        f"{r['chains']} × {r['draws']} | "
        f"{r['rhat_max']:.3f} | {r['ess_bulk_min']:.0f} | {r['ess_tail_min']:.0f} | "
        f"{r['mean_abs_gap_in_sd']:.2f} | {r['sd_ratio_mean']:.2f} | "
        f"{r['wall_time_s']:.1f} |"
        for r in nuts
    ]
    return lines


def _elpd_section(rows: list[dict[str, Any]]) -> list[str]:
    scored = [r for r in rows if "elpd" in r]
    if not scored:
        return []
    lines = [
        "",
        "## Model comparison: ELPD on the test images",
        "",
        "ELPD = sum over test images of log p(x_i) (importance-sampled, held out). Each fit "
        "against the best fit of its seed: the difference and the standard error of the "
        "pointwise differences (as `arviz.compare` computes it). A difference smaller than "
        "about two standard errors does not separate the fits.",
        "",
        "| seed | method | guide | prior | ELPD | ELPD diff | SE of diff | k-hat < 0.5 | "
        "active units |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(scored, key=lambda r: (r["seed"], r["elpd_diff"])):
        good = f"{100 * r['khat_good']:.0f} %" if "khat_good" in r else "—"
        lines.append(
            f"| {r['seed']} | {r['method']} | {r['guide']} | {r['prior']} | {r['elpd']:.1f} | "
            f"{r['elpd_diff']:.1f} | {r['elpd_dse']:.1f} | {good} | {r['active_units']} |"
        )
    return lines


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    names = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def report_markdown(
    config: CompareConfig, rows: list[dict[str, Any]], summary: dict[str, Any], pictures: list[str]
) -> str:
    """``results.md``: the setup, the table and its notes, the NUTS and ELPD sections."""
    base = config.base
    k = next((r["is_samples"] for r in rows if "is_samples" in r), base.is_samples)
    lines = [
        f"# pyro-vae compare: {base.dataset}",
        "",
        f"Data: {base.dataset}, {base.binarization} binarization (test set binarized once, seed "
        f"{TEST_BINARIZATION_SEED}), {summary['num_train']} training and {summary['num_test']} "
        f"test images. Model: MLP {base.hidden}, z = {base.latent_dim}, {base.likelihood} "
        f"likelihood; guides: {', '.join(config.guides)}. Budget: {base.epochs} epochs, "
        f"batch {base.batch_size}, {base.optimizer} lr {base.lr}. "
        f"Seeds: {', '.join(map(str, config.seeds))}.",
        "",
        f"Nats per image; higher ELBO and lower NLL are better. Test NLL is importance-sampled "
        f"with K = {k} draws from each method's encoder; train ELBO uses {TRAIN_ELBO_SAMPLES} "
        "draws. With several seeds: mean ± standard deviation. '≥' marks methods without an "
        "encoder while fitting: their proposal is an encoder fitted afterwards, so their test "
        "NLL is an upper bound whose tightness the k-hat column shows.",
        "",
        results_table(rows),
        "",
        "## How each method was fitted and evaluated",
        "",
    ]
    if k < MIN_IS_SAMPLES:
        lines.append(
            f"- Pareto k-hat was not computed: K = {k} is below the {MIN_IS_SAMPLES} draws per "
            "image its tail fit needs (set --is-samples)."
        )
    labelled = next((r for r in rows if "test_nll_given_label" in r), None)
    if labelled is not None:
        lines += [
            f"- Under the {labelled['prior']} prior, test NLL is the marginal "
            "−log Σ_y p(y) p(x | y), p(y) uniform over the "
            f"{labelled['label_classes']} classes, comparable with the other priors; "
            "−log p(x | y) at the true label is `test_nll_given_label` in results.csv.",
        ]
    notes = dict.fromkeys((r["method"], r["notes"]) for r in rows)
    lines += [f"- **{method}**: {text}" for method, text in notes if text]
    lines += _nuts_section(rows)
    lines += _elpd_section(rows)
    lines += ["", "## Pictures", ""] + [f"![{p}]({p})" for p in pictures]
    return "\n".join(lines) + "\n"
