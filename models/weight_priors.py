"""Priors on the decoder's weights, attached with ``PyroSample`` (the network code is untouched).

A weight prior turns every ``weight`` and ``bias`` of a network into a global latent site of
the model, sampled once per model call outside the data plate. MLE and MAP then follow from
the same model:

- ``flat``: ``Normal(0, 1).mask(False)``, an improper flat prior; a point estimate under it
  (AutoDelta) is the maximum-likelihood estimate;
- ``normal``: ``Normal(0, scale)``; its MAP estimate is the optimum of the likelihood with the
  L2 penalty ``||w||^2 / (2 scale^2)`` (weight decay);
- ``laplace``: ``Laplace(0, scale)``; MAP is an L1 penalty ``|w| / scale``;
- ``hierarchical``: ``Normal(0, s_l)`` with one learned scale ``s_l`` per layer. Only for
  methods that integrate the weights (``bayes-decoder``): a joint point estimate of w and s_l
  has no maximum, since log N(w; 0, s^2) grows without bound as w -> 0 and s -> 0 together.
  Integrating w out and fitting s_l is empirical Bayes; maximising over both is not.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam, PyroSample
from pyro.nn.module import to_pyro_module_
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import Registry
from pyro_vae.core.validate import positive_float


class WeightPrior(PyroModule):
    """Base for a prior over network weights. Subclasses set ``name`` and :meth:`site_prior`."""

    name = "base"
    #: Whether the prior is a proper density (a ``flat`` one only makes sense for point
    #: estimates).
    proper = True
    #: Whether a joint point estimate of the weights and the prior's own parameters has a
    #: maximum (it has none when the prior's scale is learned along with the weights).
    bounded_point_estimate = True
    #: Whether under this prior a point decoder is the network's plain parameters (the prior
    #: adds nothing to the objective, so its point estimate maximises the ELBO alone: no
    #: weight sites are made).
    plain_decoder = False

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("origin", torch.zeros(()))

    def site_prior(self, index: int, shape: torch.Size) -> dist.TorchDistribution:
        """The prior of the ``index``-th tensor (in ``named_parameters`` order) of ``shape``."""
        raise NotImplementedError  # pragma: no cover

    def prepare(self, shapes: list[torch.Size]) -> None:
        """Called once with the shapes of all tensors before any prior is built."""

    def attach(self, network: nn.Module) -> dict[str, torch.Tensor]:
        """Make every parameter of ``network`` a ``PyroSample`` site under this prior.

        ``network`` becomes a :class:`~pyro.nn.PyroModule` in place (call this under
        module-local parameters, as :class:`~pyro_vae.models.VAE` does).

        Returns:
            The parameters' initial values by path relative to ``network`` (``"out.weight"``),
            to start point estimates from PyTorch's initialisation.
        """
        named = list(network.named_parameters())
        self.prepare([p.shape for _, p in named])
        to_pyro_module_(network)
        initial = {}
        for index, (path, value) in enumerate(named):
            owner_path, _, attr = path.rpartition(".")
            owner = network.get_submodule(owner_path)
            initial[path] = value.detach().clone()
            setattr(owner, attr, PyroSample(self._prior_fn(index, value.shape)))
        return initial

    def _prior_fn(self, index: int, shape: torch.Size):
        def prior(_module: nn.Module) -> dist.TorchDistribution:
            return self.site_prior(index, shape)

        return prior

    def _zeros(self, shape: torch.Size) -> torch.Tensor:
        return self.origin.expand(shape)


WEIGHT_PRIORS: Registry[type[WeightPrior]] = Registry("weight prior")


@WEIGHT_PRIORS.register("flat")
class FlatWeightPrior(WeightPrior):
    """An improper flat prior (``mask(False)``): point estimates under it are MLE."""

    name = "flat"
    proper = False
    plain_decoder = True

    def site_prior(self, index: int, shape: torch.Size) -> dist.TorchDistribution:
        zeros = self._zeros(shape)
        return dist.Normal(zeros, 1.0).to_event(len(shape)).mask(False)


class _ScaleFamilyWeightPrior(WeightPrior):
    """w ~ family(0, scale), one fixed scale for every weight."""

    family: type[dist.TorchDistribution]

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        positive_float(f"{self.name} weight-prior scale", scale)
        self.scale = float(scale)

    def site_prior(self, index: int, shape: torch.Size) -> dist.TorchDistribution:
        return self.family(self._zeros(shape), self.scale).to_event(len(shape))


@WEIGHT_PRIORS.register("normal")
class NormalWeightPrior(_ScaleFamilyWeightPrior):
    """w ~ Normal(0, scale): MAP is weight decay with penalty ``1 / (2 scale^2)``."""

    name = "normal"
    family = dist.Normal


@WEIGHT_PRIORS.register("laplace")
class LaplaceWeightPrior(_ScaleFamilyWeightPrior):
    """w ~ Laplace(0, scale): MAP is an L1 penalty ``|w| / scale`` (sparse weights)."""

    name = "laplace"
    family = dist.Laplace


@WEIGHT_PRIORS.register("hierarchical")
class HierarchicalWeightPrior(WeightPrior):
    """w_l ~ Normal(0, s_l) with one learned scale per tensor, started at ``init_scale``."""

    name = "hierarchical"
    bounded_point_estimate = False

    def __init__(self, init_scale: float = 1.0) -> None:
        super().__init__()
        positive_float("hierarchical weight-prior init_scale", init_scale)
        self.init_scale = float(init_scale)

    def prepare(self, shapes: list[torch.Size]) -> None:
        self.scales = PyroParam(
            torch.full((len(shapes),), self.init_scale), constraint=constraints.positive
        )

    def site_prior(self, index: int, shape: torch.Size) -> dist.TorchDistribution:
        return dist.Normal(self._zeros(shape), self.scales[index]).to_event(len(shape))


def check_point_estimate(name: str, where: str) -> None:
    """Refuse the weight prior ``name`` where the weights are a point estimate (``where``)."""
    if not WEIGHT_PRIORS[name].bounded_point_estimate:
        raise ConfigError(
            f"the {name} weight prior has no maximum under a point estimate of the weights "
            f"({where}): its learned scale and the weights shrink to 0 together; "
            "use it with bayes-decoder, or choose a fixed-scale prior (normal, laplace)"
        )
