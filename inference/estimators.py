"""Per-datapoint estimators of the ELBO and of log p(x) by importance sampling.

The guide is traced under a plate of K particles (dim -2), the model is replayed on its draws,
and each site's log-density is read per datapoint without plate or beta scaling, so every
number is "nats per datapoint" whatever the training used. Particles and
datapoints are processed in chunks so memory stays bounded for any K: by default as few
datapoints per chunk as let all K draws of each fit under the cap, so the encoder runs about
once per datapoint and the decoder does the work. With ``jit=True`` each chunk shape is traced
once (:func:`~pyro_vae.inference.traced_loss.trace_module`) and Pyro's per-chunk Python
bookkeeping disappears, which pays with many chunks. With ``compile=True`` each chunk shape is
captured and compiled instead (:class:`~pyro_vae.inference.compiled_loss.CompiledModule`), which
also fuses the per-pixel log-density work; the draws are the same as eager ones.

Under a prior that conditions on labels (``prior.needs_labels``, e.g. the class-conditional
prior), log p(x) is the marginal ``log sum_y p(y) p(x|y)`` with p(y) uniform over the prior's
``num_classes``: every chunk is run once per class on the same draws (the guide does not read
labels), which is importance sampling with the mixture prior ``sum_y p(y) p(z|y)``. Every
number named ELBO, log-likelihood or KL is then marginal; ``log p(x | y)`` at the given labels
is reported beside it as ``log_likelihood_given_label``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pyro
import torch
from pyro import poutine
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import positive_int

from .compiled_loss import CompiledModule
from .svi import Program
from .traced_loss import trace_module

#: Default cap on particles x datapoints x features held at once (floats).
MAX_ELEMENTS = 2**21
#: Most datapoints in one chunk when ``batch_size`` is left to :func:`evaluate`.
MAX_CHUNK_DATAPOINTS = 100


class Evaluation(NamedTuple):
    """Per-datapoint estimates, each a tensor of shape ``(num_data,)`` in nats.

    - ``elbo``: mean over the K draws of log p(x, z) - log q(z|x);
    - ``log_likelihood``: log (1/K) sum_k p(x, z_k) / q(z_k|x), the importance-sampled log p(x)
      (a lower bound in expectation that tightens as K grows);
    - ``reconstruction``: mean of log p(x|z) under q;
    - ``kl``: Monte Carlo KL(q(z|x) || p(z)) = reconstruction - elbo;
    - ``log_weights``: with ``keep_log_weights=True``, every log p(x, z_k) - log q(z_k|x),
      ``(num_data, K)`` (the raw material of PSIS / Pareto k-hat); otherwise ``None``;
    - ``log_likelihood_given_label``: under a label-conditioned prior with labels given, the
      importance-sampled log p(x | y) at each datapoint's label; otherwise ``None``;
    - ``label_classes``: the number of classes the labels were marginalised over (uniform
      p(y)), or ``None``.

    Under a label-conditioned prior ``elbo``, ``log_likelihood``, ``kl`` and ``log_weights``
    are those of the marginal model with p(z) = sum_y p(y) p(z|y).
    """

    elbo: torch.Tensor
    log_likelihood: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    is_samples: int
    log_weights: torch.Tensor | None = None
    log_likelihood_given_label: torch.Tensor | None = None
    label_classes: int | None = None

    def summary(self) -> dict[str, float]:
        """Means over datapoints, and the IS negative log-likelihood, as plain floats."""
        summary = {
            "elbo": self.elbo.mean().item(),
            "log_likelihood": self.log_likelihood.mean().item(),
            "nll": -self.log_likelihood.mean().item(),
            "reconstruction": self.reconstruction.mean().item(),
            "kl": self.kl.mean().item(),
            "is_samples": self.is_samples,
        }
        if self.label_classes is not None:
            summary["label_classes"] = self.label_classes
        if self.log_likelihood_given_label is not None:
            summary["log_likelihood_given_label"] = self.log_likelihood_given_label.mean().item()
        return summary


def _site_log_prob(site: dict, shape: torch.Size) -> torch.Tensor:
    value = site["fn"].log_prob(site["value"])
    if site["mask"] is not None:
        value = value * site["mask"]
    if value.shape != shape:
        try:
            value = value.expand(shape)
        except RuntimeError:
            raise ConfigError(
                f"site {site['name']!r} has log-density shape {tuple(value.shape)}; the "
                "estimators need every sample site inside the data plate"
            ) from None
    return value


def _log_weight_terms(
    program: Program, x: torch.Tensor, labels: torch.Tensor | None, particles: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x|z) and log p(z) - log q(z|x), each ``(particles, batch)``."""
    return _terms_of(*_traces(program, x, labels, particles), x, particles)


