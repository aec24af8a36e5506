"""The importance-weighted bound (Burda et al. 2016), per datapoint, under subsampling and beta.

For datapoint i with K draws z_ik ~ q(z|x_i)::

    IWAE_K(x_i) = log (1/K) sum_k exp[ log p(x_i|z_ik) + beta (log p(z_ik) - log q(z_ik|x_i)) ]

and a minibatch B of a data set of N gives ``(N/|B|) sum_{i in B} IWAE_K(x_i)`` plus the
(unscaled) log-density ratio of any global sites, drawn once per step. ``beta = 1`` is the
importance-weighted ELBO; K = 1 is the (beta-)ELBO.

Pyro's ``RenyiELBO`` puts plate- and beta-*scaled* log-densities inside the logsumexp, which
corrupts the bound under subsampling or ``poutine.scale``. Here every site's
log-density is read unscaled; the data plate's ``N/|B|`` factor and each latent site's beta are
recovered from the site's recorded scale and applied where they belong.

Programs whose model and guide both take a ``particles`` keyword (:class:`~pyro_vae.models.VAE`
and every program in :mod:`~pyro_vae.inference.programs` except ``PointLatents`` do) get it:
they draw the K particles of each datapoint in a plate at dim -2, so the encoder
runs once per datapoint, not K times. Any other program only needs the VAE calling convention
``(x, labels, *, num_data, indices, beta)``: its K particles are the minibatch repeated K times
(datapoint-major inside each copy). Either way the draws are the same ``(K, batch)`` layout,
and global sites (decoder weights under a prior) are drawn once and shared by all particles.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import positive_int

from .stuck import stuck

#: Name of the plate that holds one term per datapoint.
DATA_PLATE = "data"


def _data_frame(site: dict) -> Any | None:
    for frame in site["cond_indep_stack"]:
        if frame.name == DATA_PLATE:
            return frame
    return None


def takes_particles(fn: Any) -> bool:
    """Whether the program ``fn`` declares the ``particles`` keyword of the VAE convention."""
    try:
        return "particles" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and other callables without a signature
        return False


def _local_values_stopped(trace: Any) -> Any:
    """A copy of ``trace`` whose latent sites in the data plate hold their values detached
    (global sites keep theirs, gradient and all)."""
    fixed = trace.copy()
    for name, site in trace.nodes.items():
        if (
            site["type"] == "sample"
            and _data_frame(site) is not None
            and not site_is_subsample(site)
        ):
            fixed.nodes[name] = {**site, "value": site["value"].detach()}
    return fixed


def _log_prob(site: dict) -> torch.Tensor:
    value = site["fn"].log_prob(site["value"])
    if site["mask"] is not None:
        value = value * site["mask"]
    return value


class ImportanceWeightedELBO:
    """The IWAE objective with ``particles`` importance samples per datapoint.

    Use like a Pyro ELBO: ``loss = iwae.differentiable_loss(model, guide, x, labels, ...)``.
    The loss is minus the bound, summed over the full data set as the plate scales it (as
    ``Trace_ELBO``'s is). Every latent site of the guide must be reparameterizable.

    With ``doubly_reparameterised`` the value is the same and the guide's gradient is DReG's
    (Tucker et al. 2018): sum_k w_k^2 d log w_k / d z_k * d z_k / d phi with normalised weights
    w_k, through the surrogate sum_k [stop(w_k) log w_k(stop(z_k)) + stop(w_k^2)
    (log w_k(z_k) - log w_k(stop(z_k)))], log q's parameters stopped throughout: the first term
    gives the model IWAE's gradient, the second the guide its path gradient (its model gradient
    is zero, the two log weights being equal in value).
    """

    def __init__(self, particles: int = 5, doubly_reparameterised: bool = False) -> None:
        positive_int("IWAE particles", particles)
        self.particles = particles
        self.doubly_reparameterised = doubly_reparameterised

    def differentiable_loss(
        self,
        model,
        guide,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        k, batch = self.particles, x.shape[0]
        num_data = batch if num_data is None else num_data
        if indices is None:
            indices = torch.arange(batch, device=x.device)
        vectorized = k > 1 and takes_particles(model) and takes_particles(guide)
        if vectorized:
            args = (x, labels)
            kwargs = {**kwargs, "num_data": num_data, "indices": indices, "particles": k}
        else:
            args = (
                x.repeat(k, *([1] * (x.dim() - 1))),
                None if labels is None else labels.repeat(k),
            )
            kwargs = {**kwargs, "num_data": num_data, "indices": indices.repeat(k)}
        if self.doubly_reparameterised:
            guide = stuck(guide)
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        log_weights, global_terms = self._log_weights(model, guide_trace, args, kwargs, vectorized)
        bound = torch.logsumexp(log_weights, dim=0) - math.log(k)
        if self.doubly_reparameterised:
            fixed = _local_values_stopped(guide_trace)
            at_fixed, _ = self._log_weights(model, fixed, args, kwargs, vectorized)
            w = torch.softmax(log_weights.detach(), dim=0)
            surrogate = (w * at_fixed + w**2 * (log_weights - at_fixed)).sum(0)
            bound = bound.detach() + surrogate - surrogate.detach()
        return -(num_data / batch) * bound.sum() - global_terms

    def _log_weights(
        self, model, guide_trace, args: tuple, kwargs: dict, vectorized: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log w of every particle and datapoint, ``(K, batch)``, with the model replayed on
        ``guide_trace``; and the summed log-density ratio of the global sites."""
        k, x = self.particles, args[0]
        batch = x.shape[0] // (1 if vectorized or k == 1 else k)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        per_datapoint = torch.zeros(k, batch, dtype=x.dtype, device=x.device)
        global_terms = torch.zeros((), dtype=x.dtype, device=x.device)
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for name, site in trace.nodes.items():
                if (
                    site["type"] != "sample"
                    or site_is_subsample(site)
                    or (sign < 0 and site["is_observed"])
                ):
                    continue
                if sign < 0 and not site["fn"].has_rsample:
                    raise ConfigError(
                        f"the IWAE objective needs a reparameterizable guide; site {name!r} "
                        f"({type(site['fn']).__name__}) is not"
                    )
                log_prob = _log_prob(site)
                frame = _data_frame(site)
                if frame is None:
                    global_terms = global_terms + sign * site["scale"] * log_prob.sum()
                    continue
                if log_prob.shape in ((k * batch,), (k, batch)):  # repeats, or the plate
                    log_prob = log_prob.reshape(k, batch)
                elif vectorized and log_prob.shape == (batch,):
                    pass  # in the data plate, outside the particles plate: same in every particle
                else:
                    raise ConfigError(
                        f"site {name!r} has log-density shape {tuple(log_prob.shape)} inside "
                        f"the data plate; expected {(k * batch,)} or {(k, batch)}"
                    )
                plate_scale = frame.full_size / frame.size
                weight = 1.0 if site["is_observed"] else site["scale"] / plate_scale
                per_datapoint = per_datapoint + sign * weight * log_prob
        return per_datapoint, global_terms

    def loss(self, model, guide, *args: Any, **kwargs: Any) -> float:
        """The loss as a float, without gradients."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()
