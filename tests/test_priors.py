"""Every registered latent prior: shapes, normalisation, gradients, learning, and the specifics
of VampPrior, class-conditional and analytic KL."""

import math

import pyro.distributions as dist
import pytest
import torch
from common import SMALL_PRIOR_OPTIONS, TINY, build_prior, prior_context
from pyro_vae.inference import OBJECTIVES, SVIConfig, fit
from pyro_vae.inference.methods import ModelSpec, Problem
from pyro_vae.models import PRIORS, build_vae, moments
from torch.distributions import kl_divergence

from pyro_vae.cli import main
from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.data import BINARIZATIONS, load_dataset

ALL = sorted(PRIORS)
LABELS = torch.arange(5) % 4


@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_and_finite_log_prob(name):
    d = build_prior(name)(5, LABELS)
    z = d.sample()
    assert d.batch_shape == (5,) and d.event_shape == (2,)
    assert z.shape == (5, 2) and z.dtype == torch.float32
    assert torch.isfinite(d.log_prob(z)).all()
    assert d.log_prob(torch.zeros(3, 5, 2)).shape == (3, 5)


@pytest.mark.parametrize("name", ALL)
def test_density_integrates_to_one(name):
    # Monte Carlo integral of p(z) over R^2 with a Cauchy proposal (heavier tails than every
    # prior): E_q[p(z)/q(z)] = 1. With 400,000 draws the standard error is below 1 %.
    torch.manual_seed(0)
    prior = build_prior(name)(1, torch.tensor([1]))
    proposal = dist.StudentT(1.0, torch.zeros(2), 4 * torch.ones(2)).to_event(1)
    z = proposal.sample((400_000,)).unsqueeze(1)
    with torch.no_grad():
        ratio = (prior.log_prob(z).squeeze(1) - proposal.log_prob(z.squeeze(1))).exp()
    stderr = (ratio.std() / math.sqrt(len(ratio))).item()
    assert abs(ratio.mean().item() - 1) < max(0.03, 4 * stderr), (ratio.mean(), stderr)


@pytest.mark.parametrize("name", ALL)
def test_learnable_parameters_reach_the_optimiser_with_gradients(name):
    x = torch.bernoulli(torch.rand(8, 6))
    vae = build_vae(
        6, 2, (8,), prior=name, prior_options=SMALL_PRIOR_OPTIONS.get(name), data=x, num_classes=4
    )
    own = dict(vae.prior.named_parameters())
    loss = OBJECTIVES["elbo"](particles=4).differentiable_loss(
        vae.model, vae.guide, x, torch.arange(8) % 4
    )
    loss.backward()
    in_vae = {id(p) for p in vae.parameters()}
    for pname, param in own.items():
        assert id(param) in in_vae, pname
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("mnist5k")
    return data.train_x[::10][:300], data.train_labels[::10][:300]


@pytest.mark.parametrize("name", ALL)
def test_a_few_svi_steps_lower_the_loss(digits, name):
    x, y = digits
    vae = build_vae(
        784,
        2,
        (32,),
        prior=name,
        prior_options=SMALL_PRIOR_OPTIONS.get(name),
        data=x,
        num_classes=10,
    )
    result = fit(
        vae,
        x,
        y,
        config=SVIConfig(epochs=3, batch_size=50, lr=3e-3),
        binarization=BINARIZATIONS["dynamic"],
    )
    assert result.losses[-1] < result.losses[0] - 20, result.losses


def test_vamp_prior_is_the_mixture_of_encoder_posteriors_at_the_pseudo_inputs():
    prior = build_prior("vamp", components=5)
    z = torch.randn(7, 2)
    with torch.no_grad():
        loc, scale = moments(prior.encoder(prior.pseudo_inputs))
        parts = dist.Normal(loc, scale).to_event(1).log_prob(z[:, None, :])  # (7, 5)
        expected = torch.logsumexp(parts, dim=1) - math.log(5)
        assert torch.allclose(prior(7).log_prob(z), expected, atol=1e-5)


def test_vamp_pseudo_inputs_follow_the_run_seed():
    # The initial pseudo-inputs are training images picked with the run's seed, so seeds in
    # compare differ in them too; the same seed picks the same images.
    x = torch.arange(40.0)[:, None].repeat(1, 6) / 40

    def picked(seed):
        model = ModelSpec(latent_dim=2, hidden=(8,), prior="vamp", prior_options={"components": 10})
        problem = Problem(x, model=model, seed=seed)
        inputs = problem.build(None).prior.pseudo_inputs.detach()
        return sorted((inputs[:, 0] * 40).round().long().tolist())

    assert picked(0) == picked(0)
    assert picked(0) != picked(1)
    assert len(set(picked(1))) == 10  # ten distinct training images


def test_class_conditional_samples_separate_by_class():
    prior = build_prior("class-conditional", learned=False)
    labels = torch.arange(4).repeat_interleave(500)
    z = prior(len(labels), labels).sample()
    centres = torch.stack([z[labels == c].mean(0) for c in range(4)])
    assert torch.allclose(centres, prior.means, atol=0.15)
    nearest = torch.cdist(z, prior.means).argmin(1)
    assert (nearest == labels).float().mean() > 0.9


def test_class_conditional_fixed_means_are_distinct_for_many_classes():
    prior = PRIORS.build("class-conditional", 2, prior_context(num_classes=10), learned=False)
    gaps = torch.cdist(prior.means, prior.means) + 1e9 * torch.eye(10)
    assert gaps.min() >= 3.0 - 1e-6  # every pair of means at least `offset` apart


def test_class_conditional_needs_labels():
    with pytest.raises(DataError, match="labelled data"):
        PRIORS.build("class-conditional", 2, None)
    with pytest.raises(DataError, match="needs labels"):
        build_prior("class-conditional")(3)


@pytest.mark.parametrize("name", ALL)
def test_analytic_kl_flag_is_true_exactly_when_torch_has_a_closed_form(name):
    prior = build_prior(name)(5, LABELS)
    guide = dist.Normal(torch.randn(5, 2), torch.rand(5, 2) + 0.5).to_event(1)
    if PRIORS[name].analytic_kl:
        # the closed form agrees with the Monte Carlo estimate in expectation
        exact = kl_divergence(guide, prior)
        z = guide.sample((100_000,))
        mc = (guide.log_prob(z) - prior.log_prob(z)).mean(0)
        assert torch.allclose(mc, exact, atol=0.03), (mc, exact)
    else:
        with pytest.raises(NotImplementedError):
            kl_divergence(guide, prior)


def test_prior_options_are_checked():
    with pytest.raises(ConfigError, match="does not take dof; it takes: df"):
        build_prior("student-t", dof=3)
    with pytest.raises(ConfigError, match="components"):
        build_prior("mog", components=0)
    with pytest.raises(ConfigError, match="exceed the 30 training"):
        build_prior("vamp", components=31)


def test_cli_takes_prior_options_and_refuses_unlabelled_class_conditional(capsys, tmp_path):
    tiny = ["train", *TINY]
    assert (
        main(
            [
                *tiny,
                "--prior",
                "class-conditional",
                "--prior-options",
                "learned=false",
                "--out",
                str(tmp_path / "cc"),
            ]
        )
        == 0
    )
    assert (tmp_path / "cc" / "samples.png").is_file()
    code = main(
        [
            *tiny,
            "--dataset",
            "ppca",
            "--binarization",
            "none",
            "--likelihood",
            "normal",
            "--prior",
            "class-conditional",
            "--out",
            str(tmp_path / "no"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "labelled data" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "no").exists()
