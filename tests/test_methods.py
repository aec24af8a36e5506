"""Every inference method on the same tiny model; exact checks on pPCA; bad combinations."""

import math

import pyro
import pytest
import torch
from common import assert_close
from exact_ppca import (
    learned_ppca,
    linear_vae,
    ppca_log_likelihood,
    ppca_maximum,
    ppca_truth,
    set_exact_posterior,
)
from pyro_vae.inference import SVIConfig, evaluate
from pyro_vae.inference.methods import METHODS, ModelSpec, Problem
from pyro_vae.inference.nuts import nuts_latent
from pyro_vae.inference.programs import BayesianDecoder
from pyro_vae.models import PRIORS, moments

from pyro_vae import arviz_bridge
from pyro_vae.compare import _add_elpd, _row
from pyro_vae.core.errors import ConfigError, UnknownNameError
from pyro_vae.diagnostics import vi_against_nuts

#: Options that keep every method quick.
TINY_OPTIONS = {"nuts-latent": {"images": 2, "draws": 15, "warmup": 15}}


def binary_problem(**changes) -> Problem:
    torch.manual_seed(0)
    x = (torch.rand(60, 12) < torch.linspace(0.1, 0.9, 12)).float()
    settings = {
        "model": ModelSpec(latent_dim=2, hidden=(8,)),
        "svi": SVIConfig(batch_size=20, epochs=3, lr=0.01),
        "proposal_epochs": 2,
        "nuts_x": x[:4],
        **changes,
    }
    return Problem(x, **settings)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_fits_and_is_measured_the_same_way(name):
    problem = binary_problem()
    result = METHODS.build(name, **TINY_OPTIONS.get(name, {}))(problem)
    assert result.method == name
    assert result.wall_time > 0
    if name == "nuts-latent":
        assert result.vae is None
        samples = result.details["posterior"].samples
        assert samples.shape == (2, 15, 2, 2)  # chains, draws, images, latent_dim
        assert result.details["sd_ratio_mean"] > 0 and result.details["chains"] == 2
        return
    assert result.history.epochs == 3
    assert all(torch.isfinite(torch.tensor(result.history.losses)))
    assert result.vae.weight_sites == ()  # a point decoder, whatever the method
    measured = evaluate(result.vae, problem.x, is_samples=5)
    assert torch.isfinite(measured.log_likelihood).all()
    assert (measured.log_likelihood <= 0).all()  # Bernoulli: log p(x) <= 0
    encoderless = name in ("mle-pairs", "map-pairs", "mle-prior-mc")
    assert (result.proposal_history is not None) == encoderless
    if encoderless:
        assert result.proposal_history.epochs == 2
        assert "encoder fitted afterwards" in result.notes[0]


@pytest.mark.parametrize("name", ["map-pairs", "vae", "bayes-decoder"])
def test_same_seed_same_result_and_nothing_in_the_global_param_store(name):
    runs = [METHODS.build(name)(binary_problem()) for _ in range(2)]
    assert runs[0].history.losses == runs[1].history.losses
    # Autoguide parameters are module-local: two fits never share a value by name.
    assert list(pyro.get_param_store().keys()) == []


def test_vae_method_reaches_the_ppca_maximum(small_ppca):
    problem = Problem(
        small_ppca.train_x,
        model=ModelSpec(
            latent_dim=2, hidden=(), likelihood="normal", likelihood_options={"scale": "shared"}
        ),
        svi=SVIConfig(objective="elbo-analytic-kl", batch_size=400, epochs=400, lr=0.05),
    )
    vae = METHODS.build("vae")(problem).vae
    reached = ppca_log_likelihood(small_ppca.train_x, *learned_ppca(vae)).mean().item()
    best = ppca_maximum(small_ppca.train_x, 2)
    # Tolerance 0.03 nats per datapoint (0.3 % of |L_max| ~ 9).
    assert reached <= best + 1e-6
    assert best - reached < 0.03, (reached, best)


def test_bayes_decoder_has_a_guide_over_every_weight_site():
    problem = binary_problem(svi=SVIConfig(batch_size=20, epochs=8, lr=0.01))
    vae = problem.build("normal")
    program = BayesianDecoder(vae)
    x = problem.x
    program.guide(x, num_data=60, indices=torch.arange(60))
    assert set(program.point_weights()) == set(vae.weight_sites)
    scales = program.posterior_scales()
    assert all((s > 0).all() for s in scales.values())
    result = METHODS.build("bayes-decoder")(problem)
    losses = result.history.losses
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert result.details["weights"] == sum(v.numel() for v in vae.initial_weights.values())


