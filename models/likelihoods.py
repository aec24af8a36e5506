"""Likelihoods p(x|z) as objects: each turns the decoder's output into a Pyro distribution.

Every likelihood states the data it can model (``support``) and refuses other data with a
message that says what to do instead, so a Bernoulli "ELBO" on grey pixels (a bound on nothing)
cannot be computed by accident.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam
from torch.nn.functional import logsigmoid

from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.core.registry import Registry

#: Smallest scale the learned-scale likelihoods can reach; keeps the density bounded on pixel
#: data with many identical values.
MIN_SCALE = 1e-3


class Likelihood(PyroModule):
    """Base for p(x|z): ``likelihood(decoder_output)`` returns a distribution with event dim 1.

    Subclasses set ``support`` (``"binary"``, ``"8-bit"``, ``"unit-interval"`` or ``"real"``)
    and implement
    :meth:`forward`; :meth:`mean` gives the expected data for pictures.
    """

    name = "base"
    support = "real"
    #: The data are discrete, so -log p(x) is a code length (reported in bits per dimension).
    discrete = False

    def __init__(self, data_dim: int) -> None:
        super().__init__()
        self.data_dim = data_dim

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Expected value of x given the decoder output (what reconstructions show)."""
        return self(params).mean

    def check_data(self, x: torch.Tensor) -> None:
        """Raise :class:`DataError` unless every value of ``x`` is modelled."""
        if not torch.isfinite(x).all():
            raise DataError("data contain NaN or infinite values")
        if self.support == "binary" and not ((x == 0) | (x == 1)).all():
            raise DataError(
                f"the {self.name} likelihood needs binary data (0/1) but the data have other "
                "values; binarize them (--binarization dynamic or threshold) or use "
                "--likelihood continuous-bernoulli"
            )
        if self.support == "8-bit" and not _on_levels(x, 256):
            raise DataError(
                f"the {self.name} likelihood needs 8-bit data (the values k / 255 of [0, 1]); "
                "load images without binarization (--binarization none), or use "
                "--likelihood continuous-bernoulli for other data in [0, 1]"
            )
        if self.support == "unit-interval" and ((x < 0) | (x > 1)).any():
            raise DataError(
                f"the {self.name} likelihood needs data in [0, 1]; use --likelihood normal "
                "for real-valued data"
            )


def _on_levels(x: torch.Tensor, levels: int) -> bool:
    """Whether every value of ``x`` is one of k / (levels - 1), k = 0 .. levels - 1."""
    scaled = x * (levels - 1)
    return bool(((x >= 0) & (x <= 1) & ((scaled - scaled.round()).abs() < 1e-3)).all())


LIKELIHOODS: Registry[type[Likelihood]] = Registry("likelihood", positional=1)


