"""Under the class-conditional prior, log p(x) is the marginal log sum_y p(y) p(x|y), not
log p(x | y) at the true label; checked against exact Gaussian marginals of a linear model."""

import math

import pytest
import torch
from common import assert_close
from pyro_vae.inference import evaluate
from pyro_vae.models import build_vae, moments
from torch.distributions import MultivariateNormal

CLASSES, NOISE, OFFSET = 3, 0.5, 1.5


def linear_class_conditional_vae():
    torch.manual_seed(0)
    vae = build_vae(
        4,
        2,
        (),
        likelihood="normal",
        likelihood_options={"scale": "fixed", "init_scale": NOISE},
        prior="class-conditional",
        prior_options={"learned": False, "offset": OFFSET},
        num_classes=CLASSES,
    )
    with torch.no_grad():  # a broad proposal that covers every class's posterior
        vae.encoder.loc.weight.zero_()
        vae.encoder.loc.bias.zero_()
        vae.encoder.raw_scale.weight.zero_()
        vae.encoder.raw_scale.bias.fill_(2.5)
    return vae.double()


def exact_log_p_given_class(vae, x):
    """log N(x; W mu_y + b, W W^T + sigma^2 I) for every class: ``(classes, num_data)``."""
    weight = vae.decoder.out.weight.detach()
    bias = vae.decoder.out.bias.detach()
    cov = weight @ weight.T + NOISE**2 * torch.eye(4, dtype=torch.float64)
    means = vae.prior.means @ weight.T + bias  # (classes, 4)
    return torch.stack([MultivariateNormal(m, cov).log_prob(x) for m in means])


@pytest.mark.parametrize("labelled", [True, False])
def test_log_likelihood_is_the_marginal_over_classes(labelled):
    vae = linear_class_conditional_vae()
    labels = torch.tensor([0, 1, 2, 0, 1])
    x = exact = None
    with torch.no_grad():
        x = vae.model(None, labels)  # one image drawn from each label's p(x|y) params
        x = x + NOISE * torch.randn_like(x)
        exact = exact_log_p_given_class(vae, x)
    scores = evaluate(vae, x, labels if labelled else None, is_samples=400_000)
    marginal = torch.logsumexp(exact, dim=0) - math.log(CLASSES)  # uniform p(y), by hand
    # Tolerance: with K = 400,000 broad draws in 2-D the IS error is under 0.005 nats here.
    assert_close(scores.log_likelihood, marginal, atol=0.02)
    assert scores.label_classes == CLASSES
    assert scores.summary()["label_classes"] == CLASSES
    if labelled:
        given = exact[labels, torch.arange(len(labels))]
        assert_close(scores.log_likelihood_given_label, given, atol=0.02)
        assert scores.summary()["log_likelihood_given_label"] == pytest.approx(
            scores.log_likelihood_given_label.mean().item()
        )
        # two different quantities: here they differ by more than 0.1 nats for some image
        assert (scores.log_likelihood_given_label - scores.log_likelihood).abs().max() > 0.1
    else:
        assert scores.log_likelihood_given_label is None


def test_marginal_uses_the_same_draws_for_every_class():
    # With K = 1 the marginal log weight is log p(x|z) + log mean_y p(z|y) - log q(z|x) for
    # one z; recompute it by hand from the encoder's draw (same seed, same single draw).
    vae = linear_class_conditional_vae()
    x = torch.randn(3, 4, dtype=torch.float64)
    torch.manual_seed(7)
    scores = evaluate(vae, x, torch.tensor([0, 1, 2]), is_samples=1, keep_log_weights=True)
    torch.manual_seed(7)
    loc, scale = moments(vae.encoder(x))
    z = torch.distributions.Normal(loc, scale).sample()
    with torch.no_grad():
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        log_pz = torch.stack(
            [torch.distributions.Normal(m, 1.0).log_prob(z).sum(-1) for m in vae.prior.means]
        )
        log_px = torch.distributions.Normal(vae.decoder(z), NOISE).log_prob(x).sum(-1)
    expected = log_px + torch.logsumexp(log_pz, 0) - math.log(CLASSES) - log_q
    assert_close(scores.log_weights[:, 0].detach(), expected, atol=1e-8)
