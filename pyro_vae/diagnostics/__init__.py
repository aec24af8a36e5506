"""Can this fit be trusted? The diagnostics of a trained VAE, one registered section per file.

Each member computes its numbers as data (NamedTuples of tensors), draws its pictures, renders
its part of ``diagnose``'s report and declares its budget options and ``compare``'s columns:

- ``importance``: :func:`importance_diagnostics`, importance-sampled log p(x), plain and
  Pareto-smoothed, and Pareto k-hat per image;
- ``collapse``: :func:`posterior_collapse`, KL per latent dimension and active units, and
  :func:`aggregate_posterior`, the mixture of q(z|x) over the data against p(z);
- ``gaps``: :func:`inference_gaps`, approximation and amortization gaps (Cremer et al. 2018);
- ``nuts``: :func:`vi_against_nuts`, q(z|x) draws beside NUTS draws of the exact posterior;
- ``coverage``: :func:`interval_coverage`, the share of NUTS draws inside q's central
  intervals, and inside the PSIS-reweighted q's;
- ``calibration``: :func:`simulation_based_calibration`, SBC rank tests per latent dimension;
- ``predictive``: :func:`posterior_predictive_checks`, replicated images against the test
  images, with Bayesian p-values;
- ``elpd``: :func:`elpd_comparison`, ELPD differences between fits, with standard errors.

A new diagnostic is one file that builds a :class:`Section` and registers it with
:func:`register_section`, plus its name in :data:`MEMBERS` (whose order is the report's).
"""

from __future__ import annotations

import importlib

#: The members, in the order they run and are reported; each registers its section.
MEMBERS = (
    "importance",
    "collapse",
    "gaps",
    "nuts",
    "coverage",
    "calibration",
    "predictive",
    "elpd",
)
for _member in MEMBERS:
    importlib.import_module(f"{__name__}.{_member}")

# ruff: noqa: E402  (the names below are re-exported after the members registered in order)
from .calibration import Calibration, simulation_based_calibration
from .collapse import (
    ACTIVE_THRESHOLD,
    AggregatePosterior,
    Collapse,
    aggregate_posterior,
    posterior_collapse,
)
from .coverage import interval_coverage, weighted_quantiles
from .elpd import elpd_comparison
from .gaps import Gaps, inference_gaps
from .importance import (
    KHAT_BAD,
    KHAT_GOOD,
    MIN_IS_SAMPLES,
    ImportanceDiagnostics,
    importance_diagnostics,
    pareto_diagnostics,
)
from .nuts import LatentComparison, vi_against_nuts
from .predictive import PredictiveChecks, bayesian_p_values, posterior_predictive_checks
from .section import (
    SECTIONS,
    Budget,
    Column,
    Diagnosis,
    Scored,
    Section,
    SectionRefused,
    register_section,
)

__all__ = [
    "MEMBERS",
    "ACTIVE_THRESHOLD",
    "KHAT_BAD",
    "KHAT_GOOD",
    "MIN_IS_SAMPLES",
    "SECTIONS",
    "AggregatePosterior",
    "Calibration",
    "Budget",
    "Collapse",
    "Column",
    "Diagnosis",
    "Gaps",
    "ImportanceDiagnostics",
    "LatentComparison",
    "PredictiveChecks",
    "Scored",
    "Section",
    "SectionRefused",
    "aggregate_posterior",
    "bayesian_p_values",
    "elpd_comparison",
    "importance_diagnostics",
    "inference_gaps",
    "interval_coverage",
    "pareto_diagnostics",
    "posterior_collapse",
    "posterior_predictive_checks",
    "register_section",
    "simulation_based_calibration",
    "vi_against_nuts",
    "weighted_quantiles",
]
