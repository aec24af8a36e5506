"""Diagnostics against exact answers: pPCA's posterior, marginal likelihood and collapse."""

import inspect
import math

import numpy as np
import pytest
import torch
from common import SMALL_PRIOR_OPTIONS, assert_close
from exact_ppca import (
    linear_vae,
    ppca_log_likelihood,
    ppca_mle_fixed_noise,
    ppca_truth,
    set_exact_posterior,
)
from pyro_vae.inference import SVIConfig, evaluate, fit
from pyro_vae.models import PRIORS, build_vae

from pyro_vae import arviz_bridge
from pyro_vae.core.errors import ConfigError
from pyro_vae.diagnostics import (
    MIN_IS_SAMPLES,
    aggregate_posterior,
    elpd_comparison,
    importance_diagnostics,
    inference_gaps,
    posterior_collapse,
    vi_against_nuts,
)

#: k-hat of ArviZ 0.23's psislw on the log weights of test_psis_is_the_same_with_either_arviz_line.
PSIS_KHAT_REFERENCE = [0.4117, 0.5550, 0.8351]


def exact_vae(ppca, **spoil):
    weight, mu, sigma = ppca_truth(ppca)
    return set_exact_posterior(linear_vae(8, 2), weight, mu, sigma, **spoil)


# ----------------------------------------------------------------------------- k-hat


def test_khat_is_small_for_good_guides_and_large_for_a_poor_one(ppca):
    x = ppca.test_x.double()
    exact = importance_diagnostics(exact_vae(ppca), x, is_samples=500)
    # q = p(z|x): every weight equals p(x), there is no tail at all.
    assert torch.isneginf(exact.khat).all()
    assert exact.khat_shares()["good (< 0.5)"] == 1.0
    wide = importance_diagnostics(exact_vae(ppca, scale_factor=1.3), x, is_samples=500)
    # A proposal wider than the posterior has bounded weights: k-hat < 0.5 for every image.
    assert (wide.khat < 0.5).all(), wide.khat.max()
    narrow = importance_diagnostics(exact_vae(ppca, scale_factor=0.4), x, is_samples=500)
    # Too narrow a proposal: heavy-tailed weights, IS unreliable for most images.
    assert narrow.khat_shares()["bad (> 0.7)"] > 0.5, narrow.khat_shares()
    assert narrow.worst(3) == narrow.khat.argsort(descending=True)[:3].tolist()
    assert math.isclose(sum(narrow.khat_shares().values()), 1.0)


def test_psis_estimate_matches_the_exact_marginal_likelihood(ppca):
    weight, mu, sigma = ppca_truth(ppca)
    x = ppca.test_x.double()
    exact = ppca_log_likelihood(x, weight, mu, sigma)
    result = importance_diagnostics(exact_vae(ppca, scale_factor=1.3), x, is_samples=2000)
    # Good k-hat, so both estimates are within 0.01 nats of log p(x) on average.
    assert abs((result.log_likelihood - exact).mean()) < 0.01
    assert abs((result.psis_log_likelihood - exact).mean()) < 0.01
    assert (result.elbo <= result.log_likelihood + 1e-9).all()


def test_khat_needs_enough_samples(ppca):
    with pytest.raises(ConfigError, match="at least 200"):
        importance_diagnostics(exact_vae(ppca), ppca.test_x.double(), is_samples=5)


def test_khat_is_finite_at_the_minimum_number_of_draws(ppca):
    # A proposal 30 % too wide: weights vary, so every image has a real tail to fit.
    x = ppca.test_x[:50].double()
    vae = exact_vae(ppca, scale_factor=1.3)
    result = importance_diagnostics(vae, x, is_samples=MIN_IS_SAMPLES)
    assert torch.isfinite(result.khat).all(), result.khat
    # Why the minimum: at K = 20 the Pareto fit has 4 tail draws and gives k-hat = inf.
    few = evaluate(vae, x, is_samples=20, keep_log_weights=True).log_weights
    assert torch.isinf(torch.as_tensor(arviz_bridge.pareto_smoothed(few)[1])).all()


