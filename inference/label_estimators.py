"""Estimators for the discrete label y of the semi-supervised VAE, and its scores.

An unlabelled image's ELBO is U(x) = Σ_y q(y | x) L(x, y) + H[q(y | x)] (Kingma et al. 2014,
eq. 7). Each member of :data:`LABEL_ESTIMATORS` turns the guide's draw of y into an estimate of
U and of its gradient:

- ``enumerate``: the sum over y done exactly, by Pyro's parallel enumeration
  (``TraceEnum_ELBO`` with the guide under ``config_enumerate``): no variance from y.
- ``score-function``: one y drawn per particle and its gradient taken by the score-function
  (REINFORCE) term of ``TraceGraph_ELBO``: unbiased, with a variance enumeration does not have.
- ``relaxed``: y drawn from its Concrete relaxation, a reparameterised draw: low variance,
  biased by the temperature, exact as it falls to 0.

A labelled image's ELBO L(x, y) has no discrete latent; every estimator computes it the same way.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate
from pyro.poutine.messenger import Messenger
from pyro_vae.models import SemiSupervisedVAE
from torch.distributions import kl_divergence

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import Registry
from pyro_vae.core.validate import positive_int


@dataclass(frozen=True)
class LabelEstimator:
    """An objective with Pyro's ``differentiable_loss(model, guide, *args, **kwargs)`` (what
    :func:`~pyro_vae.inference.fit` takes as ``objective``), for the semi-supervised VAE.

    Args:
        name: Its name in :data:`LABEL_ESTIMATORS`.
        objective: ``objective(model, guide, args, kwargs)``: a tensor whose value estimates
            the negative ELBO and whose gradient is the estimator's.
        particles: Draws per image.
        unbiased: Whether the estimate and its gradient are unbiased for the ELBO's.
    """

    name: str
    objective: Callable[[Callable, Callable, tuple, dict], torch.Tensor]
    particles: int
    unbiased: bool = True

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        return self.objective(model, guide, args, kwargs)

    def loss(
        self, vae: SemiSupervisedVAE, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The negative ELBO of the rows of ``x`` (summed, differentiable); ``labels`` observe
        y where they are not ``UNLABELLED``."""
        return self.differentiable_loss(vae.model, vae.guide, x, labels)


#: Estimator name -> ``factory(particles=1, **options)`` returning a :class:`LabelEstimator`.
LABEL_ESTIMATORS: Registry[Callable[..., LabelEstimator]] = Registry("label estimator")


def _particles(particles: int) -> dict:
    positive_int("particles", particles)
    return {"num_particles": particles, "vectorize_particles": particles > 1}


