"""DiagonalNormalMixture against torch's MixtureSameFamily: densities, gradients, samples."""

import pyro.distributions as dist
import pytest
import torch
from common import assert_close
from pyro_vae.models.mixtures import DiagonalNormalMixture


def parameters(components: int, dim: int, dtype: torch.dtype = torch.float64):
    """Spread-out means and scales from 0.02 to 4 (a wide range makes the expansion work)."""
    logits = torch.randn(components, dtype=dtype, requires_grad=True)
    locs = (3 * torch.randn(components, dim, dtype=dtype)).requires_grad_()
    scales = torch.exp(torch.empty(components, dim, dtype=dtype).uniform_(-4, 1.4))
    return logits, locs, scales.requires_grad_()


def reference(logits, locs, scales) -> dist.MixtureSameFamily:
    parts = dist.Normal(locs, scales).to_event(1)
    return dist.MixtureSameFamily(dist.Categorical(logits=logits), parts)


def test_log_prob_and_gradients_match_mixture_same_family_in_float64():
    logits, locs, scales = parameters(30, 5)
    # points near the components and far from all of them
    z = torch.cat([reference(logits, locs, scales).sample((200,)), 10 * torch.randn(50, 5)])
    ours = DiagonalNormalMixture(logits, locs, scales).log_prob(z)
    theirs = reference(logits, locs, scales).log_prob(z)
    assert_close(ours, theirs, atol=1e-9)
    ours_grads = torch.autograd.grad(ours.sum(), (logits, locs, scales))
    theirs_grads = torch.autograd.grad(theirs.sum(), (logits, locs, scales))
    for mine, expected in zip(ours_grads, theirs_grads, strict=True):
        assert_close(mine, expected, atol=1e-7, rtol=1e-7)


def test_float32_error_is_small_for_points_drawn_from_the_mixture():
    # the expanded square cancels (in float32 this case lost 0.13 nats); with the product in
    # float64, float32 inputs drawn from the mixture itself (what a VampPrior meets: guide draws
    # near the pseudo-inputs' posteriors) stay within 1e-4 nats of float64, scales down to 0.02
    logits, locs, scales = (t.detach() for t in parameters(500, 40))
    z = reference(logits, locs, scales).sample((2000,))
    exact = reference(logits, locs, scales).log_prob(z)
    single = DiagonalNormalMixture(logits.float(), locs.float(), scales.float()).log_prob(z.float())
    assert (single.double() - exact).abs().max() < 1e-4


@pytest.mark.parametrize("batch_shape", [(), (4,), (3, 4)])
def test_shapes_follow_expand_and_sample_shape(batch_shape):
    logits, locs, scales = (t.detach() for t in parameters(6, 3, torch.float32))
    mixture = DiagonalNormalMixture(logits, locs, scales).expand(batch_shape)
    assert mixture.batch_shape == batch_shape and mixture.event_shape == (3,)
    z = mixture.sample((2,))
    assert z.shape == (2, *batch_shape, 3) and z.dtype == torch.float32
    assert mixture.log_prob(z).shape == (2, *batch_shape)
    assert mixture.log_prob(torch.zeros(5, *batch_shape, 3)).shape == (5, *batch_shape)


def test_samples_have_the_mixture_mean_and_variance():
    logits, locs, scales = (t.detach() for t in parameters(4, 2))
    weights = logits.softmax(0)[:, None]
    mean = (weights * locs).sum(0)
    variance = (weights * (scales**2 + locs**2)).sum(0) - mean**2
    z = DiagonalNormalMixture(logits, locs, scales).sample((200_000,))
    # 200,000 draws: standard error of the mean sqrt(variance / 2e5), of the variance below 1 %
    assert_close(z.mean(0), mean, atol=5 * (variance / 2e5).sqrt().max().item())
    assert_close(z.var(0), variance, rtol=0.03)


def test_bad_shapes_and_values_are_refused():
    logits, locs, scales = (t.detach() for t in parameters(3, 2))
    with pytest.raises(ValueError, match="expected logits"):
        DiagonalNormalMixture(logits[:2], locs, scales)
    with pytest.raises(ValueError):
        DiagonalNormalMixture(logits, locs, -scales, validate_args=True)
