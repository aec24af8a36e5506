"""Latent priors p(z) as objects passed into the model.

A prior is a :class:`~pyro.nn.PyroModule` whose call ``prior(batch_size, labels)`` returns a
distribution with batch shape ``(batch_size,)`` and event shape ``(latent_dim,)``. Learnable
priors keep their parameters as module parameters, so the optimiser finds them through the VAE.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam
from torch import nn

from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.core.registry import Registry
from pyro_vae.core.validate import positive_float, positive_int

from .mixtures import ComponentMixture, DiagonalNormalMixture


@dataclass
class PriorContext:
    """What some priors need besides the latent size.

    Args:
        encoder: The VAE's guide family (the VampPrior mixes its q(z|u) at pseudo-inputs).
        data: Training data (initial pseudo-inputs).
        num_classes: Number of labels (class-conditional prior).
    """

    encoder: nn.Module | None = None
    data: torch.Tensor | None = None
    num_classes: int | None = None


class Prior(PyroModule):
    """Base for p(z). Subclasses set ``name`` and implement :meth:`forward`.

    Args:
        latent_dim: Size of z.
    """

    name = "base"
    #: Whether KL(Normal guide || this prior) has a closed form in torch.
    analytic_kl = False
    #: Whether the prior conditions on labels (then sampling needs them too).
    needs_labels = False
    #: Whether the prior is built from the VAE's encoder (then a method needs one to fit it).
    uses_encoder = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    @property
    def learnable(self) -> bool:
        """Whether p(z) has parameters of its own that a fit changes."""
        return any(True for _ in self.parameters())

    def forward(
        self, batch_size: int, labels: torch.Tensor | None = None
    ) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError


PRIORS: Registry[type[Prior]] = Registry("prior", positional=2)


@PRIORS.register("standard-normal")
class StandardNormalPrior(Prior):
    """p(z) = N(0, I), the prior of Kingma & Welling."""

    name = "standard-normal"
    analytic_kl = True

    def __init__(self, latent_dim: int, context: PriorContext | None = None) -> None:
        super().__init__(latent_dim)
        self.register_buffer("zeros", torch.zeros(latent_dim))

    def forward(
        self, batch_size: int, labels: torch.Tensor | None = None
    ) -> dist.TorchDistribution:
        zeros = self.zeros
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1).expand([batch_size])


@PRIORS.register("normal")
class NormalPrior(Prior):
    """p(z) = N(mu, diag sigma^2) with learnable mu and sigma."""

    name = "normal"
    analytic_kl = True

    def __init__(self, latent_dim: int, context: PriorContext | None = None) -> None:
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.scale = PyroParam(torch.ones(latent_dim), constraint=constraints.positive)

    def forward(self, batch_size: int, labels: torch.Tensor | None = None):
        return dist.Normal(self.loc, self.scale).to_event(1).expand([batch_size])


@PRIORS.register("laplace")
class LaplacePrior(Prior):
    """p(z) = prod_u Laplace(z_u; 0, scale): sparser codes than a Gaussian."""

    name = "laplace"
    analytic_kl = True

    def __init__(
        self, latent_dim: int, context: PriorContext | None = None, scale: float = 1.0
    ) -> None:
        super().__init__(latent_dim)
        positive_float("laplace scale", scale)
        self.register_buffer("zeros", torch.zeros(latent_dim))
        self.scale = float(scale)

    def forward(self, batch_size: int, labels: torch.Tensor | None = None):
        return dist.Laplace(self.zeros, self.scale).to_event(1).expand([batch_size])


@PRIORS.register("student-t")
class StudentTPrior(Prior):
    """p(z) = prod_u StudentT(z_u; df, 0, 1): heavy tails."""

    name = "student-t"

    def __init__(
        self, latent_dim: int, context: PriorContext | None = None, df: float = 3.0
    ) -> None:
        super().__init__(latent_dim)
        positive_float("student-t df", df)
        self.register_buffer("zeros", torch.zeros(latent_dim))
        self.df = float(df)

    def forward(self, batch_size: int, labels: torch.Tensor | None = None):
        zeros = self.zeros
        return (
            dist.StudentT(self.df, zeros, torch.ones_like(zeros)).to_event(1).expand([batch_size])
        )


@PRIORS.register("mog")
class MixtureOfGaussiansPrior(Prior):
    """A learnable mixture of ``components`` diagonal Gaussians."""

    name = "mog"

    def __init__(
        self, latent_dim: int, context: PriorContext | None = None, components: int = 10
    ) -> None:
        super().__init__(latent_dim)
        positive_int("mog components", components)
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.scales = PyroParam(torch.ones(components, latent_dim), constraint=constraints.positive)

    def forward(self, batch_size: int, labels: torch.Tensor | None = None):
        return DiagonalNormalMixture(self.logits, self.locs, self.scales).expand([batch_size])


@PRIORS.register("vamp")
class VampPrior(Prior):
    """VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k).

    The pseudo-inputs u_k are learned, initialised from training data; the encoder is the
    VAE's own, shared, and q(z | u_k) is its family's network output (a semi-amortized guide's
    refinement needs a datapoint, so the mixture uses the unrefined q).
    """

    name = "vamp"
    uses_encoder = True

    def __init__(
        self, latent_dim: int, context: PriorContext | None = None, components: int = 50
    ) -> None:
        super().__init__(latent_dim)
        positive_int("vamp components", components)
        if context is None or context.encoder is None or context.data is None:
            raise ConfigError("the vamp prior needs the encoder and training data to start from")
        if components > len(context.data):
            raise ConfigError(
                f"vamp components ({components}) exceed the {len(context.data)} training datapoints"
            )
        # drawn from torch's global generator, which the run's seed sets
        pick = torch.randperm(len(context.data))[:components]
        self.pseudo_inputs = nn.Parameter(context.data[pick].detach().clone().float())
        self.encoder = context.encoder

    def forward(self, batch_size: int, labels: torch.Tensor | None = None):
        q = self.encoder(self.pseudo_inputs)
        components = self.pseudo_inputs.shape[0]
        weights = torch.zeros(components, device=self.pseudo_inputs.device)
        if isinstance(q, dist.Independent) and isinstance(q.base_dist, dist.Normal):
            return DiagonalNormalMixture(weights, q.base_dist.loc, q.base_dist.scale).expand(
                [batch_size]
            )
        return ComponentMixture(dist.Categorical(logits=weights), q).expand([batch_size])


@PRIORS.register("class-conditional")
class ClassConditionalPrior(Prior):
    """p(z | y) = N(mu_y, I): one mean per label, learned or fixed.

    Fixed means shift label y along axis ``y mod latent_dim`` (the label-shifted prior of the
    original VAE tutorial code): by ``+offset`` or ``-offset`` alternately with ``y //
    latent_dim``, and further out (``2 offset``, ``3 offset``, ...) once all 2 x latent_dim
    signed axes are used, so every label has its own mean. Learned means start there.
    """

    name = "class-conditional"
    analytic_kl = True
    needs_labels = True

    def __init__(
        self,
        latent_dim: int,
        context: PriorContext | None = None,
        learned: bool = True,
        offset: float = 3.0,
    ) -> None:
        super().__init__(latent_dim)
        if context is None or not context.num_classes:
            raise DataError(
                "the class-conditional prior needs labelled data; this data set has no labels"
            )
        #: The labels 0 .. num_classes - 1 the prior has a mean for.
        self.num_classes = int(context.num_classes)
        classes = torch.arange(context.num_classes)
        means = torch.zeros(context.num_classes, latent_dim)
        sign = 1.0 - 2.0 * ((classes // latent_dim) % 2)
        radius = 1.0 + classes // (2 * latent_dim)
        means[classes, classes % latent_dim] = float(offset) * sign * radius
        if learned:
            self.means = nn.Parameter(means)
        else:
            self.register_buffer("means", means)

    def forward(self, batch_size: int, labels: torch.Tensor | None = None):
        if labels is None:
            raise DataError("the class-conditional prior needs labels for every datapoint")
        loc = self.means[labels]
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)


@PRIORS.register("flow")
class FlowPrior(Prior):
    """A normalizing flow over N(0, I): ``flows`` affine autoregressive layers (Pyro's
    ``affine_autoregressive``) with reversing permutations between them."""

    name = "flow"

    def __init__(
        self, latent_dim: int, context: PriorContext | None = None, flows: int = 2, hidden: int = 32
    ) -> None:
        super().__init__(latent_dim)
        positive_int("flow flows", flows)
        positive_int("flow hidden", hidden)
        if latent_dim < 2:
            raise ConfigError("the flow prior needs latent_dim >= 2")
        self.register_buffer("zeros", torch.zeros(latent_dim))
        self.register_buffer("reverse", torch.arange(latent_dim - 1, -1, -1))
        self.layers = nn.ModuleList(
            T.affine_autoregressive(latent_dim, hidden_dims=[hidden, hidden]) for _ in range(flows)
        )

    def forward(self, batch_size: int, labels: torch.Tensor | None = None):
        transforms = []
        for layer in self.layers:
            transforms += [layer, T.Permute(self.reverse)]
        zeros = self.zeros
        base = dist.Normal(zeros, torch.ones_like(zeros)).to_event(1).expand([batch_size])
        return dist.TransformedDistribution(base, transforms[:-1])


class FlatPrior(Prior):
    """An improper flat prior over z: ``base``'s distribution with ``mask(False)``.

    Not in :data:`PRIORS`: under a flat prior the ELBO is unbounded. It exists for point
    estimates of z (maximum likelihood, ``mle-pairs``); ``base`` still gives shapes and draws.
    """

    name = "flat"

    def __init__(self, base: Prior) -> None:
        super().__init__(base.latent_dim)
        self.base = base
        self.needs_labels = base.needs_labels
        self.uses_encoder = base.uses_encoder

    def forward(self, batch_size: int, labels: torch.Tensor | None = None):
        return self.base(batch_size, labels).mask(False)