# ----------------------------------------------------------------------------- collapse


def test_active_units_of_the_exact_ppca_posterior(ppca):
    """Noise held at sigma^2 = 0.5: directions with lambda_j <= sigma^2 get zero columns."""
    sigma = 0.5**0.5
    x = ppca.train_x.double()
    weight, mu, eig = ppca_mle_fixed_noise(x, 4, sigma)
    vae = set_exact_posterior(linear_vae(8, 4), weight, mu, sigma)
    collapse = posterior_collapse(vae, x)
    expected = ((eig[:4] - sigma**2) / eig[:4]).clamp(min=0)
    # Cov_x E[z_j|x] = (lambda_j - sigma^2) / lambda_j exactly, 0 for collapsed directions.
    assert_close(collapse.activity, expected, atol=1e-9, msg="activity")
    assert collapse.active_units == int((eig[:4] > sigma**2).sum()) == 2
    # A collapsed unit's posterior is the prior: KL exactly 0.
    assert_close(collapse.kl_per_dim[2:], 0.0, atol=1e-9)
    assert (collapse.kl_per_dim[:2] > 0.5).all()


def test_a_trained_linear_vae_collapses_the_directions_below_the_noise(ppca):
    vae = build_vae(
        8, 4, (), likelihood="normal", likelihood_options={"scale": "fixed", "init_scale": 0.5**0.5}
    )
    fit(
        vae, ppca.train_x, config=SVIConfig("elbo-analytic-kl", batch_size=500, epochs=150, lr=0.05)
    )
    _, _, eig = ppca_mle_fixed_noise(ppca.train_x, 4, 0.5**0.5)
    collapse = posterior_collapse(vae, ppca.train_x)
    assert collapse.active_units == int((eig[:4] > 0.5).sum()) == 2
    quiet = collapse.activity.argsort()[:2]
    assert (collapse.activity[quiet] < 2e-3).all(), collapse.activity
    assert (collapse.kl_per_dim[quiet] < 2e-3).all(), collapse.kl_per_dim
    # Rotation-free check: the active units carry the exact total activity within 10 %.
    expected = ((eig[:2] - 0.5) / eig[:2]).sum()
    assert abs(collapse.activity.sum() - expected) < 0.1 * expected


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_collapse_and_aggregate_posterior_for_every_prior(name):
    torch.manual_seed(0)
    x = torch.rand(40, 6).bernoulli()
    labels = torch.arange(40) % 4
    vae = build_vae(
        6, 3, (8,), prior=name, prior_options=SMALL_PRIOR_OPTIONS.get(name), data=x, num_classes=4
    )
    collapse = posterior_collapse(vae, x, labels)
    assert collapse.activity.shape == (3,)
    # Products over dimensions (given the label, for class-conditional) have a KL per unit.
    factorised = name in ("standard-normal", "normal", "laplace", "student-t", "class-conditional")
    assert (collapse.kl_per_dim is not None) == factorised
    if factorised:
        # Per-dimension KLs add up to the whole KL (estimated independently by sampling).
        given = evaluate(vae, x, labels, is_samples=4000, marginalize_labels=False)
        total = given.kl.mean()
        assert abs(collapse.kl_per_dim.sum() - total) < 0.05 + 0.02 * abs(total), (
            collapse.kl_per_dim,
            total,
        )
    aggregate = aggregate_posterior(vae, x, labels)
    # A Monte Carlo estimate: at most log N by construction, near 0 (either side) when the
    # untrained encoder maps every x alike.
    assert -0.1 <= aggregate.mutual_information <= math.log(40) + 1e-9
    assert 0.0 <= aggregate.hole_fraction <= 1.0
    assert aggregate.q_draws.shape == aggregate.p_draws.shape == (40, 3)


