"""Optimizers by name: ``factory(params, lr) -> torch.optim.Optimizer``."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pyro.optim.clipped_adam import ClippedAdam

from pyro_vae.core.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@OPTIMIZERS.register("adam")
def adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam``."""
    return torch.optim.Adam(params, lr=lr)


@OPTIMIZERS.register("clipped-adam")
def clipped_adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """Pyro's ``ClippedAdam``: Adam with each gradient clipped to norm 10."""
    return ClippedAdam(params, lr=lr, clip_norm=10.0)
