"""The semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014), their model "M2".

Model: y ~ Cat(π) (π uniform), z ~ N(0, I), x ~ p(x | y, z), the decoder reading (z, one-hot y).
Guide: q(y | x), a classifier, then q(z | x, y), a diagonal Gaussian whose network reads x and
one-hot y. A labelled image observes y in the model and the guide draws only z; an unlabelled
image leaves y latent and the guide draws it; the estimator decides what becomes of that draw
(:data:`pyro_vae.inference.LABEL_ESTIMATORS`: summed out exactly by ``TraceEnum_ELBO``, or
scored by ``TraceGraph_ELBO``'s score-function term). Under enumeration y takes a new batch
dimension at the left of every tensor; every network here runs on x once and broadcasts over
it.

Networks come from :data:`~pyro_vae.models.NETWORKS` (the decoder built for a latent of
``latent_dim + classes``), likelihoods from :data:`~pyro_vae.models.LIKELIHOODS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, pyro_method
from torch import nn
from torch.nn.functional import one_hot, softplus

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import nonnegative_float, positive_int

from .likelihoods import LIKELIHOODS
from .networks import NETWORKS
from .vae import local_params

#: Smallest scale q(z | x, y) can reach.
MIN_SCALE = 1e-4
#: The label of an unlabelled image.
UNLABELLED = -1


class SemiSupervisedVAE(PyroModule):
    """M2: p(y) p(z) p(x | y, z) with q(y | x) q(z | x, y).

    Args:
        data_dim: Features per datapoint.
        classes: Values of y (at least 2).
        latent_dim: Size of z.
        image_shape: ``(H, W)`` or ``(C, H, W)`` for a network that reads images.
        network: A :data:`~pyro_vae.models.NETWORKS` name; the encoder and the classifier each
            get its body, the decoder reads ``(z, one-hot y)``.
        network_options: The network's options (``hidden`` for ``mlp``).
        likelihood: A :data:`~pyro_vae.models.LIKELIHOODS` name.
        likelihood_options: Its options.
        classifier_weight: α of the term α Σ log q(y | x) over labelled images that Kingma et
            al. (2014, eq. 9) add to the ELBO, which alone does not train q(y | x) on them;
            they set α = 0.1 N (``paper_classifier_weight`` in
            :mod:`pyro_vae.inference.label_estimators`).
    """

    def __init__(
        self,
        data_dim: int,
        classes: int,
        latent_dim: int,
        *,
        image_shape: Sequence[int] | None = None,
        network: str = "mlp",
        network_options: dict[str, Any] | None = None,
        likelihood: str = "bernoulli",
        likelihood_options: dict[str, Any] | None = None,
        classifier_weight: float = 0.0,
    ) -> None:
        positive_int("latent_dim", latent_dim)
        nonnegative_float("classifier_weight", classifier_weight)
        positive_int("classes", classes)
        if classes < 2:
            raise ConfigError(f"the semi-supervised VAE needs at least 2 classes, not {classes}")
        options = dict(network_options or {})
        with pyro.settings.context(module_local_params=True):
            super().__init__()
            generative = NETWORKS.build(
                network, data_dim, image_shape, latent_dim + classes, **options
            )
            recognition = NETWORKS.build(network, data_dim, image_shape, latent_dim, **options)
            labelling = NETWORKS.build(network, data_dim, image_shape, latent_dim, **options)
        self.classes, self.latent_dim = classes, latent_dim
        self.classifier_weight = float(classifier_weight)
        self.decoder = generative.decoder
        self.encoder_body = recognition.body
        self.encoder_head = nn.Linear(recognition.width + classes, 2 * latent_dim)
        self.classifier_body = labelling.body
        self.classifier_head = nn.Linear(labelling.width, classes)
        self.likelihood = LIKELIHOODS.build(likelihood, data_dim, **(likelihood_options or {}))

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels ``0 .. classes - 1`` as one-hot rows of the data's floating type."""
        return one_hot(labels, self.classes).to(torch.get_default_dtype())

    def classifier_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | x), shape ``(len(x), classes)``."""
        return self.classifier_head(self.classifier_body(x))

    def latent_posterior(self, x: torch.Tensor, y: torch.Tensor) -> dist.Normal:
        """q(z | x, y) (event dim 1) for one-hot ``y`` whose batch shape broadcasts with
        ``(len(x),)`` (an enumerated y has shape ``(classes, 1, classes)``): the body runs on x
        once and its features broadcast with y."""
        features = self.encoder_body(x)
        shape = torch.broadcast_shapes(features.shape[:-1], y.shape[:-1])
        both = [features.expand(*shape, features.shape[-1]), y.expand(*shape, y.shape[-1])]
        loc, raw = self.encoder_head(torch.cat(both, -1)).chunk(2, -1)
        return dist.Normal(loc, softplus(raw) + MIN_SCALE).to_event(1)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The decoder's output for latent ``z`` and one-hot ``y`` (broadcast together)."""
        shape = torch.broadcast_shapes(z.shape[:-1], y.shape[:-1])
        z = z.expand(*shape, z.shape[-1])
        return self.decoder(torch.cat([z, y.expand(*shape, y.shape[-1])], -1))

    def label_prior(self, x: torch.Tensor) -> dist.OneHotCategorical:
        """p(y) for each row of ``x``: uniform over the classes."""
        return dist.OneHotCategorical(logits=x.new_zeros(x.shape[0], self.classes))

    def _known(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Which rows of ``x`` carry a label (``labels`` is :data:`UNLABELLED` elsewhere)."""
        if labels is None:
            return torch.zeros(len(x), dtype=torch.bool, device=x.device)
        if labels.shape != (len(x),):
            raise ConfigError(f"labels of shape {tuple(labels.shape)} for {len(x)} datapoints")
        if ((labels < UNLABELLED) | (labels >= self.classes)).any():
            raise ConfigError(
                f"labels must be 0 to {self.classes - 1}, or {UNLABELLED} for an unlabelled image"
            )
        return labels != UNLABELLED

    @local_params
    @pyro_method
    def model(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
        beta: float = 1.0,
    ) -> None:
        """p(y) p(z) p(x | y, z) for every row of ``x``: ``labels`` observe y where they are
        not :data:`UNLABELLED`, and add the classifier term ``classifier_weight ·
        log q(y | x)`` there. A minibatch of a data set of ``num_data`` rows is scaled up to
        it; ``beta`` weights the z terms."""
        known = self._known(x, labels)
        with poutine.scale(scale=1.0 if num_data is None else num_data / len(x)):
            if known.any():
                rows, observed = x[known], labels[known]
                with pyro.plate("labelled", len(rows), dim=-1):
                    self._generate(rows, self.one_hot(observed), "_labelled", beta)
                    if self.classifier_weight:
                        q_y = dist.Categorical(logits=self.classifier_logits(rows))
                        pyro.factor("classifier", self.classifier_weight * q_y.log_prob(observed))
            if not known.all():
                with pyro.plate("unlabelled", int((~known).sum()), dim=-1):
                    self._generate(x[~known], None, "", beta)

    def _generate(self, x: torch.Tensor, y: torch.Tensor | None, suffix: str, beta: float) -> None:
        """y, z and x of the rows ``x``, in the caller's plate; ``y`` observes the label."""
        y = pyro.sample(f"y{suffix}", self.label_prior(x), obs=y)
        zero = x.new_zeros(len(x), self.latent_dim)
        with poutine.scale(scale=beta):
            z = pyro.sample(f"z{suffix}", dist.Normal(zero, 1.0).to_event(1))
        pyro.sample(f"x{suffix}", self.likelihood(self.decode(z, y)), obs=x)

    @local_params
    @pyro_method
    def guide(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
        beta: float = 1.0,
    ) -> None:
        """q(z | x, y) for the labelled rows; q(y | x), then q(z | x, y), for the others. How
        that y is handled (summed out, or drawn and scored) is the estimator's choice: see
        :data:`pyro_vae.inference.LABEL_ESTIMATORS`."""
        known = self._known(x, labels)
        with poutine.scale(scale=1.0 if num_data is None else num_data / len(x)):
            if known.any():
                with pyro.plate("labelled", int(known.sum()), dim=-1):
                    q = self.latent_posterior(x[known], self.one_hot(labels[known]))
                    with poutine.scale(scale=beta):
                        pyro.sample("z_labelled", q)
            if not known.all():
                rows = x[~known]
                with pyro.plate("unlabelled", len(rows), dim=-1):
                    q_y = dist.OneHotCategorical(logits=self.classifier_logits(rows))
                    y = pyro.sample("y", q_y)
                    with poutine.scale(scale=beta):
                        pyro.sample("z", self.latent_posterior(rows, y))