def test_mutual_information_and_aggregate_posterior_of_exact_ppca(ppca):
    weight, _, sigma = ppca_truth(ppca)
    result = aggregate_posterior(exact_vae(ppca), ppca.train_x.double())
    # Exact posterior and data from the model: q(z) = p(z), I(x; z) = 1/2 log det(M / sigma^2).
    exact_mi = 0.5 * torch.log1p(torch.diag(weight.T @ weight) / sigma**2).sum().item()
    assert abs(result.mutual_information - exact_mi) < 0.1, (result.mutual_information, exact_mi)
    assert abs(result.kl) < 0.06
    assert result.hole_fraction < 0.03
    shifted = aggregate_posterior(exact_vae(ppca, loc_shift=2.0), ppca.train_x.double())
    assert shifted.kl > 1.0 and shifted.hole_fraction > 0.2


# ----------------------------------------------------------------------------- gaps


def test_amortization_gap_vanishes_for_the_exact_encoder(ppca):
    x = ppca.test_x.double()[:40]
    exact = inference_gaps(exact_vae(ppca), x, steps=300, is_samples=500)
    # pPCA's posterior is a diagonal Gaussian: both gaps are 0 up to optimisation noise.
    assert abs(exact.amortization.mean()) < 0.02, exact.summary()
    assert abs(exact.approximation.mean()) < 0.02, exact.summary()
    weak = inference_gaps(
        exact_vae(ppca, scale_factor=0.5, loc_shift=0.3), x, steps=300, is_samples=500
    )
    # A spoilt encoder: q* recovers the posterior, the loss is all amortization.
    assert weak.amortization.mean() > 1.0, weak.summary()
    assert abs(weak.approximation.mean()) < 0.02, weak.summary()
    assert weak.losses[-1] < weak.losses[0]


# ----------------------------------------------------------------------------- NUTS


@pytest.mark.slow
def test_vi_against_nuts_for_the_exact_posterior(ppca):
    x = ppca.test_x.double()
    result = vi_against_nuts(exact_vae(ppca), x, images=[0, 5], chains=2, draws=200, warmup=100)
    assert result.variational.shape == result.nuts.samples.shape == (2, 200, 2, 2)
    diff = result.differences()
    # q is the exact posterior, so NUTS must agree: means within 0.25 sd, sds within 20 %.
    assert diff["mean_gap_in_sd"].abs().max() < 0.25, diff
    assert ((diff["sd_ratio"] - 1).abs() < 0.2).all(), diff
    idata = arviz_bridge.inference_data(
        nuts=result.nuts.samples, variational=result.variational, images=[0, 5]
    )
    rows = arviz_bridge.posterior_summary(idata, "z_nuts")
    assert len(rows) == 4 and max(r["r_hat"] for r in rows) < 1.05


def test_nuts_images_must_exist(ppca):
    with pytest.raises(ConfigError, match="row indices"):
        vi_against_nuts(exact_vae(ppca), ppca.test_x.double(), images=[500])


# ----------------------------------------------------------------------------- InferenceData, ELPD


def test_inference_data_groups_dims_and_netcdf_round_trip(tmp_path):
    nuts, vi = torch.randn(3, 20, 2, 4), torch.randn(3, 20, 2, 4)
    ll = {"run-a": torch.randn(10), "run-b": torch.randn(10)}
    idata = arviz_bridge.inference_data(
        nuts=nuts, variational=vi, images=[7, 9], log_likelihood=ll, test_images=range(10)
    )
    assert set(arviz_bridge.group_names(idata)) == {"posterior", "log_likelihood"}
    assert idata.posterior["z_nuts"].dims == ("chain", "draw", "image", "latent")
    assert idata.posterior["z_vi"].shape == (3, 20, 2, 4)
    assert idata.log_likelihood["run-b"].dims == ("chain", "draw", "test_image")
    assert list(idata.posterior.coords["image"].values) == [7, 9]
    arviz_bridge.save(idata, tmp_path / "d.nc")
    back = arviz_bridge.load(tmp_path / "d.nc")
    assert_close(back.posterior["z_vi"].values, vi, atol=1e-6)
    assert_close(back.log_likelihood["run-a"].values[0, 0], ll["run-a"], atol=1e-6)
    rows = arviz_bridge.posterior_summary(idata, "z_vi")
    assert len(rows) == 8
    assert set(rows[0]) == {"image", "latent", *arviz_bridge.SUMMARY_COLUMNS}
    assert_close(rows[0]["mean"], vi[:, :, 0, 0].mean(), atol=1e-5)


