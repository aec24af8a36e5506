"""How grey values in [0, 1] become data: the binarization modes every result records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.errors import DataError
from ..core.registry import Registry

#: Seed of the one-off binarization of test data (fixed so every run scores the same images).
TEST_BINARIZATION_SEED = 2020


@dataclass(frozen=True)
class Binarization:
    """How grey values in [0, 1] become data: ``apply(x, generator)``.

    ``resample`` says whether training data are drawn afresh every epoch (dynamic).
    """

    name: str
    resample: bool
    apply: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]

    def fixed(self, x: torch.Tensor, seed: int = TEST_BINARIZATION_SEED) -> torch.Tensor:
        """Binarize once with a fixed seed (test data, or train data for evaluation)."""
        check_unit_interval(x, self.name)
        gen = torch.Generator(device=x.device).manual_seed(seed)
        return self.apply(x, gen)


def check_unit_interval(x: torch.Tensor, mode: str) -> None:
    """Binarization (other than ``none``) needs grey values in [0, 1]."""
    if mode != "none" and ((x < 0) | (x > 1)).any():
        raise DataError(f"binarization {mode!r} needs data in [0, 1]; use --binarization none")


BINARIZATIONS: Registry[Binarization] = Registry("binarization")
for _binarization in (
    Binarization("dynamic", True, lambda x, gen: torch.bernoulli(x, generator=gen)),
    Binarization("threshold", False, lambda x, gen: (x > 0.5).to(x.dtype)),
    Binarization("none", False, lambda x, gen: x),
):
    BINARIZATIONS.register(_binarization.name)(_binarization)
