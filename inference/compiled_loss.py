"""Pyro programs captured as ATen graphs and compiled with ``torch.compile``: the SVI loss
(:class:`CompiledLoss`) and, through :class:`CompiledModule`, the importance-sampled estimates
of :func:`~pyro_vae.inference.evaluate`.

The traced loss (:mod:`.traced_loss`) removes Pyro's per-step Python work but still runs the
graph one operation at a time. Here one run of model and guide is captured with
``torch.fx``'s ``make_fx`` instead: an ATen-level graph whose inputs are the program's
parameters and buffers, the minibatch, its indices and the KL weight. ``torch.compile``
(Inductor) then fuses the elementwise work of forward and backward into generated kernels (C++
on a CPU, Triton on a GPU). Dynamo never sees Pyro's effect handlers, so nothing breaks the
graph at sample sites.

Random draws go through torch's own random operations (Inductor's ``fallback_random``), so a
compiled loss draws exactly what eager Pyro draws from the same RNG state: loss and gradients
equal eager Pyro's on the same draws (tested), and seeds, checkpoints and resumes behave as
without compiling.

The costs: compiling takes from seconds to about a minute for each minibatch shape (the last,
smaller batch of an epoch is a second shape; Inductor caches its kernels on disk, so a later
fit of the same shapes starts faster). Validation runs once per shape, in an eager run before
the capture; afterwards a NaN shows up only as a non-finite loss, which
:func:`~pyro_vae.inference.fit` flags. As with tracing, the program's structure must not depend
on the data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch
from torch import nn
from torch.func import functional_call

from pyro_vae.core.errors import ConfigError

from .traced_loss import (
    Objective,
    first_line,
    objective_inputs,
    pyro_scalars_kept_as_tensors,
)

#: Inductor settings: draw through torch's random ops, so compiled draws equal eager ones.
INDUCTOR_OPTIONS = {"fallback_random": True}


class CompiledModule:
    """``module(*inputs)`` captured with ``make_fx`` and compiled, once per input shapes.

    The module's parameters and buffers are inputs of the graph, looked up once, at the first
    call (after any lazily built ones exist): optimizers and ``load_state_dict`` update these
    very tensors in place, so every call sees their current values.

    Args:
        module: A module whose forward runs a Pyro program on tensor inputs.
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._compiled: dict[tuple, Callable[..., Any]] = {}
        self._names: tuple[list[str], list[str]] | None = None
        self._state: tuple[torch.Tensor, ...] = ()

    def __call__(self, *inputs: torch.Tensor) -> Any:
        key = tuple(t.shape for t in inputs)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled(*self._state, *inputs)
        if self._names is None:
            params = dict(self._module.named_parameters())
            buffers = dict(self._module.named_buffers())
            self._names = (list(params), list(buffers))
            self._state = (*params.values(), *buffers.values())
        compiled = self._compile(inputs)
        try:  # Inductor compiles on the first call
            result = compiled(*self._state, *inputs)
        except RuntimeError as err:
            raise ConfigError(f"this model cannot be compiled: {first_line(err)}") from None
        self._compiled[key] = compiled
        return result

    def _compile(self, inputs: tuple[torch.Tensor, ...]) -> Callable[..., Any]:
        module = self._module
        param_names, buffer_names = self._names
        split = len(param_names) + len(buffer_names)

        def run(*tensors: torch.Tensor) -> Any:
            params = dict(zip(param_names, tensors[: len(param_names)], strict=True))
            buffers = dict(zip(buffer_names, tensors[len(param_names) : split], strict=True))
            return functional_call(module, (params, buffers), tensors[split:])

        from torch.fx.experimental.proxy_tensor import make_fx

        cuda = [x.device for x in inputs[:1] if x.is_cuda]
        # both runs draw from a forked RNG, so the caller's draws are those of an eager run
        with torch.random.fork_rng(devices=cuda):
            with torch.no_grad():
                module(*inputs)  # validation, once, on real values
            try:
                with pyro_scalars_kept_as_tensors(), pyro.validation_enabled(False):
                    graph = make_fx(run)(*self._state, *inputs)
            except (RuntimeError, TypeError) as err:
                raise ConfigError(
                    f"this model cannot be captured for compile=True: {first_line(err)}"
                ) from None
        return torch.compile(graph, dynamic=False, options=INDUCTOR_OPTIONS)


class CompiledLoss:
    """``loss(x, labels, indices, beta)``: the objective's differentiable loss, compiled.

    Takes the arguments of :class:`~.traced_loss.TracedLoss` (``elbo``, ``program``,
    ``num_data``) and is called the same way.
    """

    def __init__(self, elbo, program: nn.Module, num_data: int) -> None:
        self._compiled = CompiledModule(Objective(elbo, program, num_data))

    def __call__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None,
        indices: torch.Tensor,
        beta: float,
    ) -> torch.Tensor:
        return self._compiled(*objective_inputs(x, labels, indices, beta))