def test_elpd_of_a_fit_with_itself_differs_by_zero():
    values = torch.randn(50) - 100
    rows = elpd_comparison({"a": values, "b": values.clone()})
    assert [r["elpd_diff"] for r in rows] == [0.0, 0.0]
    assert [r["dse"] for r in rows] == [0.0, 0.0]


def test_elpd_difference_and_its_standard_error():
    a = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    b = a - torch.tensor([0.5, 1.5, 0.5, 1.5])  # worse by 1 on average, spread 0.5
    rows = elpd_comparison({"b": b, "a": a})
    assert [r["fit"] for r in rows] == ["a", "b"]
    assert_close(rows[0]["elpd"], -10.0)
    assert_close(rows[0]["se"], math.sqrt(4 * a.var(unbiased=False)))
    assert_close(rows[1]["elpd_diff"], 4.0)
    assert_close(rows[1]["dse"], math.sqrt(4 * 0.25))
    with pytest.raises(ConfigError, match="different numbers"):
        elpd_comparison({"a": a, "c": a[:3]})


def test_arviz_compare_reproduces_our_elpd_differences_from_the_exported_file(tmp_path):
    # The per-image log p(x_i) that diagnose writes, read back and handed to arviz.compare
    # (whichever ArviZ line is installed) give our ELPD differences and their SE.
    import arviz as az

    torch.manual_seed(0)
    per_image = {"a": torch.randn(40) - 100, "b": torch.randn(40) - 101, "c": torch.randn(40) - 99}
    arviz_bridge.save(
        arviz_bridge.inference_data(log_likelihood=per_image, test_images=range(40)),
        tmp_path / "d.nc",
    )
    back = arviz_bridge.load(tmp_path / "d.nc")
    params = inspect.signature(az.compare).parameters
    unrounded = {"round_to": "none"} if "round_to" in params else {}
    table = az.compare(
        {name: arviz_bridge.held_out_elpd(back.log_likelihood[name]) for name in per_image},
        **unrounded,  # ArviZ 1.x rounds its table unless told not to
    )
    for row in elpd_comparison(per_image):
        assert abs(float(table.loc[row["fit"], "elpd_diff"])) == pytest.approx(
            row["elpd_diff"], abs=1e-6
        )
        assert float(table.loc[row["fit"], "dse"]) == pytest.approx(row["dse"], abs=1e-6)
    assert table.index[0] == "c"  # the best fit first


def test_psis_is_the_same_with_either_arviz_line():
    # Reference values: ArviZ 0.23's psislw(normalize=False) on these log weights (seeded
    # normal draws); ArviZ 1.x's arviz_stats path must give the same k-hat and weights.
    rng = np.random.default_rng(1)
    lw = rng.normal(size=(3, 200)) * np.array([[0.5], [1.0], [2.0]])
    smoothed, khat = arviz_bridge.pareto_smoothed(lw)
    assert_close(khat, PSIS_KHAT_REFERENCE, atol=1e-3)
    # smoothing keeps the body of the weights on the input's scale
    body = lw < np.quantile(lw, 0.5, axis=-1, keepdims=True)
    assert_close(smoothed[body], lw[body], atol=1e-9)
