"""Diagnostics are registered sections: ``diagnose``'s options, its report and ``compare``'s
table are drawn from the registry, so a new section is one file (and its test)."""

from dataclasses import fields

import pytest

from pyro_vae.cli import build_parser
from pyro_vae.compare_report import results_table
from pyro_vae.core.errors import ConfigError
from pyro_vae.diagnose import DiagnoseConfig, render_report
from pyro_vae.diagnostics import MEMBERS, SECTIONS, Budget, Column, Section, register_section


def test_the_registry_holds_every_member_in_the_report_order():
    assert list(SECTIONS) == list(MEMBERS)
    assert list(MEMBERS) == [
        "importance",
        "collapse",
        "gaps",
        "nuts",
        "coverage",
        "calibration",
        "predictive",
        "elpd",
    ]


def test_the_budget_options_are_the_sections_declarations():
    declared = [b.name for s in SECTIONS.values() for b in s.budget]
    assert [f.name for f in fields(DiagnoseConfig)] == ["num_test", *declared, "seed", "device"]
    assert {"is_samples", "gap_images", "gap_steps", "nuts_images", "nuts_chains"} <= set(declared)
    help_text = build_parser().parse_args(["diagnose", "run"]).__dict__
    for name in declared:
        assert name in help_text  # every declared option is a diagnose option


@pytest.mark.parametrize(
    "budget", [b for s in SECTIONS.values() for b in s.budget], ids=lambda b: b.name
)
def test_every_budget_option_is_checked_against_its_minimum(budget):
    with pytest.raises(ConfigError, match=budget.name):
        DiagnoseConfig(**{budget.name: budget.minimum - 1})
    DiagnoseConfig(**{budget.name: max(budget.minimum, budget.default)})


@pytest.fixture
def extra_section():
    """A section registered for one test, as a new member's file would register it."""
    section = register_section(
        Section(
            "test-extra",
            compute=lambda d: d.report.update(extra=1),
            render=lambda report: ["## Extra", f"extra = {report['extra']}"],
            budget=(Budget("extra_draws", 3, "draws of the extra section"),),
            columns=(Column("extra column", "extra_key", 8),),
        )
    )
    yield section
    del SECTIONS["test-extra"]


def test_a_registered_section_joins_the_report_and_the_compare_table(extra_section):
    report = {"run": "r", "dataset": "d", "binarization": "none", "test_images": [0],
              "epochs": 1, "pictures": {}, "extra": 1}  # fmt: skip
    lines = render_report(report).splitlines()
    assert "## Extra" in lines and "extra = 1" in lines
    row = {"method": "vae", "guide": "diagonal", "prior": "standard-normal", "seed": 0,
           "wall_time_s": 1.0, "extra_key": 2.5, "khat_bad": 0.1, "active_units": 2}  # fmt: skip
    header = results_table([row]).splitlines()[0]
    titles = [t.strip() for t in header.strip("|").split("|")]
    assert titles[-7:] == [
        "active units",
        "share k-hat > 0.7",
        "SBC min p",
        "SBC rank spread",
        "PPC extreme images",
        "extra column",
        "fit time (s)",
    ]
    assert results_table([row]).splitlines()[2].split("|")[-3].strip() == "2.50"