def test_nuts_matches_the_exact_ppca_posterior(small_ppca):
    weight, mu, sigma = ppca_truth(small_ppca)
    vae = set_exact_posterior(linear_vae(8, 2), weight, mu, sigma)
    x = small_ppca.test_x[:3].double()
    post = nuts_latent(vae, x, chains=2, draws=400, warmup=200, seed=1)
    with torch.no_grad():
        # the exact posterior N(M^-1 W^T (x - mu), sigma^2 M^-1)
        loc, scale = moments(vae.encoder(x))
    converged = arviz_bridge.convergence(post.samples)
    assert converged["rhat_max"] < 1.05
    assert converged["ess_bulk_min"] > 100
    # Mean: within 4 Monte Carlo standard errors (sd / sqrt(bulk ESS)); sd: within 15 %.
    se = scale / math.sqrt(converged["ess_bulk_min"])
    assert ((post.mean - loc).abs() < 4 * se).all(), (post.mean, loc)
    assert_close(post.std / scale, torch.ones_like(scale), atol=0.15)


@pytest.mark.parametrize(
    ("name", "options", "changes", "message"),
    [
        ("map-pairs", {}, {"svi": SVIConfig(particles=5)}, "particles .*make no sense"),
        ("mle-pairs", {}, {"weight_prior": "normal"}, "its weight prior is flat"),
        ("bayes-decoder", {}, {"weight_prior": "flat"}, "proper weight prior"),
        ("mle-prior-mc", {}, {"model": ModelSpec(prior="mog")}, "never fits it"),
        ("mle-prior-mc", {}, {"svi": SVIConfig(beta=0.5)}, "beta and warm-up do not apply"),
        ("map-pairs", {}, {"model": ModelSpec(prior="vamp")}, "vamp prior is built from"),
        ("map-pairs", {}, {"svi": SVIConfig(beta=0.5)}, "beta and warm-up do not apply"),
        ("mle-pairs", {}, {"svi": SVIConfig(warmup_epochs=1)}, "beta and warm-up do not apply"),
        ("map-pairs", {}, {"weight_prior": "hierarchical"}, "no maximum under a point"),
        ("vae", {}, {"weight_prior": "hierarchical"}, "no maximum under a point"),
        ("iwae", {}, {"weight_prior": "hierarchical"}, "no maximum under a point"),
        ("iwae", {"particles": 0}, {}, "particles must be a positive integer"),
        ("nuts-latent", {"chains": 1}, {}, "at least 2 chains"),
    ],
)
def test_nonsense_combinations_are_refused(name, options, changes, message):
    with pytest.raises(ConfigError, match=message):
        METHODS.build(name, **options).check(binary_problem(**changes))


def test_unknown_method_and_option_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="bayes-decoder, iwae, map-pairs, mle-pairs"):
        METHODS.build("map")
    with pytest.raises(ConfigError, match="'map-pairs' does not take particles; it takes: no"):
        METHODS.build("map-pairs", particles=3)


#: Latent priors with parameters a fit changes (class-conditional learns its means by default).
LEARNABLE_PRIORS = {"normal", "mog", "vamp", "class-conditional", "flow"}


@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_pairs_methods_refuse_every_learnable_prior(prior):
    # A joint MAP of z_i and a learned prior has no maximum (a component or the density can
    # collapse onto one z_i); under mle-pairs' flat latent prior it would never be fitted.
    problem = binary_problem(
        model=ModelSpec(latent_dim=2, hidden=(8,), prior=prior), labels=torch.arange(60) % 3
    )
    for method in ("map-pairs", "mle-pairs"):
        runner = METHODS.build(method)
        if prior in LEARNABLE_PRIORS:
            with pytest.raises(ConfigError, match=f"{prior} prior"):
                runner.check(problem)
        else:
            runner.check(problem)


def test_bayes_decoder_keeps_the_hierarchical_weight_prior():
    # Integrating the weights by VI and fitting their scales is empirical Bayes: allowed.
    METHODS.build("bayes-decoder").check(binary_problem(weight_prior="hierarchical"))


def test_compare_and_diagnose_report_the_same_nuts_numbers():
    # One definition of convergence (ArviZ) and of the q-NUTS gap (q's exact moments): the
    # nuts-latent method (compare) and vi_against_nuts (diagnose) agree on the same decoder,
    # images, settings and seed.
    problem = binary_problem()
    reference = METHODS.build("vae")(problem)
    settings = {"chains": 2, "draws": 30, "warmup": 30}
    row, _ = _row(
        METHODS.build("nuts-latent", images=2, **settings)(problem, reference),
        ("diagonal", "standard-normal", 0),
        *(problem.x, None, problem.x, None),
        k=5,
    )
    latent = vi_against_nuts(reference.vae, problem.nuts_x, images=[0, 1], seed=0, **settings)
    expected = {**arviz_bridge.convergence(latent.nuts.samples), **latent.gap_summary()}
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, rel=1e-6), key


def test_compare_scores_every_fit_with_common_random_numbers():
    # The same fit scored twice in one grid: ELPD difference exactly 0, and its SE 0.
    problem = binary_problem()
    result = METHODS.build("vae")(problem)
    rows, per_image = [], []
    for _ in range(2):
        row, values = _row(
            result, ("diagonal", "standard-normal", 0), problem.x, None, problem.x, None, k=50
        )
        rows.append(row)
        per_image.append(values)
    _add_elpd(rows, per_image)
    assert sorted((r["elpd_diff"], r["elpd_dse"]) for r in rows) == [(0.0, 0.0), (0.0, 0.0)]
