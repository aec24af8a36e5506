"""The traced (jit=True) and compiled (compile=True) losses: the same objective as eager Pyro,
on the same draws, for every objective and prior."""

import json

import pytest
import torch
from common import SMALL_PRIOR_OPTIONS, TINY, assert_close, run_cli
from pyro_vae.inference import OBJECTIVES, SVIConfig, evaluate, fit, log_importance_weights
from pyro_vae.inference.compiled_loss import CompiledLoss
from pyro_vae.inference.traced_loss import TracedLoss
from pyro_vae.models import PRIORS, build_vae

from pyro_vae.cli import main
from pyro_vae.core.errors import ConfigError

N, BATCH = 40, 8
#: The two ways of recording the loss once; each must equal eager Pyro.
RECORDED = {"jit": TracedLoss, "compile": CompiledLoss}


def loss_and_grads(vae, fn, seed):
    torch.manual_seed(seed)
    vae.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    return loss.detach(), {
        n: p.grad.clone() for n, p in vae.named_parameters() if p.grad is not None
    }


def compare(recorded, vae, x, labels, objective, particles=2):
    elbo = OBJECTIVES.build(objective, particles)
    idx = torch.arange(BATCH)
    traced = RECORDED[recorded](elbo, vae, num_data=N)
    traced(x, labels, idx, 0.3)  # records (with another beta than the one compared)

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


@pytest.mark.parametrize("recorded", sorted(RECORDED))
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_recorded_loss_and_gradients_equal_eager_pyro_with_the_same_draws(objective, recorded):
    x = torch.bernoulli(torch.full((BATCH, 6), 0.4))
    compare(recorded, build_vae(6, 2, (8,)), x, None, objective)


@pytest.mark.parametrize("recorded", sorted(RECORDED))
@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_recorded_loss_equals_eager_for_every_prior(prior, recorded):
    x = torch.bernoulli(torch.full((N, 6), 0.4))
    vae = build_vae(
        6, 2, (8,), prior=prior, prior_options=SMALL_PRIOR_OPTIONS.get(prior), data=x, num_classes=4
    )
    labels = torch.arange(BATCH) % 4
    if (prior, recorded) == ("flow", "compile"):
        # Pyro's autoregressive inverse indexes with a tensor's value: no graph capture
        with pytest.raises(ConfigError, match="cannot be captured for compile=True"):
            compare(recorded, vae, x[:BATCH], labels, "elbo")
        return
    compare(recorded, vae, x[:BATCH], labels, "elbo")


@pytest.mark.parametrize("recorded", sorted(RECORDED))
def test_recorded_fit_learns_like_the_eager_fit(recorded):
    x = torch.bernoulli(torch.full((N, 6), 0.3))
    losses = {}
    for setting in (None, recorded):
        torch.manual_seed(0)
        vae = build_vae(6, 2, (8,))
        options = {} if setting is None else {setting: True}
        config = SVIConfig(batch_size=16, epochs=30, lr=0.01, **options)  # 40 = 16 + 16 + 8
        losses[setting] = fit(vae, x, config=config, seed=0).losses
    assert losses[recorded][-1] < losses[recorded][0] - 0.5
    # same seed, same draws: the two fits follow the same path up to float rounding
    assert_close(losses[recorded], losses[None], atol=1e-3)


@pytest.mark.parametrize("setting", sorted(RECORDED))
def test_jit_and_compile_must_be_bools(setting):
    with pytest.raises(ConfigError, match=setting):
        SVIConfig(**{setting: "yes"})


def test_jit_and_compile_exclude_each_other():
    with pytest.raises(ConfigError, match="one of jit .* and compile"):
        SVIConfig(jit=True, compile=True)
    with pytest.raises(ConfigError, match="one of jit .* and compile"):
        evaluate(build_vae(6, 2, (8,)), torch.zeros(3, 6), jit=True, compile=True)


@pytest.mark.parametrize("setting", sorted(RECORDED))
def test_cli_flag_is_recorded_and_may_change_on_resume(tmp_path, setting):
    out = tmp_path / "run"
    first = ["train", *TINY, "--epochs", "1", f"--{setting}", "--out", str(out), "--quiet"]
    assert main(first) == 0
    assert json.loads((out / "config.json").read_text())[setting] is True
    resumed = ["train", "--resume", "--out", str(out), "--epochs", "2", f"--no-{setting}"]
    assert main([*resumed, "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())[setting] is False
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_cli_refuses_jit_with_compile_in_one_line(tmp_path):
    result = run_cli("train", *TINY, "--jit", "--compile", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "compile" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recorded", sorted(RECORDED))
@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_recorded_evaluation_equals_eager_for_every_prior(prior, recorded):
    x = torch.bernoulli(torch.full((N, 6), 0.4))
    labels = torch.arange(N) % 4
    vae = build_vae(
        6, 2, (8,), prior=prior, prior_options=SMALL_PRIOR_OPTIONS.get(prior), data=x, num_classes=4
    )
    # jit: 3 datapoints and 7 particles per chunk, so ragged last chunks of both kinds get
    # traced too; compile: one chunk shape (each shape costs seconds of compiling), 10 x 3 chunks
    settings = {"is_samples": 30, "batch_size": 3, "max_elements": 3 * 6 * 7}
    if recorded == "compile":
        settings = {"is_samples": 30, "batch_size": 4, "max_elements": 4 * 6 * 10}
    if (prior, recorded) == ("flow", "compile"):
        with pytest.raises(ConfigError, match="cannot be captured for compile=True"):
            evaluate(vae, x, labels, compile=True, **settings)
        return
    results = []
    for options in ({}, {recorded: True}):
        torch.manual_seed(5)
        results.append(evaluate(vae, x, labels, keep_log_weights=True, **options, **settings))
    eager, traced = results
    assert_close(traced.log_weights, eager.log_weights, atol=1e-5, msg="same draws, same weights")
    assert_close(traced.log_likelihood, eager.log_likelihood, atol=1e-5)


@pytest.mark.parametrize("recorded", sorted(RECORDED))
def test_recorded_evaluation_draws_afresh_for_each_chunk(recorded):
    x = torch.bernoulli(torch.full((4, 6), 0.4))
    vae = build_vae(6, 2, (8,))
    settings = {"is_samples": 12, "max_elements": 4 * 6 * 5, recorded: True}
    kept = log_importance_weights(vae, x, **settings)
    # chunks of 5, 5 and 2 particles: two replay one recording, the ragged last one another;
    # every weight is a new draw
    assert kept.shape == (4, 12) and kept.unique().numel() == 48
