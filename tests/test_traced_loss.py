"""The traced (jit=True) loss: the same objective as eager Pyro, for every objective and prior."""

import json

import pytest
import torch
from common import SMALL_PRIOR_OPTIONS, TINY, assert_close
from pyro_vae.inference import OBJECTIVES, SVIConfig, evaluate, fit, log_importance_weights
from pyro_vae.inference.traced_loss import TracedLoss
from pyro_vae.models import PRIORS, build_vae

from pyro_vae.cli import main
from pyro_vae.errors import ConfigError

N, BATCH = 40, 8


def loss_and_grads(vae, fn, seed):
    torch.manual_seed(seed)
    vae.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    return loss.detach(), {
        n: p.grad.clone() for n, p in vae.named_parameters() if p.grad is not None
    }


def compare(vae, x, labels, objective, particles=2):
    elbo = OBJECTIVES.build(objective, particles)
    idx = torch.arange(BATCH)
    traced = TracedLoss(elbo, vae, num_data=N)
    traced(x, labels, idx, 0.3)  # traces (with another beta than the one compared)

    def eager():
        return elbo.differentiable_loss(
            vae.model, vae.guide, x, labels, num_data=N, indices=idx, beta=0.7
        )

    loss, grads = loss_and_grads(vae, eager, seed=1)
    traced_loss, traced_grads = loss_and_grads(vae, lambda: traced(x, labels, idx, 0.7), seed=1)
    assert_close(traced_loss, loss, rtol=1e-5, msg="loss")
    assert grads.keys() == traced_grads.keys() and grads
    for name in grads:
        assert_close(traced_grads[name], grads[name], atol=1e-4, rtol=1e-4, msg=name)
    other = traced(x, labels, idx, 0.7)
    assert other.item() != traced_loss.item()  # each call draws afresh


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_traced_loss_and_gradients_equal_eager_pyro_with_the_same_draws(objective):
    x = torch.bernoulli(torch.full((BATCH, 6), 0.4))
    compare(build_vae(6, 2, (8,)), x, None, objective)


@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_traced_loss_equals_eager_for_every_prior(prior):
    x = torch.bernoulli(torch.full((N, 6), 0.4))
    vae = build_vae(
        6, 2, (8,), prior=prior, prior_options=SMALL_PRIOR_OPTIONS.get(prior), data=x, num_classes=4
    )
    compare(vae, x[:BATCH], torch.arange(BATCH) % 4, "elbo")


def test_jit_fit_learns_like_the_eager_fit():
    x = torch.bernoulli(torch.full((N, 6), 0.3))
    losses = {}
    for jit in (False, True):
        torch.manual_seed(0)
        vae = build_vae(6, 2, (8,))
        config = SVIConfig(batch_size=16, epochs=30, lr=0.01, jit=jit)  # 40 = 16 + 16 + 8
        losses[jit] = fit(vae, x, config=config, seed=0).losses
    assert losses[True][-1] < losses[True][0] - 0.5
    # same seed, same draws: the two fits follow the same path up to float rounding
    assert_close(losses[True], losses[False], atol=1e-3)


def test_jit_must_be_a_bool():
    with pytest.raises(ConfigError, match="jit"):
        SVIConfig(jit="yes")


def test_cli_jit_flag_is_recorded_and_may_change_on_resume(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--jit", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["jit"] is True
    resumed = ["train", "--resume", "--out", str(out), "--epochs", "2", "--no-jit", "--quiet"]
    assert main(resumed) == 0
    assert json.loads((out / "config.json").read_text())["jit"] is False
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_traced_evaluation_equals_eager_for_every_prior(prior):
    x = torch.bernoulli(torch.full((N, 6), 0.4))
    labels = torch.arange(N) % 4
    vae = build_vae(
        6, 2, (8,), prior=prior, prior_options=SMALL_PRIOR_OPTIONS.get(prior), data=x, num_classes=4
    )
    # 3 datapoints and 7 particles per chunk: ragged last chunks of both kinds get traced too
    settings = {"num_samples": 30, "batch_size": 3, "max_elements": 3 * 6 * 7}
    results = []
    for jit in (False, True):
        torch.manual_seed(5)
        results.append(evaluate(vae, x, labels, keep_log_weights=True, jit=jit, **settings))
    eager, traced = results
    assert_close(traced.log_weights, eager.log_weights, atol=1e-5, msg="same draws, same weights")
    assert_close(traced.log_likelihood, eager.log_likelihood, atol=1e-5)


def test_traced_evaluation_draws_afresh_for_each_chunk():
    x = torch.bernoulli(torch.full((4, 6), 0.4))
    vae = build_vae(6, 2, (8,))
    kept = log_importance_weights(vae, x, num_samples=12, max_elements=4 * 6 * 3, jit=True)
    # four chunks of 3 particles replay one trace; every weight is a new draw
    assert kept.shape == (4, 12) and kept.unique().numel() == 48
