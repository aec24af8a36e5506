"""K particles vectorize the local z only: global weight sites are drawn once per step, and the
K-particle loss is the mean of K one-particle losses on the same draws (checked by hand)."""

import json

import pyro
import pytest
import torch
from common import TINY, assert_close, run_cli
from pyro import poutine
from pyro_vae.inference import SVIConfig
from pyro_vae.inference.methods import METHODS, ModelSpec, Problem
from pyro_vae.inference.objectives import OBJECTIVES
from pyro_vae.inference.programs import PointWeights
from pyro_vae.models import build_vae, moments
from torch.distributions import Normal, kl_divergence

NUM_DATA, K, NOISE, WEIGHT_SCALE = 20, 3, 0.7, 0.5


def linear_program(weight_prior):
    torch.manual_seed(0)
    vae = build_vae(
        6,
        2,
        (),
        likelihood="normal",
        likelihood_options={"scale": "fixed", "init_scale": NOISE},
        weight_prior=weight_prior,
        weight_prior_options={"scale": WEIGHT_SCALE} if weight_prior else None,
    )
    program = PointWeights(vae) if weight_prior else vae
    return vae, program


def hand_loss(vae, program, x, z, analytic):
    """-(log p(w) + mean_k (N/B) sum_i [log p(x_i|z_ik, w) + log p(z_ik) - log q(z_ik|x_i)])."""
    if vae.weight_sites:
        weights = program.point_weights()
        weight, bias = weights["decoder.out.weight"], weights["decoder.out.bias"]
        log_prior_w = Normal(0.0, WEIGHT_SCALE).log_prob(torch.cat([weight.flatten(), bias])).sum()
    else:
        weight, bias = vae.decoder.out.weight.detach(), vae.decoder.out.bias.detach()
        log_prior_w = torch.zeros(())
    loc, scale = (t.detach() for t in moments(vae.encoder(x)))
    log_lik = Normal(z @ weight.T + bias, NOISE).log_prob(x).sum(-1)  # (K, B)
    if analytic:
        kl = kl_divergence(Normal(loc, scale), Normal(0.0, 1.0)).sum(-1)
    else:
        kl = Normal(loc, scale).log_prob(z).sum(-1) - Normal(0.0, 1.0).log_prob(z).sum(-1)
    local = (NUM_DATA / x.shape[0]) * (log_lik - kl).sum(-1)  # one ELBO per particle
    return -(log_prior_w + local.mean())


@pytest.mark.parametrize("objective", ["elbo", "elbo-analytic-kl"])
@pytest.mark.parametrize("weight_prior", [None, "normal"])
def test_k_particle_loss_is_the_mean_of_one_particle_losses(objective, weight_prior):
    vae, program = linear_program(weight_prior)
    x = torch.randn(4, 6)
    kwargs = {"num_data": NUM_DATA, "indices": torch.arange(4)}
    with torch.no_grad():
        program.guide(x, **kwargs)  # lay out autoguide parameters before drawing
    pyro.set_rng_seed(5)
    loss = OBJECTIVES.build(objective, K).differentiable_loss(
        program.model, program.guide, x, **kwargs
    )
    pyro.set_rng_seed(5)  # the same draws, read from a trace of the guide
    guide_trace = poutine.trace(program.guide).get_trace(x, particles=K, **kwargs)
    z = guide_trace.nodes["z"]["value"].detach()
    assert z.shape == (K, 4, 2)
    for site in vae.weight_sites:  # drawn once: no particle dimension
        assert guide_trace.nodes[site]["value"].shape == vae.initial_weights[site].shape
    expected = hand_loss(vae, program, x, z, analytic=objective == "elbo-analytic-kl")
    assert_close(loss.detach(), expected, atol=1e-4, rtol=1e-6)


def test_one_particle_loss_is_unchanged_by_the_particle_plate():
    vae, program = linear_program("normal")
    x = torch.randn(4, 6)
    kwargs = {"num_data": NUM_DATA, "indices": torch.arange(4)}
    with torch.no_grad():
        program.guide(x, **kwargs)
    pyro.set_rng_seed(3)
    loss = OBJECTIVES.build("elbo", 1).differentiable_loss(
        program.model, program.guide, x, **kwargs
    )
    pyro.set_rng_seed(3)
    z = poutine.trace(program.guide).get_trace(x, **kwargs).nodes["z"]["value"].detach()
    assert_close(loss.detach(), hand_loss(vae, program, x, z[None], False), atol=1e-4)


def tiny_problem(weight_prior):
    torch.manual_seed(0)
    x = torch.randn(40, 6)
    return Problem(
        x,
        model=ModelSpec(latent_dim=2, hidden=(8,), likelihood="normal"),
        svi=SVIConfig(batch_size=20, epochs=2, particles=4),
        weight_prior=weight_prior,
        proposal_epochs=1,
    )


@pytest.mark.parametrize("method", ["vae", "bayes-decoder"])
def test_weight_prior_methods_train_with_four_particles(method):
    result = METHODS.build(method)(tiny_problem("normal"))
    assert result.history.epochs == 2
    assert all(torch.isfinite(torch.tensor(result.history.losses)))
    assert result.vae.weight_sites == ()  # a point decoder for the estimators


@pytest.mark.slow
def test_train_with_a_weight_prior_and_particles(tmp_path):
    out = tmp_path / "map"
    args = ["--weight-prior", "normal", "--particles", "4", "--quiet"]
    done = run_cli("train", *TINY, *args, "--out", str(out))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weight_prior"]["decoder_estimate"] == "max ELBO + log p(w)"
