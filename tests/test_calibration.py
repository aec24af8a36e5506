"""Is q calibrated? Simulation-based calibration, interval coverage and posterior predictive
checks, checked on pPCA, where the exact posterior is known, and against ArviZ's own bands."""

import math

import numpy as np
import pytest
import torch
from exact_ppca import linear_vae, ppca_truth, set_exact_posterior
from pyro_vae.inference import weighted_draws

from pyro_vae import arviz_bridge
from pyro_vae.diagnostics import SectionRefused
from pyro_vae.diagnostics.calibration import simulation_based_calibration
from pyro_vae.diagnostics.coverage import interval_coverage, weighted_quantiles
from pyro_vae.diagnostics.predictive import bayesian_p_values, posterior_predictive_checks
from pyro_vae.diagnostics.uniformity import (
    ecdf_difference,
    rank_moments,
    rank_tests,
    uniformity_p_value,
)

SEEDS = (0, 1, 2)


def _exact(ppca, **spoil):
    weight, mu, sigma = ppca_truth(ppca)
    return set_exact_posterior(linear_vae(8, 2), weight, mu, sigma, **spoil)


def _posterior_sd(ppca) -> torch.Tensor:
    """sigma^2 M^-1's diagonal, square-rooted (Tipping & Bishop), computed here from W."""
    weight, _, sigma = ppca_truth(ppca)
    m = weight.T @ weight + sigma**2 * torch.eye(2, dtype=torch.float64)
    return (sigma**2 * torch.linalg.inv(m).diagonal()).sqrt()


# -- the rank test itself ----------------------------------------------------------------


def test_moments_of_exactly_uniform_ranks_are_zero():
    draws = 9
    ranks = np.tile(np.arange(draws + 1), 30)[None]  # every rank equally often
    bias, spread = rank_moments(ranks, draws)
    assert bias[0] == pytest.approx(0, abs=1e-9) and spread[0] == pytest.approx(0, abs=1e-9)


def test_p_values_are_uniform_under_uniform_ranks():
    # 400 rank sets drawn independently of the test's own null simulation
    rng = np.random.default_rng(7)
    p = uniformity_p_value(rng.integers(0, 20, (400, 100)), 19)
    # share below 0.05: binomial(400, 0.05) has sd 0.011; mean of uniform p: sd 0.014
    assert abs((p < 0.05).mean() - 0.05) < 0.035
    assert abs(p.mean() - 0.5) < 0.05


@pytest.mark.parametrize("case", ["uniform", "narrow", "wide", "high", "slight"])
def test_p_value_agrees_with_arviz_simultaneous_band(case):
    """The test rejects at 5 % exactly when the ECDF leaves ArviZ's 95 % band (both are
    Säilynoja et al.'s construction; ArviZ computes its band independently)."""
    rng = np.random.default_rng(3)
    draws, n = 49, 200
    u = {
        "uniform": rng.uniform(size=n),
        "narrow": rng.beta(0.6, 0.6, size=n),
        "wide": rng.beta(2.0, 2.0, size=n),
        "high": rng.beta(1.6, 1.0, size=n),
        "slight": rng.beta(1.05, 1.0, size=n),
    }[case]
    ranks = np.minimum((u * (draws + 1)).astype(int), draws)[None]
    p = uniformity_p_value(ranks, draws)[0]
    points, difference = ecdf_difference(ranks, draws)
    lower, upper = arviz_bridge.ecdf_band(n, points)
    ecdf = difference[0] + points
    outside = bool(((ecdf < lower - 1e-12) | (ecdf > upper + 1e-12)).any())
    if 0.03 < p < 0.07:  # at the boundary the two Monte Carlo bands may differ
        pytest.skip(f"p = {p:.3f} too close to the level to compare")
    assert outside == (p < 0.05), (case, p)


def test_verdicts_name_the_direction():
    rng = np.random.default_rng(0)
    draws, n = 19, 300
    uniform = rng.integers(0, draws + 1, n)
    edges = np.where(rng.uniform(size=n) < 0.5, 0, draws)  # truth outside q: over-confident
    middle = rng.integers(8, 12, n)  # truth in q's middle: under-confident
    low = rng.integers(0, 8, n)  # truth below q's draws: q too high
    tests = rank_tests(np.stack([uniform, edges, middle, low]), draws)
    assert [t.verdict for t in tests] == [
        "calibrated",
        "over-confident",
        "under-confident",
        "biased (q too high)",
    ]


# -- simulation-based calibration on pPCA --------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_the_exact_posterior_passes(ppca, seed):
    """At the default budget (500 simulations x 99 draws), level 0.05 over the 4 rows."""
    summary = simulation_based_calibration(_exact(ppca), seed=seed).summary()
    assert summary["calibrated"], summary["rows"]
    assert abs(summary["spread_ratio"] - 1) < 0.05


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        ({"scale_factor": 0.5}, "over-confident"),
        ({"scale_factor": 2.0}, "under-confident"),
        ("shift", "biased (q too high)"),
    ],
)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_spoiled_q_is_caught_with_its_direction(ppca, spoil, expected, seed):
    """Power at the default budget: every seed detects each spoiling in both latent
    dimensions, with the right direction. The shift is half a posterior sd upwards."""
    if spoil == "shift":
        spoil = {"loc_shift": 0.5 * _posterior_sd(ppca)}
    summary = simulation_based_calibration(_exact(ppca, **spoil), seed=seed).summary()
    latent_rows = summary["rows"][:2]
    assert [r["verdict"] for r in latent_rows] == [expected] * 2, latent_rows


