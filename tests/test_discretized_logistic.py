"""The discretized logistic likelihood against independent computations."""

import pytest
import torch
from common import assert_close
from pyro_vae.inference import SVIConfig, fit
from pyro_vae.models import LIKELIHOODS, build_vae
from pyro_vae.models.likelihoods import DiscretizedLogistic

from pyro_vae.core.errors import DataError

LEVELS = torch.arange(256, dtype=torch.float64) / 255


def direct_probabilities(loc: float, scale: float) -> torch.Tensor:
    """P(k) from the logistic CDF at the bin edges on [-1, 1], edge bins open outwards."""
    y = 2 * LEVELS - 1
    upper = torch.sigmoid((y + 1 / 255 - loc) / scale)
    lower = torch.sigmoid((y - 1 / 255 - loc) / scale)
    upper[-1], lower[0] = 1.0, 0.0
    return upper - lower


@pytest.mark.parametrize(
    "loc, scale", [(0.0, 0.2), (-0.97, 0.01), (0.5, 2.0), (3.0, 0.05), (-0.3, 1e-3)]
)
def test_the_256_probabilities_sum_to_one_and_match_the_cdf(loc, scale):
    q = DiscretizedLogistic(torch.tensor(loc, dtype=torch.float64), scale)
    log_p = q.log_prob(LEVELS)
    assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-12)
    expected = direct_probabilities(loc, scale)
    assert_close(log_p.exp(), expected, atol=1e-14)
    kept = expected > 1e-6  # where the direct difference keeps ten digits, compare the logs
    assert_close(log_p[kept], expected[kept].log(), atol=1e-8)


def test_draws_follow_the_probabilities_and_the_mean():
    torch.manual_seed(0)
    q = DiscretizedLogistic(torch.tensor(0.1, dtype=torch.float64), 0.3)
    draws = q.sample((200_000,))
    counts = torch.bincount(torch.round(draws * 255).long(), minlength=256).double()
    assert (counts / len(draws) - q.log_prob(LEVELS).exp()).abs().max() < 0.003
    assert abs(draws.mean() - q.mean) < 0.003


def test_the_likelihood_takes_8_bit_data_only():
    likelihood = LIKELIHOODS.build("discretized-logistic", 4)
    likelihood.check_data(torch.tensor([[0.0, 1 / 255, 128 / 255, 1.0]]))
    with pytest.raises(DataError, match="8-bit data"):
        likelihood.check_data(torch.tensor([[0.0, 0.5, 0.2, 1.0]]))


def test_a_vae_with_it_trains_on_8_bit_images(digits_grey):
    vae = build_vae(784, 2, (16,), likelihood="discretized-logistic")
    history = fit(vae, digits_grey, config=SVIConfig(batch_size=50, epochs=2, lr=0.01))
    assert history.losses[-1] < history.losses[0]
    assert torch.isfinite(torch.tensor(history.losses)).all()
    with torch.no_grad():
        picture = vae.reconstruct(digits_grey[:3])
    assert picture.shape == (3, 784) and (picture >= 0).all() and (picture <= 1).all()


@pytest.fixture
def digits_grey():
    from pyro_vae.data import load_dataset

    return load_dataset("mnist5k").train_x[:200]