class BinaryBernoulli(dist.Bernoulli):
    """A Bernoulli whose ``log_prob`` takes the form that holds for values in {0, 1}.

    ``log p(x) = logsigmoid((2x - 1) * logits)``: two passes over the logits instead of the
    several kernels of ``binary_cross_entropy_with_logits``, which dominate the cost of
    importance sampling with many draws. Equal to ``Bernoulli.log_prob`` on binary values (the
    support that validation and :meth:`Likelihood.check_data` enforce).

    Validation checks the values passed to ``log_prob`` but not the parameters: the only check
    on logits is for NaN, a full pass over every decoder output that a NaN loss reports anyway.
    """

    def __init__(
        self,
        probs: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(probs=probs, logits=logits, validate_args=False)
        self._validate_args = (
            torch.distributions.Distribution._validate_args
            if validate_args is None
            else validate_args
        )

    def expand(self, batch_shape: torch.Size, _instance: BinaryBernoulli | None = None):
        new = self._get_checked_instance(BinaryBernoulli, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return logsigmoid((2 * value - 1) * self.logits)


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels with the decoder output as logits (binary data only)."""

    name = "bernoulli"
    support = "binary"
    discrete = True

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        return BinaryBernoulli(logits=params).to_event(1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)


@LIKELIHOODS.register("continuous-bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): a proper density on [0, 1]."""

    name = "continuous-bernoulli"
    support = "unit-interval"

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        return dist.ContinuousBernoulli(logits=params).to_event(1)


class LocationScaleLikelihood(Likelihood):
    """A location-scale family with the decoder output as location and a learned scale.

    Args:
        data_dim: Number of features.
        scale: ``"per-feature"`` (one learned scale per pixel), ``"shared"`` (one learned
            scalar) or ``"fixed"`` (``init_scale`` throughout, not learned).
        init_scale: Initial (or, with ``"fixed"``, the) value of the scale.
    """

    support = "real"
    family: type[dist.TorchDistribution] = dist.Normal

    def __init__(self, data_dim: int, scale: str = "per-feature", init_scale: float = 1.0) -> None:
        super().__init__(data_dim)
        shapes = {"per-feature": (data_dim,), "shared": (), "fixed": ()}
        if scale not in shapes:
            raise ConfigError(
                f"{self.name} likelihood: scale must be one of {sorted(shapes)}, not {scale!r}"
            )
        if not init_scale > MIN_SCALE:
            raise ConfigError(f"{self.name} likelihood: init_scale must exceed {MIN_SCALE}")
        if scale == "fixed":
            self.register_buffer("scale", torch.tensor(float(init_scale)))
            return
        self.scale = PyroParam(
            torch.full(shapes[scale], float(init_scale)),
            constraint=constraints.greater_than(MIN_SCALE),
        )

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        return self.family(params, self.scale).to_event(1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params


@LIKELIHOODS.register("normal")
class NormalLikelihood(LocationScaleLikelihood):
    """Gaussian pixels: real data, learned scale."""

    name = "normal"
    family = dist.Normal


@LIKELIHOODS.register("laplace")
class LaplaceLikelihood(LocationScaleLikelihood):
    """Laplace pixels: real data, learned scale; an L1 reconstruction error, robust to the
    many exactly-black pixels of grey images."""

    name = "laplace"
    family = dist.Laplace


class DiscretizedLogistic(dist.TorchDistribution):
    """A logistic on [-1, 1] binned to ``levels`` values, per pixel (Salimans et al. 2017).

    Values are given on [0, 1] as k / (levels - 1) and mapped to y = 2x - 1, where each bin has
    half-width 1 / (levels - 1): P(k) = sigma((y + h - loc) / scale) - sigma((y - h - loc) /
    scale), with the lowest bin's lower edge at -inf and the highest bin's upper edge at +inf,
    so the ``levels`` probabilities sum to 1. Batch shape is that of ``loc``; event shape ().

    Args:
        loc: Location on the [-1, 1] scale.
        scale: Logistic scale, positive.
        levels: Number of values (256 for 8-bit images).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor | float,
        levels: int = 256,
        validate_args: bool | None = None,
    ) -> None:
        scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        self.levels = levels
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> DiscretizedLogistic:
        batch_shape = torch.Size(batch_shape)
        return DiscretizedLogistic(
            self.loc.expand(batch_shape), self.scale.expand(batch_shape), self.levels
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        half = 1.0 / (self.levels - 1)
        centred = (2 * value - 1) - self.loc
        upper = (centred + half) / self.scale
        lower = (centred - half) / self.scale
        # log(sigma(a) - sigma(b)) = log sigma(a) + log sigma(-b) + log(1 - exp(b - a)), a > b
        inner = logsigmoid(upper) + logsigmoid(-lower) + torch.log1p(-torch.exp(lower - upper))
        level = value * (self.levels - 1)
        bottom, top = level < 0.5, level > self.levels - 1.5  # the edge bins, open outwards
        return torch.where(bottom, logsigmoid(upper), torch.where(top, logsigmoid(-lower), inner))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
            u = u.clamp(1e-6, 1 - 1e-6)
            y = self.loc.expand(shape) + self.scale.expand(shape) * (u.log() - (-u).log1p())
            k = torch.round((y.clamp(-1, 1) + 1) / 2 * (self.levels - 1))
            return k / (self.levels - 1)

    @property
    def mean(self) -> torch.Tensor:
        """The bins' mean, from the logistic CDF at the bin edges (exact)."""
        levels = torch.arange(self.levels, dtype=self.loc.dtype, device=self.loc.device)
        values = levels / (self.levels - 1)
        log_p = self.log_prob(values.view(-1, *[1] * self.loc.dim()))
        return (log_p.exp() * values.view(-1, *[1] * self.loc.dim())).sum(0)


@LIKELIHOODS.register("discretized-logistic")
class DiscretizedLogisticLikelihood(LocationScaleLikelihood):
    """8-bit pixels: a :class:`DiscretizedLogistic` per pixel with the decoder output as its
    location on [-1, 1] and a learned scale (options as for ``normal``). Data must be on the
    256 levels k / 255 of [0, 1] (grey or colour images loaded without binarization)."""

    name = "discretized-logistic"
    support = "8-bit"
    discrete = True
    family = DiscretizedLogistic

    def __init__(self, data_dim: int, scale: str = "per-feature", init_scale: float = 0.2) -> None:
        super().__init__(data_dim, scale, init_scale)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self(params).base_dist.mean
