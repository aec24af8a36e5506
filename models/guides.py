"""Amortized variational families q_phi(z|x), by name: the guide's half of the VAE.

A family is a network that maps a batch of data to *local parameters* lambda(x), unconstrained
tensors with one row per datapoint, and a map from lambda to a distribution over z with batch
shape ``(batch,)`` and event shape ``(latent_dim,)``. The split serves two callers:

- the VAE's guide samples z from ``family.posterior(x, labels, model)``;
- the inference gaps (Cremer et al. 2018) optimise lambda for every datapoint alone, the
  family's own optimum q*, starting from the network's output.

=====================  ===========================================================================
``diagonal``           N(mu(x), diag sigma(x)^2): Kingma & Welling's encoder
``full-rank``          N(mu(x), L(x) L(x)^T), L lower-triangular with a positive diagonal
``iaf``                the diagonal Gaussian pushed through inverse autoregressive flow steps
                       conditioned on a context h(x) (Kingma et al. 2016)
``semi-amortized``     the diagonal Gaussian, refined per datapoint by gradient steps on its own
                       ELBO at training and at evaluation (Kim et al. 2018; in
                       :mod:`.semi_amortized`)
=====================  ===========================================================================

What a family can do is declared on its class; the objectives and methods read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn
from torch.nn.functional import softplus

from pyro_vae.core.registry import Registry
from pyro_vae.core.validate import nonnegative_int, positive_int

from .networks import MIN_SCALE

#: A guide family's parameters for one batch: unconstrained tensors, one row per datapoint.
LocalParameters = tuple[torch.Tensor, ...]


class GuideFamily(nn.Module):
    """Base of the amortized families: an encoder body (a :data:`~.networks.NETWORKS`
    member's, or any module mapping ``(..., features)`` to ``(..., width)``) with two linear
    heads, ``loc`` and ``raw_scale``, that give a diagonal Gaussian, plus what a family adds.

    Subclasses set ``name``, may add heads in ``__init__``, and override :meth:`local` and
    :meth:`distribution` together.

    Args:
        body: The encoder body.
        width: Its output size.
        latent_dim: Size of z.
    """

    name: ClassVar[str] = "base"
    #: KL(q || a Gaussian prior) has a closed form (``elbo-analytic-kl`` uses it).
    analytic_kl: ClassVar[bool] = True
    #: log q can be evaluated with q's parameters stopped (``stl`` and ``dreg`` need it).
    path_gradient: ClassVar[bool] = True
    #: The guide runs the model while it builds q (it then needs a point decoder, and cannot
    #: be traced by ``--jit`` / ``--compile``).
    reads_model: ClassVar[bool] = False

    def __init__(self, body: nn.Module, width: int, latent_dim: int) -> None:
        super().__init__()
        self.body = body
        self.loc = nn.Linear(width, latent_dim)
        self.raw_scale = nn.Linear(width, latent_dim)
        self.latent_dim = latent_dim

    @staticmethod
    def count_parameters(data_dim: int, latent_dim: int, width: int, **options: Any) -> int:
        """Numbers the family holds beyond the diagonal encoder (``width``: the last hidden
        width), counted before anything is allocated."""
        return 0

    def local(self, x: torch.Tensor) -> LocalParameters:
        """lambda(x): the unconstrained local parameters of q(z|x) for each row of ``x``."""
        h = self.body(x)
        return self.loc(h), self.raw_scale(h)

    def distribution(self, *params: torch.Tensor) -> dist.TorchDistribution:
        """q(z|x) for local parameters ``params`` (as :meth:`local` returns them)."""
        loc, raw_scale = params
        return dist.Normal(loc, softplus(raw_scale) + MIN_SCALE).to_event(1)

    def fitted_local(
        self, x: torch.Tensor, labels: torch.Tensor | None, model: Callable[..., Any]
    ) -> LocalParameters:
        """The local parameters the guide uses: :meth:`local`, unless the family refines them
        with the ``model`` (``model(x, labels)``, the VAE's model)."""
        return self.local(x)

    def posterior(
        self, x: torch.Tensor, labels: torch.Tensor | None, model: Callable[..., Any]
    ) -> dist.TorchDistribution:
        """q(z|x) as the guide samples it."""
        return self.distribution(*self.fitted_local(x, labels, model))

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z|x) from the network alone (no refinement)."""
        return self.distribution(*self.local(x))


GUIDES: Registry[type[GuideFamily]] = Registry("guide", positional=3)


@GUIDES.register("diagonal")
class DiagonalGaussian(GuideFamily):
    """q(z|x) = N(mu(x), diag sigma(x)^2), sigma = softplus(.) + 1e-6."""

    name = "diagonal"


@GUIDES.register("full-rank")
class FullRankGaussian(GuideFamily):
    """q(z|x) = N(mu(x), L(x) L(x)^T) with L = diag(sigma(x)) (I + B(x)) lower-triangular.

    sigma(x) is the diagonal family's; a further head gives the latent_dim (latent_dim - 1) / 2
    entries of B below its diagonal, each relative to its row's sigma (so a step in B moves L
    in proportion to the scale it sits in: on the default run this trained faster than adding
    B to diag(sigma)). That head starts at zero, so the family starts as the diagonal Gaussian
    of the same network. With a linear encoder it contains the pPCA posterior
    N(M^-1 W^T (x - mu), sigma^2 M^-1) exactly (any L with a positive diagonal is reachable).
    """

    name = "full-rank"
    analytic_kl = False

    def __init__(self, body: nn.Module, width: int, latent_dim: int) -> None:
        super().__init__(body, width, latent_dim)
        self.below_diagonal = nn.Linear(width, latent_dim * (latent_dim - 1) // 2)
        nn.init.zeros_(self.below_diagonal.weight)
        nn.init.zeros_(self.below_diagonal.bias)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    @staticmethod
    def count_parameters(data_dim: int, latent_dim: int, width: int, **options: Any) -> int:
        return (width + 1) * (latent_dim * (latent_dim - 1) // 2)

    def local(self, x: torch.Tensor) -> LocalParameters:
        h = self.body(x)
        return self.loc(h), self.raw_scale(h), self.below_diagonal(h)

    def distribution(self, *params: torch.Tensor) -> dist.TorchDistribution:
        loc, raw_scale, below = params
        size = loc.shape[-1]
        unit = below.new_zeros(*below.shape[:-1], size, size)
        unit[..., self.rows, self.cols] = below
        unit = unit + torch.eye(size, dtype=loc.dtype, device=loc.device)
        scale = softplus(raw_scale) + MIN_SCALE
        return dist.MultivariateNormal(loc, scale_tril=scale.unsqueeze(-1) * unit)


@GUIDES.register("iaf")
class InverseAutoregressiveFlow(GuideFamily):
    """z_0 ~ N(mu(x), diag sigma(x)^2), then ``steps`` affine autoregressive steps
    z_t = m_t(z_{t-1}, h) + s_t(z_{t-1}, h) * z_{t-1} with a context h(x) from the encoder.

    log q(z_T|x) = log q(z_0|x) - sum_t sum_i log s_t,i. Each step is Pyro's
    ``ConditionalAffineAutoregressive`` with the numerically stable (sigmoid-gated) update of
    Kingma et al. 2016; the variable order is reversed between steps. With ``steps=0`` the
    family is the diagonal one, parameter for parameter.

    Args:
        steps: Flow steps.
        context_dim: Size of the context h(x).
        flow_hidden: Hidden width of each step's autoregressive network (MADE).
    """

    name = "iaf"
    analytic_kl = False
    path_gradient = False

    def __init__(
        self,
        body: nn.Module,
        width: int,
        latent_dim: int,
        steps: int = 2,
        context_dim: int = 20,
        flow_hidden: int = 60,
    ) -> None:
        nonnegative_int("iaf steps", steps)
        positive_int("iaf context_dim", context_dim)
        positive_int("iaf flow_hidden", flow_hidden)
        super().__init__(body, width, latent_dim)
        self.steps = steps
        if steps:
            self.context = nn.Linear(width, context_dim)
        forward_order = torch.arange(latent_dim)
        self.flows = nn.ModuleList(
            ConditionalAffineAutoregressive(
                ConditionalAutoRegressiveNN(
                    latent_dim,
                    context_dim,
                    [flow_hidden, flow_hidden],
                    permutation=forward_order if t % 2 == 0 else forward_order.flip(0),
                ),
                stable=True,
            )
            for t in range(steps)
        )

    @staticmethod
    def count_parameters(
        data_dim: int,
        latent_dim: int,
        width: int,
        steps: int = 2,
        context_dim: int = 20,
        flow_hidden: int = 60,
        **options: Any,
    ) -> int:
        if not steps:
            return 0
        made = (latent_dim + context_dim + 1) * flow_hidden + (flow_hidden + 1) * flow_hidden
        made += (flow_hidden + 1) * 2 * latent_dim
        return (width + 1) * context_dim + steps * made

    def local(self, x: torch.Tensor) -> LocalParameters:
        h = self.body(x)
        if not self.steps:
            return self.loc(h), self.raw_scale(h)
        return self.loc(h), self.raw_scale(h), self.context(h)

    def distribution(self, *params: torch.Tensor) -> dist.TorchDistribution:
        if not self.steps:
            return super().distribution(*params)
        # Far from q's mass the inverted flow overflows: the base then gives log q = NaN
        # (density 0 to every digit; callers read it as -inf) instead of refusing the value.
        loc, raw_scale = params[:2]
        scale = softplus(raw_scale) + MIN_SCALE
        base = dist.Normal(loc, scale, validate_args=False).to_event(1)
        context = params[2]
        return dist.TransformedDistribution(base, [f.condition(context) for f in self.flows])


class EncoderGuide(GuideFamily):
    """The diagonal Gaussian family around any encoder module that returns ``(loc, scale)``
    for ``x``: what :class:`~pyro_vae.models.VAE` makes of an encoder that is not a
    :class:`GuideFamily`. Its local parameters are ``(loc, log scale)``.

    Args:
        network: Maps ``(batch, features)`` to ``loc`` and positive ``scale``, each
            ``(batch, latent_dim)``.
    """

    name = "encoder"

    def __init__(self, network: nn.Module) -> None:
        nn.Module.__init__(self)
        self.network = network

    def local(self, x: torch.Tensor) -> LocalParameters:
        loc, scale = self.network(x)
        return loc, scale.log()

    def distribution(self, *params: torch.Tensor) -> dist.TorchDistribution:
        loc, log_scale = params
        return dist.Normal(loc, log_scale.exp()).to_event(1)


def moments(q: dist.TorchDistribution, draws: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each coordinate of z under ``q``: exact where the
    distribution has them (the Gaussian families), else from ``draws`` draws (``iaf``)."""
    try:
        return q.mean, q.stddev
    except NotImplementedError:
        z = q.sample((draws,))
        return z.mean(0), z.std(0)
