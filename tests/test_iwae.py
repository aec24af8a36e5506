"""The importance-weighted bound: K=1 is the ELBO, it rises with K to log p(x) on pPCA, and it
stays per-datapoint under subsampling and beta."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from common import SMALL_PRIOR_OPTIONS, assert_close
from exact_ppca import linear_vae, ppca_log_likelihood, ppca_truth, set_exact_posterior
from pyro_vae.inference import OBJECTIVES
from pyro_vae.inference.iwae import ImportanceWeightedELBO, takes_particles
from pyro_vae.inference.programs import BayesianDecoder, PointWeights, PriorProposal
from pyro_vae.models import PRIORS, build_vae

from pyro_vae.core.errors import ConfigError


def spoilt_ppca_vae(small_ppca):
    weight, mu, sigma = ppca_truth(small_ppca)
    return set_exact_posterior(linear_vae(8, 2), weight, mu, sigma, scale_factor=1.6, loc_shift=0.3)


def bound(vae, x, k, **kwargs) -> float:
    """IWAE_K in nats per datapoint (minus the loss over the N the plate scales to)."""
    n = kwargs.get("num_data", x.shape[0])
    return -ImportanceWeightedELBO(k).loss(vae.model, vae.guide, x, **kwargs) / n


@pytest.mark.parametrize("beta", [1.0, 0.3])
@pytest.mark.parametrize("subsample", [False, True])
def test_one_particle_equals_trace_elbo(small_ppca, beta, subsample):
    vae = spoilt_ppca_vae(small_ppca)
    x = small_ppca.train_x.double()
    kwargs = {"beta": beta}
    if subsample:
        idx = torch.arange(50, 90)
        x, kwargs = x[idx], {**kwargs, "num_data": 400, "indices": idx}
    pyro.set_rng_seed(3)
    iwae = OBJECTIVES.build("iwae", 1).differentiable_loss(vae.model, vae.guide, x, **kwargs)
    pyro.set_rng_seed(3)
    elbo = OBJECTIVES.build("elbo", 1).differentiable_loss(vae.model, vae.guide, x, **kwargs)
    # The same draws: identical up to rounding.
    assert_close(iwae.detach(), elbo.detach(), atol=1e-8, msg="IWAE K=1 vs Trace_ELBO")


def test_one_particle_equals_trace_elbo_with_global_sites():
    torch.manual_seed(0)
    vae = build_vae(6, 2, (5,), likelihood="normal", weight_prior="normal")
    program = PointWeights(vae)
    x, idx = torch.randn(8, 6), torch.arange(2, 10)
    kwargs = {"num_data": 40, "indices": idx, "beta": 0.5}
    program.guide(x, **kwargs)  # the autoguide's first call runs the model: draw it first
    pyro.set_rng_seed(1)
    iwae = ImportanceWeightedELBO(1).differentiable_loss(program.model, program.guide, x, **kwargs)
    pyro.set_rng_seed(1)
    elbo = pyro.infer.Trace_ELBO().differentiable_loss(program.model, program.guide, x, **kwargs)
    # The weight prior counts once per step, not N/B times and not inside the logsumexp.
    assert_close(iwae.detach(), elbo.detach(), atol=1e-4, rtol=1e-6)


def test_bound_rises_with_particles_and_reaches_log_likelihood(small_ppca):
    vae = spoilt_ppca_vae(small_ppca)
    x = small_ppca.test_x.double()
    exact = ppca_log_likelihood(x, *ppca_truth(small_ppca)).mean().item()
    # Averages over repeats, so the comparison is of expectations (repeats x 100 datapoints).
    means = {
        k: sum(bound(vae, x, k) for _ in range(reps)) / reps
        for k, reps in ((1, 20), (5, 20), (50, 5), (2000, 1))
    }
    assert means[1] < means[5] < means[50] < means[2000] <= exact + 0.01
    assert exact - means[1] > 1.0  # the spoilt guide leaves a gap of about 3 nats
    assert abs(means[2000] - exact) < 0.02, (means[2000], exact)


def test_minibatch_estimates_are_unbiased_for_the_full_data_bound(small_ppca):
    # With q = p(z|x) every log weight is log p(x_i): the estimator has no noise, so the
    # mean of the minibatch estimates must equal the full-data bound to rounding.
    weight, mu, sigma = ppca_truth(small_ppca)
    vae = set_exact_posterior(linear_vae(8, 2), weight, mu, sigma)
    x = small_ppca.train_x.double()
    full = bound(vae, x, 7)
    order = torch.randperm(400)
    estimates = [
        bound(vae, x[idx], 7, num_data=400, indices=idx, beta=1.0) for idx in order.split(40)
    ]
    assert_close(sum(estimates) / len(estimates), full, atol=1e-9)
    assert_close(full, ppca_log_likelihood(x, weight, mu, sigma).mean(), atol=1e-9)
    # Each minibatch estimate is (N/B) sum over its rows, so they differ from each other.
    assert max(estimates) - min(estimates) > 0.01


def test_refuses_a_guide_without_reparameterization():
    def model(x, labels=None, **_):
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("k", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(k, 1.0), obs=x)

    def guide(x, labels=None, **_):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("k", dist.Bernoulli(0.3))

    with pytest.raises(ConfigError, match="reparameterizable guide; site 'k'"):
        ImportanceWeightedELBO(3).differentiable_loss(model, guide, torch.zeros(4))


def plate_and_repeated(program, x, labels, **kwargs):
    """IWAE_3 loss and gradients through the particle plate, then through the repeated path.

    A wrapper without the ``particles`` keyword gets the minibatch repeated K times. Both draw
    the same (K, batch) noise in the same order, so with one seed they agree to rounding.
    """

    def repeated_model(*args, **kw):
        return program.model(*args, **kw)

    def repeated_guide(*args, **kw):
        return program.guide(*args, **kw)

    assert takes_particles(program.model) and takes_particles(program.guide)
    assert not takes_particles(repeated_model)
    results = []
    for model, guide in ((program.model, program.guide), (repeated_model, repeated_guide)):
        pyro.set_rng_seed(1)
        program.zero_grad(set_to_none=True)
        loss = ImportanceWeightedELBO(3).differentiable_loss(model, guide, x, labels, **kwargs)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in program.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    pyro.set_rng_seed(2)  # other draws give another value: the comparison is not vacuous
    other = ImportanceWeightedELBO(3).loss(program.model, program.guide, x, labels, **kwargs)
    assert other != results[0][0].item()
    return results


def assert_same_loss_and_grads(results, expected_param):
    (plate_loss, plate_grads), (repeat_loss, repeat_grads) = results
    assert_close(plate_loss, repeat_loss, rtol=1e-6, msg="loss")
    assert plate_grads.keys() == repeat_grads.keys() and expected_param in plate_grads
    for name in plate_grads:
        assert_close(plate_grads[name], repeat_grads[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_particle_plate_equals_repeated_minibatch_for_every_prior(prior):
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((40, 6), 0.4))
    labels = torch.arange(40) % 4
    vae = build_vae(
        6, 2, (8,), prior=prior, prior_options=SMALL_PRIOR_OPTIONS.get(prior), data=x, num_classes=4
    )
    idx = torch.arange(3, 11)
    results = plate_and_repeated(vae, x[idx], labels[idx], num_data=40, indices=idx, beta=0.7)
    assert_same_loss_and_grads(results, "encoder.loc.weight")


#: Programs that take the particles keyword, with a parameter each must have a gradient for.
PLATE_PROGRAMS = {
    "PointWeights": (PointWeights, "vae.encoder.loc.weight"),
    "BayesianDecoder": (BayesianDecoder, "guides.0.scales.decoder.out.weight_unconstrained"),
    "PriorProposal": (PriorProposal, "vae.decoder.out.weight"),
}


@pytest.mark.parametrize("name", sorted(PLATE_PROGRAMS))
def test_particle_plate_equals_repeated_minibatch_for_every_program(name):
    # Global sites (the decoder weights under a prior) are drawn once per call in both paths.
    make, expected_param = PLATE_PROGRAMS[name]
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((40, 6), 0.4))
    weight_prior = None if name == "PriorProposal" else "normal"
    program = make(build_vae(6, 2, (8,), weight_prior=weight_prior))
    idx = torch.arange(3, 11)
    kwargs = {"num_data": 40, "indices": idx, "beta": 0.7}
    program.guide(x[idx], **kwargs)  # an autoguide's first call runs the model: do it first
    assert_same_loss_and_grads(plate_and_repeated(program, x[idx], None, **kwargs), expected_param)


@pytest.mark.parametrize("weight_prior", [None, "normal"])
def test_particle_plate_runs_the_encoder_once_per_datapoint(weight_prior):
    vae = build_vae(6, 2, (8,), weight_prior=weight_prior)
    program = vae if weight_prior is None else PointWeights(vae)
    rows = []
    vae.encoder.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    x = torch.bernoulli(torch.full((8, 6), 0.4))
    program.guide(x)  # an autoguide's first call runs the model: do it before counting
    rows.clear()
    ImportanceWeightedELBO(5).loss(program.model, program.guide, x)
    assert rows == [8]
    rows.clear()
    ImportanceWeightedELBO(5).loss(lambda *a, **k: program.model(*a, **k), program.guide, x)
    assert rows == [40]  # without the keyword on both programs: the minibatch repeated
