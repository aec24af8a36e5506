"""Gradient estimators on pPCA, where the posterior is known: they change gradients, never the
loss; sticking the landing has zero variance at the exact posterior; DReG keeps IWAE's model
gradient, lowers the guide gradient's variance and keeps its signal-to-noise ratio as K grows."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from common import assert_close
from exact_ppca import linear_vae, ppca_truth, set_exact_posterior
from pyro_vae.inference import SVIConfig
from pyro_vae.inference.gradients import GRADIENTS
from pyro_vae.inference.iwae import ImportanceWeightedELBO
from pyro_vae.models import moments

from pyro_vae.core.errors import ConfigError

DRAWS = 200


def ppca_vae(small_ppca, spoil: bool):
    weight, mu, sigma = ppca_truth(small_ppca)
    if spoil:
        return set_exact_posterior(
            linear_vae(8, 2), weight, mu, sigma, scale_factor=1.6, loc_shift=0.3
        )
    return set_exact_posterior(linear_vae(8, 2), weight, mu, sigma)


def objective(name: str, gradient: str, k: int = 1):
    return SVIConfig(objective=name, gradient=gradient, particles=k).build_objective()


def loss_and_grads(vae, elbo, x, seed):
    """The loss and the gradients of encoder and decoder parameters, flattened, on the draws
    of ``seed``."""
    vae.zero_grad()
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(vae.model, vae.guide, x)
    loss.backward()

    def flat(module):
        return torch.cat([p.grad.flatten() for p in module.parameters()])

    return loss.detach(), flat(vae.encoder), flat(vae.decoder)


def gradient_draws(vae, elbo, x):
    """Encoder gradients over DRAWS independent draws, ``(DRAWS, parameters)``."""
    return torch.stack([loss_and_grads(vae, elbo, x, seed)[1] for seed in range(DRAWS)])


def test_every_estimator_leaves_the_loss_value_unchanged(small_ppca):
    vae, x = ppca_vae(small_ppca, spoil=True), small_ppca.train_x[:20].double()
    for name, gradient, k in (("elbo", "stl", 1), ("elbo", "stl", 3), ("iwae", "dreg", 5)):
        plain = loss_and_grads(vae, objective(name, "reparam", k), x, seed=7)[0]
        other = loss_and_grads(vae, objective(name, gradient, k), x, seed=7)[0]
        assert_close(other, plain, atol=1e-10, msg=f"{name} {gradient}")


def test_stl_has_zero_variance_at_the_exact_posterior_and_reparam_does_not(small_ppca):
    vae, x = ppca_vae(small_ppca, spoil=False), small_ppca.train_x[:20].double()
    stl = gradient_draws(vae, objective("elbo", "stl"), x)
    reparam = gradient_draws(vae, objective("elbo", "reparam"), x)
    # At q = p(z|x), log p(x, z) - log q(z) = log p(x) for every z: the path derivative is 0.
    assert stl.abs().max() < 1e-8
    assert reparam.var(0).sum() > 1.0  # the score term of log q: mean 0, variance not
    assert reparam.mean(0).abs().max() < 4 * (reparam.var(0).max() / DRAWS).sqrt()


def test_stl_is_unbiased_away_from_the_posterior(small_ppca):
    vae, x = ppca_vae(small_ppca, spoil=True), small_ppca.train_x[:20].double()
    stl = gradient_draws(vae, objective("elbo", "stl"), x)
    reparam = gradient_draws(vae, objective("elbo", "reparam"), x)
    difference = stl.mean(0) - reparam.mean(0)
    standard_error = ((stl.var(0) + reparam.var(0)) / DRAWS).sqrt()
    assert (difference.abs() <= 4 * standard_error + 1e-8).all()


def test_dreg_keeps_iwae_model_gradient_on_the_same_draws(small_ppca):
    vae, x = ppca_vae(small_ppca, spoil=True), small_ppca.train_x[:20].double()
    _, _, iwae_model = loss_and_grads(vae, objective("iwae", "reparam", 5), x, seed=3)
    _, _, dreg_model = loss_and_grads(vae, objective("iwae", "dreg", 5), x, seed=3)
    assert_close(dreg_model, iwae_model, atol=1e-9, rtol=1e-9)


def test_dreg_guide_gradient_is_the_hand_computed_formula(small_ppca):
    """sum_k w_k^2 d log w_k / d z_k d z_k / d phi, computed here directly for one image."""
    vae, x = ppca_vae(small_ppca, spoil=True), small_ppca.train_x[:1].double()
    k = 6
    _, dreg_encoder, _ = loss_and_grads(vae, objective("iwae", "dreg", k), x, seed=11)
    # the same draws by hand: z = loc + scale * eps, eps from the same generator state
    vae.zero_grad()
    pyro.set_rng_seed(11)
    loc, scale = moments(vae.encoder(x))
    z = dist.Normal(loc.expand(k, 1, 2), scale.expand(k, 1, 2)).rsample()
    q = dist.Normal(loc.detach(), scale.detach()).log_prob(z).sum(-1)
    prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    likelihood = vae.likelihood(vae.decoder(z)).log_prob(x).detach()  # the decoder is fixed
    mean = vae.decoder(z)
    sigma = vae.likelihood(mean).base_dist.scale.detach()
    log_lik = dist.Normal(mean, sigma).log_prob(x).sum(-1)
    assert_close(log_lik.detach(), likelihood, atol=1e-9)
    log_w = log_lik + prior - q  # (k, 1)
    w = torch.softmax(log_w.detach(), dim=0)
    (-(w**2 * log_w).sum()).backward()
    by_hand = torch.cat([p.grad.flatten() for p in vae.encoder.parameters()])
    assert_close(dreg_encoder, by_hand, atol=1e-9, rtol=1e-9)


def snr(draws: torch.Tensor) -> torch.Tensor:
    """|mean| / sd of each gradient component."""
    return draws.mean(0).abs() / draws.std(0)


def test_dreg_lowers_the_variance_and_keeps_the_signal_to_noise_ratio(small_ppca):
    vae, x = ppca_vae(small_ppca, spoil=True), small_ppca.train_x[:5].double()
    iwae = {k: gradient_draws(vae, objective("iwae", "reparam", k), x) for k in (5, 50)}
    dreg = {k: gradient_draws(vae, objective("iwae", "dreg", k), x) for k in (5, 50)}
    assert dreg[50].var(0).sum() < iwae[50].var(0).sum()
    # Rainforth et al. 2018: IWAE's guide SNR falls like 1/sqrt(K); DReG's does not
    iwae_fall = (snr(iwae[50]) / snr(iwae[5])).median()
    dreg_fall = (snr(dreg[50]) / snr(dreg[5])).median()
    assert iwae_fall < 0.7  # about sqrt(5 / 50) = 0.32 expected
    assert dreg_fall > 0.9


@pytest.mark.parametrize(
    ("objective_name", "gradient", "message"),
    [
        ("iwae", "stl", "for iwae use gradient dreg"),
        ("elbo-analytic-kl", "stl", "not from elbo-analytic-kl"),
        ("elbo", "dreg", "dreg is for the importance-weighted bound"),
        ("elbo", "score", "unknown gradient estimator 'score'; choose one of: dreg, reparam, stl"),
    ],
)
def test_a_gradient_the_objective_cannot_take_is_refused(objective_name, gradient, message):
    with pytest.raises(ConfigError, match=message):
        SVIConfig(objective=objective_name, gradient=gradient)


def test_the_registry_lists_every_estimator():
    assert sorted(GRADIENTS) == ["dreg", "reparam", "stl"]
    assert isinstance(objective("iwae", "dreg", 4), ImportanceWeightedELBO)


@pytest.mark.parametrize(("objective_name", "gradient"), [("elbo", "stl"), ("iwae", "dreg")])
def test_train_records_the_estimator_and_reloads(tmp_path, objective_name, gradient):
    from pyro_vae import TrainConfig, train
    from pyro_vae.runs import load_run

    config = TrainConfig(
        objective=objective_name,
        gradient=gradient,
        particles=3,
        epochs=1,
        hidden=(16,),
        latent_dim=2,
        batch_size=500,
        is_samples=5,
    )
    metrics = train(config, tmp_path / "run", progress=False)
    assert math.isfinite(metrics["test"]["log_likelihood"])
    assert load_run(tmp_path / "run").config.gradient == gradient
