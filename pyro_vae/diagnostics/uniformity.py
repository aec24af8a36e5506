"""Are ranks uniform? The statistics of simulation-based calibration, for any rank table.

Ranks r in {0, ..., L} (how many of L posterior draws fall below the true value) are uniform
when the posterior approximation is calibrated (Talts et al. 2018). The test is the one of
Säilynoja, Bürkner & Vehtari (2022): the ECDF of N ranks, evaluated at j / (L + 1) for
j = 1..L, is binomial at each point under uniformity; the statistic is the smallest two-sided
binomial tail probability over the points, and its p-value is the share of uniform rank sets
(simulated with the same N and L) whose statistic is at least as small. The simultaneous band
of the plots comes from ArviZ (:func:`pyro_vae.arviz_bridge.ecdf_band`).

The direction of a failure is read from the first two moments of u = (r + 1/2) / (L + 1):
a mean away from 1/2 is a bias (q's draws of the quantity sit on one side of the truth: "q too
high" when they sit above it), a variance above the uniform's is over-confidence (the truth
falls in q's tails: q too narrow), below it under-confidence (q too wide).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
from scipy import stats

#: Uniform rank sets simulated for each p-value.
NULL_SIMULATIONS = 2000
#: Family-wise level of the per-row verdicts (Bonferroni over the rows of a table).
LEVEL = 0.05
#: Fewest draws per simulation a rank test is made from (ranks in 0..L need L + 1 >= 10 bins).
MIN_DRAWS = 9
#: Fewest simulations a rank test is made from.
MIN_SIMULATIONS = 20


class RankTest(NamedTuple):
    """One row of a rank table: the test's p-value, the standardised departures of the
    ranks' mean (``bias``, positive when the truth sits above q's draws) and spread
    (``spread``, positive when the truth falls in q's tails) from uniform, and the verdict."""

    p_value: float
    bias: float
    spread: float
    verdict: str


def _ecdf_counts(ranks: np.ndarray, draws: int) -> np.ndarray:
    """N F(j / (L + 1)) for j = 1..L: how many ranks are below j, ``(..., L)``."""
    counts = np.apply_along_axis(np.bincount, -1, ranks, minlength=draws + 1)
    return np.cumsum(counts, -1)[..., :-1]


def gamma_statistic(ranks: np.ndarray, draws: int) -> np.ndarray:
    """Säilynoja et al.'s statistic of each row of ``ranks`` (``(..., N)``, values in 0..L):
    twice the smallest binomial tail probability of the ECDF over the evaluation points."""
    n = ranks.shape[-1]
    points = np.arange(1, draws + 1) / (draws + 1)
    counts = _ecdf_counts(ranks, draws)
    below = stats.binom.cdf(counts, n, points)
    above = stats.binom.sf(counts - 1, n, points)
    return 2 * np.minimum(below, above).min(-1)


@functools.lru_cache(maxsize=16)
def _null_gammas(n: int, draws: int) -> np.ndarray:
    rng = np.random.default_rng(20181108)  # fixed: the same null for every call
    return np.sort(gamma_statistic(rng.integers(0, draws + 1, (NULL_SIMULATIONS, n)), draws))


def uniformity_p_value(ranks: np.ndarray, draws: int) -> np.ndarray:
    """The p-value of each row of ``ranks`` against uniform ranks in 0..``draws``."""
    null = _null_gammas(ranks.shape[-1], draws)
    observed = gamma_statistic(ranks, draws)
    at_most = np.searchsorted(null, observed, side="right")
    return (at_most + 1) / (len(null) + 1)


def rank_moments(ranks: np.ndarray, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised departures of the mean and the variance of u = (r + 1/2) / (L + 1) from
    the discrete uniform's (z-scores under uniformity, per row)."""
    bins = draws + 1
    u = (ranks + 0.5) / bins
    n = ranks.shape[-1]
    variance = (bins**2 - 1) / (12 * bins**2)  # of the discrete uniform on the bin centres
    fourth = (3 * bins**2 - 7) * (bins**2 - 1) / (240 * bins**4)  # its E (u - 1/2)^4
    bias = (u.mean(-1) - 0.5) / np.sqrt(variance / n)
    centred = ((u - u.mean(-1, keepdims=True)) ** 2).mean(-1)  # spread, apart from bias
    spread = (centred - variance) / np.sqrt((fourth - variance**2) / n)
    return bias, spread


def verdict(p_value: float, bias: float, spread: float, level: float) -> str:
    """``calibrated``, or the larger departure: ``biased (q too low)``, ``biased (q too
    high)``, ``over-confident`` or ``under-confident``."""
    if p_value >= level:
        return "calibrated"
    if abs(bias) >= abs(spread):
        # the truth above q's draws: q sits too low
        return "biased (q too low)" if bias > 0 else "biased (q too high)"
    return "over-confident" if spread > 0 else "under-confident"


def rank_tests(ranks: torch.Tensor | np.ndarray, draws: int) -> list[RankTest]:
    """One :class:`RankTest` per row of ``ranks`` (``(rows, N)``), the verdicts at
    :data:`LEVEL` shared over the rows (Bonferroni)."""
    ranks = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else ranks, dtype=np.int64)
    p_values = uniformity_p_value(ranks, draws)
    bias, spread = rank_moments(ranks, draws)
    level = LEVEL / len(ranks)
    return [
        RankTest(float(p), float(b), float(s), verdict(float(p), float(b), float(s), level))
        for p, b, s in zip(p_values, bias, spread, strict=True)
    ]


def ecdf_difference(ranks: np.ndarray, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation points j / (L + 1) and the ECDF minus the uniform CDF there, per row."""
    points = np.arange(1, draws + 1) / (draws + 1)
    return points, _ecdf_counts(np.asarray(ranks), draws) / np.shape(ranks)[-1] - points