@LABEL_ESTIMATORS.register("enumerate")
def enumerate_labels(particles: int = 1) -> LabelEstimator:
    """y summed out exactly: ``TraceEnum_ELBO`` with y enumerated in parallel."""
    elbo = TraceEnum_ELBO(max_plate_nesting=1, **_particles(particles))

    def objective(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        with warnings.catch_warnings():  # a minibatch of labelled images has no y to sum out
            warnings.filterwarnings("ignore", "TraceEnum_ELBO found no sample sites")
            return elbo.differentiable_loss(
                model, config_enumerate(guide, "parallel"), *args, **kwargs
            )

    return LabelEstimator("enumerate", objective, particles)


@LABEL_ESTIMATORS.register("score-function")
def score_function(particles: int = 1) -> LabelEstimator:
    """y drawn, its gradient by the score-function term of ``TraceGraph_ELBO`` (each image's
    score weighted by its own cost only, as the data plate allows)."""
    elbo = TraceGraph_ELBO(max_plate_nesting=1, **_particles(particles))

    def objective(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        # TraceGraph_ELBO gives the ELBO and the surrogate whose gradient is its estimator
        # (what its loss_and_grads differentiates); the result carries the value of the one
        # and the gradient of the other.
        value, surrogate = elbo._loss_and_surrogate_loss(model, guide, args, kwargs)
        return surrogate - surrogate.detach() - value.detach()

    return LabelEstimator("score-function", objective, particles)


class _RelaxedLabel(Messenger):
    """Turns the latent site ``y`` into a Concrete (``RelaxedOneHotCategorical``) draw of the
    same logits at ``temperature``, left out of the ELBO's log-densities (``mask`` False), and
    keeps the categorical it replaced (its logits and scale) for the exact KL term."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.replaced: dict | None = None

    def _pyro_sample(self, msg: dict) -> None:
        if msg["name"] != "y" or msg["is_observed"]:
            return
        self.replaced = {"logits": msg["fn"].logits, "scale": msg["scale"]}
        temperature = torch.tensor(self.temperature)
        # not validated: a cold draw rounds to exact 0s and 1s, and its density is unused
        msg["fn"] = dist.RelaxedOneHotCategorical(
            temperature, logits=msg["fn"].logits, validate_args=False
        )
        msg["mask"] = False


@LABEL_ESTIMATORS.register("relaxed")
def relaxed(particles: int = 1, temperature: float = 0.5) -> LabelEstimator:
    """y drawn from the Concrete relaxation of q(y | x) (Maddison et al. 2017; Jang et al.
    2017) at ``temperature``, so the gradient flows through the draw; the decoder and q(z|x,y)
    read the relaxed vector. The label's part of the ELBO, -KL(q(y|x) || p(y)), is the exact
    categorical one. As the temperature falls the objective tends to the enumerated ELBO; at
    test time y is discrete (``log_marginal`` sums it out, the classifier takes the argmax)."""
    if not 0 < temperature < math.inf:
        raise ConfigError(f"temperature must be a positive number, not {temperature}")
    elbo = Trace_ELBO(max_plate_nesting=1, **_particles(particles))

    def objective(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        in_guide, in_model = _RelaxedLabel(temperature), _RelaxedLabel(temperature)

        def relaxed_guide(*args: Any, **kwargs: Any) -> None:
            with in_guide:
                guide(*args, **kwargs)

        def relaxed_model(*args: Any, **kwargs: Any) -> None:
            with in_model:
                model(*args, **kwargs)
            if in_guide.replaced is None:  # only labelled images: no y was drawn
                return
            q_y = dist.Categorical(logits=in_guide.replaced["logits"])
            p_y = dist.Categorical(logits=in_model.replaced["logits"])
            scale = in_model.replaced["scale"]
            pyro.factor("label_kl", -scale * kl_divergence(q_y, p_y).sum(-1).sum())

        return elbo.differentiable_loss(relaxed_model, relaxed_guide, *args, **kwargs)

    return LabelEstimator("relaxed", objective, particles, unbiased=False)


def paper_classifier_weight(num_data: int) -> float:
    """α = 0.1 · N, N the number of training images, as Kingma et al. (2014) set it."""
    positive_int("num_data", num_data)
    return 0.1 * num_data


@torch.no_grad()
def log_marginal(vae: SemiSupervisedVAE, x: torch.Tensor, is_samples: int = 100) -> torch.Tensor:
    """log p(x) per row: y summed out exactly, log p(x | y) importance-sampled with K =
    ``is_samples`` draws from q(z | x, y) for every y."""
    positive_int("is_samples", is_samples)
    with pyro.settings.context(module_local_params=True):
        classes = torch.eye(vae.classes, dtype=x.dtype, device=x.device)
        y = classes[:, None, :].expand(vae.classes, len(x), vae.classes)  # (C, N, C)
        q = vae.latent_posterior(x, y)
        z = q.sample((is_samples,))  # (K, C, N, L)
        prior = dist.Normal(torch.zeros_like(z), 1.0).to_event(1)
        log_w = vae.likelihood(vae.decode(z, y)).log_prob(x) + prior.log_prob(z) - q.log_prob(z)
        log_x_given_y = torch.logsumexp(log_w, 0) - math.log(is_samples)  # (C, N)
        log_y = vae.label_prior(x).logits.T.log_softmax(0)  # log p(y), (C, N)
        return torch.logsumexp(log_y + log_x_given_y, 0)


@torch.no_grad()
def classification_error(vae: SemiSupervisedVAE, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose most probable class under q(y | x) is not their label."""
    with pyro.settings.context(module_local_params=True):
        predicted = vae.classifier_logits(x).argmax(-1)
    return (predicted != labels).double().mean().item()