def test_too_few_draws_or_simulations_are_refused(ppca):
    with pytest.raises(SectionRefused, match="sbc_draws must be at least 9"):
        simulation_based_calibration(_exact(ppca), draws=5)
    with pytest.raises(SectionRefused, match="sbc_simulations must be at least 20"):
        simulation_based_calibration(_exact(ppca), simulations=10)


# -- coverage --------------------------------------------------------------------------------


def test_weighted_quantiles_match_numpy_and_repeated_draws():
    rng = np.random.default_rng(1)
    draws = torch.tensor(rng.normal(size=(1001, 3)))
    probs = [0.05, 0.25, 0.5, 0.9]
    ours = weighted_quantiles(draws, probs)
    theirs = np.quantile(draws.numpy(), probs, axis=0, method="inverted_cdf")
    assert np.allclose(ours.numpy(), theirs)
    # integer weights are the same as repeating each draw that many times
    counts = torch.tensor(rng.integers(1, 4, size=1001))
    repeated = draws.repeat_interleave(counts, dim=0)
    weighted = weighted_quantiles(draws, probs, counts.double().log())
    assert torch.allclose(weighted, weighted_quantiles(repeated, probs))


def _exact_posterior_draws(ppca, x, num):
    """Draws from the closed-form pPCA posterior N(M^-1 W^T (x - mu), sigma^2 M^-1)."""
    weight, mu, sigma = ppca_truth(ppca)
    m_inv = torch.linalg.inv(weight.T @ weight + sigma**2 * torch.eye(2, dtype=torch.float64))
    mean = (x.double() - mu) @ weight @ m_inv.T
    scale = (sigma**2 * m_inv.diagonal()).sqrt()
    return mean + scale * torch.randn(num, *mean.shape, dtype=torch.float64)


def test_coverage_of_the_exact_posterior_is_nominal(ppca):
    """Tolerance 0.03: 4 images x 2 dimensions, 4,000 reference and 4,000 q draws each
    (binomial sd of one share about 0.008)."""
    torch.manual_seed(0)
    x = ppca.test_x[:4].double()
    reference = _exact_posterior_draws(ppca, x, 4000)
    z, _ = weighted_draws(_exact(ppca), x, particles=4000)
    coverage = interval_coverage(reference, z)
    assert torch.allclose(coverage[0], torch.tensor(0.5, dtype=torch.float64), atol=0.03)
    assert torch.allclose(coverage[1], torch.tensor(0.9, dtype=torch.float64), atol=0.03)


def test_reweighting_repairs_a_too_wide_q(ppca):
    """q with twice the posterior sd covers too much (0.82 and 0.999 for a Gaussian); its
    PSIS-reweighted draws cover 0.5 and 0.9 again (tolerance 0.04)."""
    torch.manual_seed(0)
    x = ppca.test_x[:4].double()
    reference = _exact_posterior_draws(ppca, x, 4000)
    z, log_weights = weighted_draws(_exact(ppca, scale_factor=2.0), x, particles=4000)
    plain = interval_coverage(reference, z)
    smoothed, _ = arviz_bridge.pareto_smoothed(log_weights.T)
    fixed = interval_coverage(reference, z, torch.as_tensor(smoothed).T)
    wide_50 = math.erf(2 * 0.6745 / math.sqrt(2))  # P(|N(0, 4)| < 2 x 0.6745 sd)
    assert plain[0].mean().item() == pytest.approx(wide_50, abs=0.03)
    assert plain[1].min().item() > 0.98
    assert fixed[0].mean().item() == pytest.approx(0.5, abs=0.04)
    assert fixed[1].mean().item() == pytest.approx(0.9, abs=0.04)


# -- posterior predictive checks ------------------------------------------------------------


def test_bayesian_p_values_count_ties_as_half():
    replicated = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0], [4.0, 1.0]])
    observed = torch.tensor([2.0, 0.0])
    # first: 2 above, 1 tie of 4 -> 0.625; second: 2 above, 2 ties -> 0.75
    assert bayesian_p_values(replicated, observed).tolist() == [0.625, 0.75]


def test_predictive_checks_pass_the_true_model_and_catch_a_shifted_decoder(ppca):
    x = ppca.test_x.double()
    good = posterior_predictive_checks(_exact(ppca), x, replicates=200).summary()
    assert good["pixel_mean"]["extreme_share"] <= 0.25 and 0.3 < good["intensity"]["p_mean"] < 0.7
    shifted = _exact(ppca)
    with torch.no_grad():
        shifted.decoder.out.bias.add_(1.0)  # the model's images one unit too bright
    bad = posterior_predictive_checks(shifted, x, replicates=200).summary()
    assert bad["pixel_mean"]["extreme_share"] == 1.0
    assert bad["intensity"]["p_mean"] > 0.9
