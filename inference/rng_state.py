"""Every random number generator a fit draws from, captured and restored as checkpoint data.

Pyro samples from torch's global generator; Python's ``random`` and NumPy are seeded by
``pyro.set_rng_seed`` too, so all are saved (NumPy's state as tensors, since checkpoints hold
only tensors and plain values). The data order and dynamic binarization use their own
generator, saved under ``"data"``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture(data: torch.Generator) -> dict[str, Any]:
    """The state of ``data``, torch's CPU (and CUDA) generators, ``random`` and NumPy."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global
    # generator is the one pyro.set_rng_seed seeds)
    state: dict[str, Any] = {
        "data": data.get_state(),
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore(data: torch.Generator, state: dict[str, Any]) -> None:
    """Set every generator :func:`capture` saved (older checkpoints may lack some)."""
    data.set_state(state["data"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        saved = state["numpy"]
        np.random.set_state(  # noqa: NPY002
            (
                saved["kind"],
                saved["keys"].numpy().astype(np.uint32),
                saved["pos"],
                saved["has_gauss"],
                saved["cached"],
            )
        )
