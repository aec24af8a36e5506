"""The SVI loop: it learns, resumes exactly, schedules beta, and refuses bad settings."""

import pytest
import torch
from pyro_vae.inference import OBJECTIVES, OPTIMIZERS, SVIConfig, evaluate, fit
from pyro_vae.inference.estimators import MAX_ELEMENTS, chunk_shape
from pyro_vae.models import build_vae

from pyro_vae.core.errors import ConfigError, UnknownNameError
from pyro_vae.data import BINARIZATIONS, load_dataset


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("mnist5k")
    return data.train_x[::8][:400], data.train_labels[::8][:400]


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fit_lowers_the_loss(digits, objective, optimizer):
    x, _ = digits
    vae = build_vae(784, 4, (32,))
    config = SVIConfig(
        objective=objective, optimizer=optimizer, particles=2, epochs=4, batch_size=50, lr=3e-3
    )
    result = fit(vae, x, config=config, binarization=BINARIZATIONS["dynamic"])
    assert result.epochs == 4 and len(result.epoch_seconds) == 4
    assert result.losses[-1] < result.losses[0] - 30  # starts near 544 nats (784 log 2)
    assert result.wall_time > 0


@pytest.mark.parametrize("loss", [{}, {"jit": True}, {"compile": True}], ids=str)
def test_resumed_fit_ends_where_an_uninterrupted_one_does(digits, loss):
    x, _ = digits
    config = SVIConfig(epochs=3, batch_size=64, **loss)

    def run(stop_after=None, state=None):
        torch.manual_seed(0)
        vae = build_vae(784, 3, (16,))
        saved = {}

        def keep(result, s):
            if stop_after is not None and result.epochs == stop_after:
                saved["state"] = s
                raise KeyboardInterrupt

        try:
            result = fit(
                vae,
                x,
                config=config,
                binarization=BINARIZATIONS["dynamic"],
                seed=5,
                state=state,
                on_epoch=keep,
            )
        except KeyboardInterrupt:
            return vae, None, saved["state"]
        return vae, result, None

    whole, whole_result, _ = run()
    _, _, state = run(stop_after=1)
    torch.manual_seed(123)  # whatever happened in between must not matter
    resumed, resumed_result, _ = run(state=state)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), (name, (a - b).abs().max().item())
    assert resumed_result.losses == whole_result.losses


def test_kl_warmup_is_linear_to_beta():
    config = SVIConfig(beta=0.5, warmup_epochs=2)
    weights = [config.kl_weight(step, steps_per_epoch=5) for step in range(12)]
    assert weights[0] == pytest.approx(0.05) and weights[9] == pytest.approx(0.5)
    assert weights[11] == 0.5
    assert all(a < b for a, b in zip(weights[:10], weights[1:10], strict=False))
    assert SVIConfig(beta=0.7).kl_weight(0, 5) == 0.7


def test_evaluation_bounds_are_ordered(digits):
    x, _ = digits
    vae = build_vae(784, 4, (32,))
    fit(vae, x, config=SVIConfig(epochs=2, batch_size=50), binarization=BINARIZATIONS["dynamic"])
    xb = torch.bernoulli(x[:50], generator=torch.Generator().manual_seed(0))
    result = evaluate(vae, xb, is_samples=200, batch_size=20, max_elements=20 * 784 * 30)
    # Jensen: the importance-sampled log p(x) estimate lies above the ELBO for every image.
    assert (result.log_likelihood >= result.elbo).all()
    assert (result.kl > 0).all()
    assert torch.allclose(result.reconstruction - result.kl, result.elbo)
    assert set(result.summary()) >= {"elbo", "nll", "kl", "reconstruction", "is_samples"}


@pytest.mark.parametrize(
    "num_data, is_samples, batch_size, expected",
    [
        (1000, 5000, None, (2, 5000)),  # 2**23 // (784 * 5000) datapoints with every draw
        (1000, 20000, None, (1, 10699)),  # K over the cap: one datapoint, particle chunks
        (1000, 100, None, (100, 100)),  # small K: at most 100 datapoints per chunk
        (7, 100, None, (7, 100)),
        (1000, 5000, 100, (100, 106)),  # a given batch size is kept
    ],
)
def test_chunks_keep_all_draws_of_few_datapoints_together(
    num_data, is_samples, batch_size, expected
):
    shape = chunk_shape(num_data, 784, is_samples, batch_size, max_elements=2**23)
    assert shape == expected
    assert shape[0] * shape[1] * 784 <= 2**23
    images, particles = chunk_shape(num_data, 784, is_samples, batch_size)  # the default cap
    assert images * particles * 784 <= MAX_ELEMENTS


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"objective": "kl"}, "elbo, elbo-analytic-kl"),
        ({"optimizer": "sgd"}, "adam, clipped-adam"),
        ({"lr": 0.0}, "lr must be a positive"),
        ({"lr": float("nan")}, "lr must be a positive"),
        ({"batch_size": -5}, "batch_size must be a positive integer"),
        ({"epochs": 2.5}, "epochs must be a positive integer"),
        ({"particles": 0}, "particles"),
        ({"beta": -1.0}, "beta must be a positive"),
        ({"beta": 0.0}, "beta must be a positive"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        SVIConfig(**settings)


def test_batch_larger_than_data_is_refused(digits):
    x, _ = digits
    with pytest.raises(ConfigError, match="exceeds the 400 training"):
        fit(build_vae(784, 2, (8,)), x, config=SVIConfig(batch_size=401))
