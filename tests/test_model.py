"""The VAE's Pyro programs: trace shapes, model/guide agreement, plate scaling, beta, registries."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from common import assert_close
from exact_ppca import linear_vae, ppca_truth, set_exact_posterior
from pyro import poutine
from pyro.util import check_model_guide_match
from pyro_vae.inference import OBJECTIVES
from pyro_vae.models import LAYERS, LIKELIHOODS, build_vae, moments
from pyro_vae.models.likelihoods import BinaryBernoulli
from pyro_vae.models.networks import GatedLinear
from torch.distributions import kl_divergence

from pyro_vae.core.errors import ConfigError, DataError, UnknownNameError
from pyro_vae.data import load_dataset

DATA_FOR = {  # data each likelihood accepts, and data it must refuse
    "bernoulli": (
        lambda: torch.bernoulli(torch.full((6, 12), 0.4)),
        lambda: torch.full((6, 12), 0.3),
    ),
    "continuous-bernoulli": (lambda: torch.rand(6, 12), lambda: torch.full((6, 12), 1.5)),
    "discretized-logistic": (
        lambda: torch.randint(0, 256, (6, 12)) / 255.0,
        lambda: torch.full((6, 12), 0.5),  # between two of the 256 levels
    ),
    "normal": (lambda: torch.randn(6, 12), lambda: torch.full((6, 12), float("nan"))),
    "laplace": (lambda: torch.randn(6, 12), lambda: torch.full((6, 12), float("inf"))),
}


def test_every_likelihood_has_test_data():
    assert set(DATA_FOR) == set(LIKELIHOODS)


@pytest.mark.parametrize("particles", [1, 3])
def test_trace_shapes_and_model_guide_match(particles):
    vae = build_vae(12, 3, (8,))
    x = torch.bernoulli(torch.full((5, 12), 0.5))
    plate = pyro.plate("particles", particles, dim=-2)
    guide_trace = poutine.trace(plate(vae.guide)).get_trace(x)
    model_trace = poutine.trace(poutine.replay(plate(vae.model), trace=guide_trace)).get_trace(x)
    check_model_guide_match(model_trace, guide_trace, max_plate_nesting=2)
    assert guide_trace.nodes["z"]["value"].shape == (particles, 5, 3)
    assert model_trace.nodes["z"]["value"].shape == (particles, 5, 3)
    assert model_trace.nodes["x"]["fn"].batch_shape == (particles, 5)
    assert model_trace.nodes["x"]["fn"].event_shape == (12,)
    assert model_trace.nodes["x"]["is_observed"]


def test_parameters_stay_in_the_modules_not_the_param_store():
    vae = build_vae(12, 3, (8,), likelihood="normal")
    x = torch.randn(5, 12)
    loss = OBJECTIVES["elbo"]().differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert len(pyro.get_param_store()) == 0
    assert all(p.grad is not None for p in vae.parameters())


def test_model_generates_without_data():
    vae = build_vae(12, 3, (8,))
    trace = poutine.trace(vae.model).get_trace(None, batch_size=4)
    assert trace.nodes["x"]["value"].shape == (4, 12)
    assert set(trace.nodes["x"]["value"].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_likelihood_and_objective_gives_finite_gradients(likelihood, objective):
    good, _ = DATA_FOR[likelihood]
    vae = build_vae(12, 3, (8,), likelihood=likelihood)
    x = good()
    vae.likelihood.check_data(x)
    loss = OBJECTIVES[objective](particles=2).differentiable_loss(
        vae.model, vae.guide, x, num_data=60
    )
    loss.backward()
    assert torch.isfinite(loss)
    for name, param in vae.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_hidden_layer_type_builds_both_networks_and_trains(layer):
    vae = build_vae(12, 3, (8, 5), layer=layer)
    x = torch.bernoulli(torch.full((10, 12), 0.3))
    loc, scale = moments(vae.encoder(x))
    assert loc.shape == scale.shape == (10, 3) and (scale > 0).all()
    assert vae.decoder(loc).shape == (10, 12)
    linears = [m for m in vae.decoder.body.modules() if isinstance(m, torch.nn.Linear)]
    gated = 2 if layer == "gated" else 1
    assert [m.out_features for m in linears] == [5 * gated, 8 * gated]
    elbo = OBJECTIVES["elbo"]()
    optimizer = torch.optim.Adam(vae.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = elbo.differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < sum(losses[:5])


def test_gated_layer_is_the_value_half_times_the_sigmoid_of_the_gate_half():
    layer = GatedLinear(4, 3)
    x = torch.randn(6, 4)
    weight, bias = layer.linear.weight, layer.linear.bias
    expected = (x @ weight[:3].T + bias[:3]) * torch.sigmoid(x @ weight[3:].T + bias[3:])
    assert_close(layer(x), expected, atol=1e-6)


def test_relu_networks_keep_their_state_dict_names():
    # Checkpoints written before the layer registry existed must still load.
    names = set(build_vae(12, 3, (8,)).state_dict())
    assert {"encoder.body.0.weight", "decoder.body.0.weight", "decoder.out.weight"} <= names


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
def test_likelihood_refuses_data_it_cannot_model(likelihood):
    _, bad = DATA_FOR[likelihood]
    with pytest.raises(DataError):
        LIKELIHOODS.build(likelihood, 12).check_data(bad())


def test_bernoulli_on_grey_pixels_says_what_to_do():
    with pytest.raises(DataError, match="binarize.*continuous-bernoulli"):
        LIKELIHOODS.build("bernoulli", 4).check_data(torch.full((2, 4), 0.5))


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
def test_likelihood_log_prob_matches_torch(likelihood):
    good, _ = DATA_FOR[likelihood]
    x, params = good(), torch.randn(6, 12)
    lik = LIKELIHOODS.build(likelihood, 12)
    if likelihood == "discretized-logistic":  # against the CDF at the bin edges, in float64
        y, loc = 2 * x.double() - 1, params.double()
        upper = torch.sigmoid((y + 1 / 255 - loc) / 0.2)
        lower = torch.sigmoid((y - 1 / 255 - loc) / 0.2)
        upper, lower = upper.where(x < 1, 1.0), lower.where(x > 0, 0.0)
        expected = (upper - lower).log().sum(-1).float()
        assert_close(lik(params).log_prob(x), expected, atol=1e-3)
        return
    reference = {
        "bernoulli": lambda: torch.distributions.Bernoulli(logits=params),
        "continuous-bernoulli": lambda: torch.distributions.ContinuousBernoulli(logits=params),
        "normal": lambda: torch.distributions.Normal(params, torch.ones(12)),
        "laplace": lambda: torch.distributions.Laplace(params, torch.ones(12)),
    }[likelihood]()
    assert_close(lik(params).log_prob(x), reference.log_prob(x).sum(-1), atol=1e-5)


def test_binary_bernoulli_matches_torch_at_extreme_logits_and_broadcasts_over_particles():
    logits = torch.tensor([-200.0, -30.0, -1.0, 0.0, 1.0, 30.0, 200.0]).expand(3, 2, 7)
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]])
    ours = BinaryBernoulli(logits=logits).log_prob(x)
    assert ours.shape == (3, 2, 7)
    # torch's reference in float64, where its own rounding does not matter
    exact = torch.distributions.Bernoulli(logits=logits.double()).log_prob(x.double())
    assert_close(ours.double(), exact, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="support"):
        BinaryBernoulli(logits=logits, validate_args=True).log_prob(torch.full((2, 7), 0.5))


def test_binary_bernoulli_validates_values_by_the_global_switch_but_never_its_logits():
    grey = torch.full((2, 3), 0.5)
    unchecked = BinaryBernoulli(logits=torch.full((2, 3), float("nan")))  # no parameter pass
    assert torch.isnan(unchecked.log_prob(torch.ones(2, 3))).all()
    for d in (
        BinaryBernoulli(logits=torch.zeros(2, 3)),
        BinaryBernoulli(logits=torch.zeros(3)).expand((2, 3)),
    ):
        assert isinstance(d, BinaryBernoulli) and d.batch_shape == (2, 3)
        with pytest.raises(ValueError, match="support"):  # conftest enables validation
            d.log_prob(grey)
    with pyro.validation_enabled(False):
        assert BinaryBernoulli(logits=torch.zeros(2, 3)).log_prob(grey).shape == (2, 3)


def test_registries_list_the_valid_names():
    with pytest.raises(
        UnknownNameError,
        match="bernoulli, continuous-bernoulli, discretized-logistic, laplace, normal",
    ):
        LIKELIHOODS["gaussian"]
    with pytest.raises(UnknownNameError, match="standard-normal"):
        build_vae(4, 2, prior="flat")
    with pytest.raises(ConfigError, match="does not take sigma; it takes: scale, init_scale"):
        LIKELIHOODS.build("normal", 4, sigma=2.0)
    with pytest.raises(UnknownNameError, match="gated, relu, softplus, tanh"):
        build_vae(4, 2, layer="glu")


def exact_ppca_vae():
    data = load_dataset("ppca", num_train=400, num_test=10)
    weight, mu, sigma = ppca_truth(data)
    return set_exact_posterior(linear_vae(8, 2), weight, mu, sigma), data.train_x.double()


def test_minibatch_elbo_estimates_are_unbiased_for_the_full_data_elbo():
    # At the exact posterior each datapoint's ELBO is deterministic, so averaging the scaled
    # minibatch estimates over one partition must give the full-data ELBO exactly.
    vae, x = exact_ppca_vae()
    elbo = OBJECTIVES["elbo"]()
    full = elbo.differentiable_loss(vae.model, vae.guide, x).item()
    order = torch.randperm(len(x))
    estimates = [
        elbo.differentiable_loss(vae.model, vae.guide, x[idx], num_data=len(x), indices=idx).item()
        for idx in order.split(40)
    ]
    assert_close(torch.tensor(estimates).mean(), full, rtol=1e-10)
    assert max(estimates) - min(estimates) > 1.0  # the minibatches really differ


def test_minibatch_estimate_is_unbiased_under_monte_carlo_noise():
    vae = build_vae(10, 2, (6,))
    x = torch.bernoulli(torch.rand(60, 10))
    elbo = OBJECTIVES["elbo"](particles=200)
    full = torch.stack([elbo.differentiable_loss(vae.model, vae.guide, x) for _ in range(5)]).mean()
    estimates = []
    for _ in range(100):
        idx = torch.randperm(60)[:12]
        estimates.append(
            elbo.differentiable_loss(
                vae.model, vae.guide, x[idx], num_data=60, indices=idx
            ).detach()
        )
    estimates = torch.stack(estimates)
    stderr = estimates.std() / len(estimates) ** 0.5
    assert abs(estimates.mean() - full.detach()) < 4 * stderr


def test_beta_scales_exactly_the_kl_term():
    vae, x = exact_ppca_vae()
    loc, scale = moments(vae.encoder(x))
    kl = kl_divergence(dist.Normal(loc, scale).to_event(1), vae.prior(len(x))).sum()
    elbo = OBJECTIVES["elbo-analytic-kl"]()
    losses = {}
    for beta in (1.0, 0.25):
        pyro.set_rng_seed(3)  # same z draws for the reconstruction term
        losses[beta] = elbo.differentiable_loss(vae.model, vae.guide, x, beta=beta).item()
    assert_close(losses[0.25] - losses[1.0], (0.25 - 1.0) * kl.item(), rtol=1e-9)
