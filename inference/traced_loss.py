"""An SVI objective's loss compiled with TorchScript tracing, for programs with local params.

Pyro's ``JitTrace_ELBO`` looks its parameters up in the global param store, which holds none of
ours (they are module-local). Tracing a small module that *owns* the program instead makes every
parameter an attribute of the traced graph, so gradients reach the very tensors the optimizer
holds. The trace records one run of model and guide, random draws included (each call draws
afresh), and replaces Pyro's Python bookkeeping by a fixed graph: the per-step overhead that
dominates small minibatches on a CPU.

What a trace cannot keep: Python-level checks that depend on values. Distribution and shape
validation run once, while tracing; afterwards a NaN shows up only as a non-finite loss, which
:func:`~pyro_vae.inference.fit` flags. The program's structure must not depend on the data (true
of every model here); each new minibatch shape (the last, smaller batch of an epoch) is traced
once and cached.

``torch.jit.trace`` is deprecated in favour of ``torch.compile``, which cannot yet follow Pyro's
effect handlers without breaking the graph at every sample site; hence tracing, opt-in
(``jit=False`` is the default), on the Python versions we support (3.11-3.13).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pyro.infer import trace_elbo, trace_mean_field_elbo
from torch import nn

from pyro_vae.core.errors import ConfigError


@contextlib.contextmanager
def pyro_scalars_kept_as_tensors() -> Iterator[None]:
    """Pyro's ``Trace_ELBO`` and ``TraceMeanField_ELBO`` form the reported value with
    ``torch_item``, i.e. ``.item()``, and check it with ``warn_if_nan``: a recorded graph would
    freeze that number as a constant, so every later call would return a stale value
    (gradients stay right), and a graph capture (``make_fx``) cannot read values at all. While
    recording, the value is kept as a detached tensor, the way Pyro's own JIT ELBOs do, and the
    NaN check is left to :func:`~pyro_vae.inference.fit`, which flags non-finite losses."""
    patched = [(trace_elbo, "torch_item"), (trace_mean_field_elbo, "torch_item")]
    patched += [(trace_elbo, "warn_if_nan"), (trace_mean_field_elbo, "warn_if_nan")]
    originals = [getattr(module, name) for module, name in patched]
    replacements = {"torch_item": _detached, "warn_if_nan": _unchecked}
    for module, name in patched:
        setattr(module, name, replacements[name])
    try:
        yield
    finally:
        for (module, name), original in zip(patched, originals, strict=True):
            setattr(module, name, original)


def _detached(x: Any) -> Any:
    return x.detach() if isinstance(x, torch.Tensor) else x


def _unchecked(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


class Objective(nn.Module):
    """Owns the program so a module trace sees its parameters; forward is the SVI loss."""

    def __init__(self, elbo, program: nn.Module, num_data: int) -> None:
        super().__init__()
        self.program = program
        self.elbo = elbo
        self.num_data = num_data

    def forward(
        self,
        x: torch.Tensor,
        indices: torch.Tensor,
        beta: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.elbo.differentiable_loss(
            self.program.model,
            self.program.guide,
            x,
            labels,
            num_data=self.num_data,
            indices=indices,
            beta=beta,
        )


def objective_inputs(
    x: torch.Tensor, labels: torch.Tensor | None, indices: torch.Tensor, beta: float
) -> tuple[torch.Tensor, ...]:
    """The positional inputs of :class:`Objective` for one minibatch, the KL weight a tensor."""
    # torch.full fills on the device; torch.tensor would copy from the host and, on a GPU,
    # wait for the stream at every step
    inputs = (x, indices, torch.full((), float(beta), device=x.device, dtype=x.dtype))
    return inputs if labels is None else (*inputs, labels)


class TracedLoss:
    """``loss(x, labels, indices, beta)``: the objective's differentiable loss, traced.

    Args:
        elbo: A Pyro ELBO object (``differentiable_loss(model, guide, *args, **kwargs)``).
        program: Module with ``model`` and ``guide`` in the VAE calling convention.
        num_data: Size of the data set the data plate scales to.
    """

    def __init__(self, elbo, program: nn.Module, num_data: int) -> None:
        self._objective = Objective(elbo, program, num_data)
        self._traced: dict[tuple, Callable[..., torch.Tensor]] = {}

    def __call__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None,
        indices: torch.Tensor,
        beta: float,
    ) -> torch.Tensor:
        inputs = objective_inputs(x, labels, indices, beta)
        key = tuple(t.shape for t in inputs)
        traced = self._traced.get(key)
        if traced is None:
            traced = self._traced[key] = self._trace(inputs)
        # The profiling executor would run the first calls of a trace one way and later calls
        # through an optimised graph, whose float rounding differs a little: a resumed fit,
        # whose trace starts counting afresh, would then drift from an uninterrupted one.
        # Unoptimised execution runs every call alike (as fast here: docs/benchmarks.md).
        with torch.jit.optimized_execution(False):
            return traced(*inputs)

    def _trace(self, inputs: tuple[torch.Tensor, ...]) -> Callable[..., torch.Tensor]:
        with pyro_scalars_kept_as_tensors():
            return trace_module(self._objective, inputs)


def trace_module(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Callable[..., Any]:
    """``torch.jit.trace(module, inputs)`` for Pyro programs, without touching the fit's RNG.

    Tracing runs the program once; forking the RNG keeps the draws that follow the ones an
    untraced run would make. Trace failures become a one-line :class:`ConfigError`.
    """
    cuda = [t.device for t in inputs[:1] if t.is_cuda]
    with warnings.catch_warnings(), torch.random.fork_rng(devices=cuda):
        # value-dependent Python checks are evaluated once; that is the documented cost
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, see above
        try:
            return torch.jit.trace(module, inputs, check_trace=False)
        except (RuntimeError, TypeError) as err:
            raise ConfigError(
                f"this model cannot be traced for jit=True: {first_line(err)}"
            ) from None


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when the message is empty)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