def _traces(program: Program, x: torch.Tensor, labels: torch.Tensor | None, particles: int):
    """The guide's trace under a plate of ``particles`` (dim -2), and the model's replayed
    on its draws."""
    plate = pyro.plate("particles", particles, dim=-2)
    guide_trace = poutine.trace(plate(program.guide)).get_trace(x, labels)
    replayed = poutine.replay(plate(program.model), trace=guide_trace)
    return guide_trace, poutine.trace(replayed).get_trace(x, labels)


def _terms_of(
    guide_trace, model_trace, x: torch.Tensor, particles: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x|z) and log p(z) - log q(z|x) of two traces :func:`_traces` made."""
    shape = torch.Size((particles, x.shape[0]))
    observed = torch.zeros(shape, dtype=x.dtype, device=x.device)
    latent = torch.zeros(shape, dtype=x.dtype, device=x.device)
    for site in model_trace.nodes.values():
        if site["type"] == "sample":
            if site["is_observed"]:
                observed = observed + _site_log_prob(site, shape)
            else:
                latent = latent + _site_log_prob(site, shape)
    for site in guide_trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"]:
            latent = latent - _site_log_prob(site, shape)
    return observed, latent


@torch.no_grad()
def weighted_draws(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    particles: int = 1000,
    max_elements: int = MAX_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws z_k ~ q(z|x), ``(K, num_data, latent_dim)``, and their importance log weights
    log p(x, z_k) - log q(z_k|x), ``(K, num_data)``: q's draws for reweighting (PSIS).

    Drawn a few particles at a time, so that particles x datapoints x features stay under
    ``max_elements``.
    """
    positive_int("particles", particles)
    per_chunk = max(1, max_elements // max(1, x.numel()))
    draws, log_weights = [], []
    for start in range(0, particles, per_chunk):
        k = min(per_chunk, particles - start)
        guide_trace, model_trace = _traces(program, x, labels, k)
        observed, latent = _terms_of(guide_trace, model_trace, x, k)
        draws.append(guide_trace.nodes["z"]["value"].expand(k, *x.shape[:1], -1))
        log_weights.append(observed + latent)
    return torch.cat(draws), torch.cat(log_weights)


class _LogWeightTerms(nn.Module):
    """``_log_weight_terms`` for a fixed number of particles, as a module to trace."""

    def __init__(self, program: Program, particles: int) -> None:
        super().__init__()
        self.program = program
        self.particles = particles

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _log_weight_terms(self.program, x, labels, self.particles)


def chunk_shape(
    num_data: int,
    features: int,
    is_samples: int,
    batch_size: int | None = None,
    max_elements: int = MAX_ELEMENTS,
) -> tuple[int, int]:
    """(datapoints, particles) per chunk, their product times ``features`` within the cap.

    ``batch_size=None`` takes as few datapoints as let all ``is_samples`` draws fit (at least
    one, at most :data:`MAX_CHUNK_DATAPOINTS`), so the guide's per-datapoint work is not
    repeated for every chunk of particles; an integer fixes the datapoints per chunk.
    """
    features = max(1, features)
    if batch_size is None:
        fit = max_elements // (features * is_samples)
        batch_size = max(1, min(MAX_CHUNK_DATAPOINTS, num_data, fit))
    particles = max(1, min(is_samples, max_elements // (batch_size * features)))
    return batch_size, particles


def label_classes(program: Program) -> int | None:
    """The number of classes the program's prior conditions on, or ``None`` if it reads no
    labels."""
    prior = getattr(program, "prior", None)
    if prior is None or not getattr(prior, "needs_labels", False):
        return None
    return int(prior.num_classes)


def _terms_function(
    program: Program, jit: bool, compile: bool
) -> Callable[[torch.Tensor, torch.Tensor | None, int], tuple[torch.Tensor, torch.Tensor]]:
    """``terms(x, labels, k)``: eager, or traced / compiled once per shape."""
    traced: dict[tuple, Callable] = {}
    compiled: dict[int, CompiledModule] = {}

    def terms(xb: torch.Tensor, yb: torch.Tensor | None, k: int):
        inputs = (xb,) if yb is None else (xb, yb)
        if jit:
            key = (k, *(t.shape for t in inputs))
            if key not in traced:
                traced[key] = trace_module(_LogWeightTerms(program, k), inputs)
            return traced[key](*inputs)
        if compile:
            if k not in compiled:
                compiled[k] = CompiledModule(_LogWeightTerms(program, k))
            return compiled[k](*inputs)
        return _log_weight_terms(program, xb, yb, k)

    return terms


def _rng_state(device: torch.device) -> tuple:
    cpu = torch.get_rng_state()
    return (cpu, torch.cuda.get_rng_state(device)) if device.type == "cuda" else (cpu, None)


def _set_rng_state(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _marginal_terms(terms, xb, yb, k: int, classes: int):
    """log p(x|z), log sum_y p(y) p(z|y) - log q(z|x), and the latter at the given labels
    (``None`` without labels), from one pass per class on the same draws."""
    state = _rng_state(xb.device)
    latents = []
    for c in range(classes):
        _set_rng_state(state, xb.device)  # the same draws for every class
        observed, latent = terms(xb, torch.full((xb.shape[0],), c, device=xb.device), k)
        latents.append(latent)
    stacked = torch.stack(latents)  # (classes, k, batch)
    marginal = torch.logsumexp(stacked, dim=0) - math.log(classes)
    given = None
    if yb is not None:
        given = stacked[yb, :, torch.arange(xb.shape[0], device=xb.device)].T
    return observed, marginal, given


def _chunks(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    is_samples: int,
    batch_size: int | None,
    max_elements: int,
    jit: bool,
    compile: bool,
    classes: int | None,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Yield ``(datapoint slice, log p(x|z), log p(z) - log q(z|x), the same at the given
    labels)`` chunk by chunk; the last is ``None`` unless the prior reads labels."""
    features = x.shape[1] if x.dim() > 1 else 1
    batch_size, per_chunk = chunk_shape(x.shape[0], features, is_samples, batch_size, max_elements)
    terms = _terms_function(program, jit, compile)
    for start in range(0, x.shape[0], batch_size):
        rows = slice(start, min(start + batch_size, x.shape[0]))
        xb, yb = x[rows], None if labels is None else labels[rows]
        done = 0
        while done < is_samples:
            k = min(per_chunk, is_samples - done)
            if classes is None:
                yield rows, *terms(xb, yb, k), None
            else:
                yield rows, *_marginal_terms(terms, xb, yb, k, classes)
            done += k


def _check(is_samples: int, batch_size: int | None, jit: bool, compile: bool) -> None:
    positive_int("is_samples", is_samples)
    if batch_size is not None:
        positive_int("batch_size", batch_size)
    if jit and compile:
        raise ConfigError("choose one of jit (trace the estimate) and compile (compile it)")


@torch.no_grad()
def evaluate(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    is_samples: int = 1000,
    batch_size: int | None = None,
    max_elements: int = MAX_ELEMENTS,
    keep_log_weights: bool = False,
    jit: bool = False,
    compile: bool = False,
    marginalize_labels: bool = True,
) -> Evaluation:
    """ELBO, importance-sampled log p(x), reconstruction and KL for every datapoint.

    Args:
        program: Module with ``model`` and ``guide`` (the guide is the proposal).
        x: Data, ``(num_data, features)``, already binarized as the model expects.
        labels: Labels for priors that use them.
        is_samples: K, draws from the guide per datapoint.
        batch_size: Datapoints per chunk; ``None`` chooses (see :func:`chunk_shape`).
        max_elements: Cap on particles x datapoints x features per chunk.
        keep_log_weights: Also return every log importance weight, ``(num_data, K)``.
        jit: Trace each chunk shape once and replay it: the same draws and numbers as an
            untraced run, without Pyro's per-chunk Python work; validation checks run while
            tracing only.
        compile: Capture and compile each chunk shape once (``torch.compile``): the same
            draws as an untraced run, with the per-pixel work fused; each shape first costs a
            compilation. Not together with ``jit``.
        marginalize_labels: Under a label-conditioned prior, report the marginal over the
            labels (see the module docstring); ``False`` conditions every number on the given
            ``labels`` instead (then ``log_likelihood`` is log p(x | y)).
    """
    _check(is_samples, batch_size, jit, compile)
    classes = label_classes(program) if marginalize_labels else None
    sums = _Sums(x, is_samples, keep_log_weights)
    for chunk in _chunks(
        program, x, labels, is_samples, batch_size, max_elements, jit, compile, classes
    ):
        sums.add(*chunk)
    return sums.evaluation(classes)


class _Sums:
    """Running per-datapoint sums over the chunks of :func:`evaluate`: log-sum-exp of the log
    weights (given the label too, under a label-conditioned prior), their sum, the
    reconstruction terms' sum, and optionally every log weight."""

    def __init__(self, x: torch.Tensor, is_samples: int, keep_log_weights: bool) -> None:
        n, self.is_samples = x.shape[0], is_samples
        self.lse = torch.full((n,), -math.inf, dtype=torch.float64, device=x.device)
        self.elbo = torch.zeros(n, dtype=torch.float64, device=x.device)
        self.recon = torch.zeros(n, dtype=torch.float64, device=x.device)
        self.kept = (
            torch.empty(n, is_samples, dtype=x.dtype, device=x.device) if keep_log_weights else None
        )
        self.lse_given: torch.Tensor | None = None
        self.col = 0  # columns of ``kept`` filled for the current rows (their chunks come in a row)

    def add(
        self,
        rows: torch.Tensor | slice,
        observed: torch.Tensor,
        latent: torch.Tensor,
        given: torch.Tensor | None,
    ) -> None:
        """One chunk: ``observed`` and ``latent`` log-density terms, ``(draws, rows)``."""
        if given is not None:
            if self.lse_given is None:
                self.lse_given = torch.full_like(self.lse, -math.inf)
            log_w_given = torch.logsumexp((observed + given).double(), 0)
            self.lse_given[rows] = torch.logaddexp(self.lse_given[rows], log_w_given)
        log_w = observed + latent
        if self.kept is not None:
            self.col = 0 if self.col == self.is_samples else self.col
            self.kept[rows, self.col : self.col + log_w.shape[0]] = log_w.T
            self.col += log_w.shape[0]
        log_w = log_w.double()
        self.lse[rows] = torch.logaddexp(self.lse[rows], torch.logsumexp(log_w, dim=0))
        self.elbo[rows] += log_w.sum(0)
        self.recon[rows] += observed.double().sum(0)

    def evaluation(self, classes: int | None) -> Evaluation:
        k = self.is_samples
        elbo, recon = self.elbo / k, self.recon / k
        given = None if self.lse_given is None else self.lse_given - math.log(k)
        return Evaluation(
            elbo, self.lse - math.log(k), recon, recon - elbo, k, self.kept, given, classes
        )


def log_importance_weights(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    is_samples: int = 1000,
    batch_size: int | None = None,
    max_elements: int = MAX_ELEMENTS,
    jit: bool = False,
    compile: bool = False,
) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k|x) for K guide draws per datapoint: ``(num_data, K)``.

    The raw material of PSIS / Pareto k-hat diagnostics (one row per datapoint).
    """
    return evaluate(
        program,
        x,
        labels,
        is_samples=is_samples,
        batch_size=batch_size,
        max_elements=max_elements,
        keep_log_weights=True,
        jit=jit,
        compile=compile,
    ).log_weights
