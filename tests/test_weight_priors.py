"""Decoder-weight priors: attached with PyroSample as global sites, exact densities, and the
MAP = penalised-likelihood correspondence."""

import math

import pyro
import pytest
import torch
from common import assert_close
from pyro import poutine
from pyro_vae.inference import SVIConfig
from pyro_vae.inference.methods import METHODS, ModelSpec, Problem
from pyro_vae.inference.programs import PointLatents, PointWeights
from pyro_vae.models import WEIGHT_PRIORS, build_vae

from pyro_vae.core.errors import ConfigError, UnknownNameError


def tiny_vae(weight_prior, **options):
    torch.manual_seed(0)
    return build_vae(
        6,
        2,
        (5,),
        likelihood="normal",
        weight_prior=weight_prior,
        weight_prior_options=options,
    )


@pytest.mark.parametrize("name", sorted(WEIGHT_PRIORS))
def test_every_decoder_tensor_becomes_a_global_site(name):
    vae = tiny_vae(name)
    expected = {f"decoder.{n}" for n, _ in build_vae(6, 2, (5,)).decoder.named_parameters()}
    assert set(vae.weight_sites) == expected
    x = torch.randn(4, 6)
    trace = poutine.trace(vae.model).get_trace(x, num_data=20, indices=torch.arange(4))
    trace.compute_log_prob()
    for site in vae.weight_sites:
        node = trace.nodes[site]
        assert node["cond_indep_stack"] == ()  # outside the data plate: counted once
        assert node["scale"] == 1.0
        assert node["value"].shape == vae.initial_weights[site].shape
        assert torch.isfinite(node["log_prob_sum"])
        if name == "flat":
            assert node["log_prob_sum"] == 0  # mask(False): an improper flat prior


def test_normal_and_laplace_densities_are_the_penalties():
    w = {"decoder.out.weight": torch.randn(6, 5)}
    for name, scale, penalty in (
        ("normal", 0.7, lambda v: (v**2).sum() / (2 * 0.7**2) + v.numel() * math.log(0.7)),
        ("laplace", 0.7, lambda v: v.abs().sum() / 0.7 + v.numel() * math.log(0.7)),
    ):
        vae = tiny_vae(name, scale=scale)
        conditioned = poutine.condition(vae.model, data=w)
        trace = poutine.trace(conditioned).get_trace(torch.randn(3, 6))
        site = trace.nodes["decoder.out.weight"]
        log_p = site["fn"].log_prob(site["value"])
        constant = {"normal": 0.5 * math.log(2 * math.pi), "laplace": math.log(2)}[name]
        expected = -penalty(w["decoder.out.weight"]) - 30 * constant
        assert_close(log_p.detach(), expected, atol=1e-4, msg=name)


def test_hierarchical_scales_are_learned():
    vae = tiny_vae("hierarchical", init_scale=0.5)
    assert_close(vae.weight_prior.scales.detach(), torch.full((4,), 0.5), atol=1e-6)
    program = PointWeights(vae)
    x = torch.randn(4, 6)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(program.model, program.guide, x)
    loss.backward()
    grad = vae.weight_prior.scales_unconstrained.grad
    assert grad is not None and (grad != 0).all()
    assert any(p is vae.weight_prior.scales_unconstrained for p in program.parameters())


def test_fix_weights_gives_a_plain_decoder():
    vae = tiny_vae("normal")
    values = {site: torch.full_like(v, 0.1) for site, v in vae.initial_weights.items()}
    with pytest.raises(ConfigError, match="call fix_weights"):
        vae.generate(2)
    vae.fix_weights(values)
    assert vae.weight_sites == ()
    assert_close(vae.decoder.out.weight.detach(), torch.full((6, 5), 0.1))
    assert {n for n, _ in vae.named_parameters() if n.startswith("decoder.")} == set(values)
    assert vae.generate(3).shape == (3, 6)


def test_unknown_weight_prior_lists_the_names():
    with pytest.raises(UnknownNameError, match="flat, hierarchical, laplace, normal"):
        tiny_vae("gaussian")
    with pytest.raises(ConfigError, match="does not take df; it takes: scale"):
        tiny_vae("normal", df=3)


def pairs_problem(x, scale=None, epochs=1, lr=0.01):
    return Problem(
        x,
        model=ModelSpec(latent_dim=2, hidden=(), likelihood="normal"),
        svi=SVIConfig(batch_size=len(x), epochs=epochs, lr=lr),
        weight_prior=None if scale is None else "normal",
        weight_prior_options={} if scale is None else {"scale": scale},
        proposal_epochs=1,
    )


def test_map_objective_is_mle_objective_plus_the_priors():
    # Same parameters, same minibatch: map-pairs' loss minus mle-pairs' loss must be exactly
    # -(N/B) sum_i log N(z_i; 0, I) - sum_w log N(w; 0, s); with both priors flat it is 0.
    x = torch.randn(30, 4)
    idx = torch.arange(5, 15)
    s = 0.8
    mle = PointLatents(pairs_problem(x).build("flat", flat_latent=True), x)
    map_ = PointLatents(pairs_problem(x, scale=s).build("normal"), x)
    map_.load_state_dict(mle.state_dict(), strict=False)  # the flat prior wraps its base
    kwargs = {"num_data": 30, "indices": idx}
    loss = {
        name: pyro.infer.Trace_ELBO().loss(p.model, p.guide, x[idx], **kwargs)
        for name, p in (("mle", mle), ("map", map_))
    }
    z = mle.latents()[idx]
    weights = torch.cat([w.flatten() for w in mle.point_weights().values()])
    log_prior_z = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum() * 30 / 10
    log_prior_w = torch.distributions.Normal(0.0, s).log_prob(weights).sum()
    assert_close(loss["map"] - loss["mle"], -(log_prior_z + log_prior_w), atol=1e-3)


def test_map_pairs_is_the_l2_penalised_optimum():
    # MAP under w ~ N(0, s) and z_i ~ N(0, I) is a stationary point of the penalised
    # likelihood  -sum_i log p(x_i | z_i, W, b) + |Z|^2 / 2 + (|W|^2 + |b|^2) / (2 s^2).
    torch.manual_seed(1)
    x = torch.randn(20, 4) @ torch.randn(4, 4)
    s = 0.5
    result = METHODS.build("map-pairs")(pairs_problem(x, scale=s, epochs=2000, lr=0.02))
    vae = result.vae
    program_z = result.program.latents()
    weight = vae.decoder.out.weight.detach().clone().requires_grad_()
    bias = vae.decoder.out.bias.detach().clone().requires_grad_()
    z = program_z.clone().requires_grad_()
    sigma = vae.likelihood.scale.detach()
    nll = -torch.distributions.Normal(z @ weight.T + bias, sigma).log_prob(x).sum()
    penalty = (z**2).sum() / 2 + ((weight**2).sum() + (bias**2).sum()) / (2 * s**2)
    grads = torch.autograd.grad(nll + penalty, [weight, bias, z])
    norm = torch.cat([g.flatten() for g in grads]).norm().item()
    # Tolerance: a gradient norm under 1e-2 where the data term alone is about 1e2.
    assert norm < 1e-2, norm
    assert weight.abs().max() < 3 * s  # visibly shrunk by the prior
