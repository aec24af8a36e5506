"""A saved fit state (from a checkpoint) checked against the program it is to be loaded into.

A checkpoint is untrusted input: it may come from another configuration, another version, or a
hand-edited file. :func:`check_fit_state` compares every part of it with what the fit would
build — parameter names, shapes and dtypes, the optimizer's groups and per-parameter buffers,
every random number generator's state, the history and the mid-epoch position — and raises
one :class:`~pyro_vae.core.errors.CheckpointError` naming the first difference. Nothing is loaded
or written before it has passed.
"""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from pyro_vae.core.errors import CheckpointError

#: Keys every fit state holds; ``position`` is there only when a fit stopped mid-epoch.
STATE_KEYS = ("params", "optimizer", "rng", "history")
POSITION_KEYS = ("epoch", "step", "epoch_rng", "total", "seconds")


def check_fit_state(
    state: Any,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data_generator: torch.Generator,
    history: type,
    steps_per_epoch: int,
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` can be loaded into this fit.

    Args:
        state: The saved state (a dict as ``fit`` writes it).
        module: The program, with its lazily built parameters already created.
        optimizer: The optimizer over the program's trainable parameters.
        data_generator: The generator of data order and binarization.
        history: The dataclass of the fit's history (its fields are the saved lists).
        steps_per_epoch: Steps in one epoch of this fit (bounds a mid-epoch position).
    """
    _require_dict(state, "the fit state", STATE_KEYS)
    _check_params(state["params"], module.state_dict())
    _check_optimizer(state["optimizer"], optimizer)
    _check_rng(state["rng"], data_generator)
    epochs = _check_history(state["history"], tuple(f.name for f in fields(history)))
    if state.get("position") is not None:
        _check_position(state["position"], epochs, steps_per_epoch, data_generator)


def check_trained_params(state: Any, module: torch.nn.Module, history: type) -> int:
    """Raise :class:`CheckpointError` unless ``state`` holds parameters that fit ``module``
    (lazily built parameters already created) and a well-formed history; returns its epochs.

    What evaluating a trained run needs: the optimizer and generators are not checked.
    """
    _require_dict(state, "the fit state", ("params", "history"))
    _check_params(state["params"], module.state_dict())
    return _check_history(state["history"], tuple(f.name for f in fields(history)))


def _fail(what: str) -> CheckpointError:
    return CheckpointError(f"the checkpoint does not fit this run: {what}")


def _require_dict(value: Any, what: str, keys: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise _fail(f"{what} is a {type(value).__name__}, not a dict")
    missing = [k for k in keys if k not in value]
    if missing:
        raise _fail(f"{what} lacks {', '.join(missing)}")


def _check_tensor(value: Any, like: torch.Tensor, what: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise _fail(f"{what} is a {type(value).__name__}, not a tensor")
    if value.shape != like.shape:
        raise _fail(f"{what} has shape {tuple(value.shape)}, the model's has {tuple(like.shape)}")
    if value.dtype != like.dtype:
        raise _fail(f"{what} has dtype {value.dtype}, the model's has {like.dtype}")
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise _fail(f"{what} holds NaN or infinite values")


def _check_params(params: Any, expected: dict[str, torch.Tensor]) -> None:
    _require_dict(params, "the parameters", tuple(expected))
    extra = sorted(set(params) - set(expected))
    if extra:
        raise _fail(f"parameters {', '.join(map(str, extra[:3]))} are not in the model")
    for name, like in expected.items():
        _check_tensor(params[name], like, f"parameter {name}")


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer) -> None:
    _require_dict(saved, "the optimizer state", ("state", "param_groups"))
    groups, state = saved["param_groups"], saved["state"]
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise _fail("the optimizer's parameter groups differ")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ids: list[Any] = []
    for group, own in zip(groups, optimizer.param_groups, strict=True):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise _fail("an optimizer parameter group is malformed")
        if len(group["params"]) != len(own["params"]):
            raise _fail("the optimizer holds another number of parameters")
        ids += group["params"]
    if not isinstance(state, dict) or not set(state) <= set(ids):
        raise _fail("the optimizer's buffers name parameters it does not have")
    for key, param in zip(ids, params, strict=True):
        buffers = state.get(key, {})
        if not isinstance(buffers, dict):
            raise _fail("an optimizer buffer is malformed")
        for name, value in buffers.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                _check_tensor(value, param.detach(), f"optimizer buffer {name}")


def _check_generator_state(value: Any, generator: torch.Generator, what: str) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
        raise _fail(f"{what} is not a generator state")
    try:
        torch.Generator(device=generator.device).set_state(value)
    except (RuntimeError, TypeError, ValueError):
        raise _fail(f"{what} is not a generator state for {generator.device}") from None


def _check_rng(rng: Any, data_generator: torch.Generator) -> None:
    _require_dict(rng, "the random number state", ("data", "torch"))
    _check_generator_state(rng["data"], data_generator, "the data generator's state")
    _check_generator_state(rng["torch"], torch.Generator(), "torch's generator state")
    if "cuda" in rng and torch.cuda.is_available():
        _check_generator_state(rng["cuda"], torch.Generator("cuda"), "the CUDA generator state")
    try:
        if "python" in rng:
            version, internal, gauss = rng["python"]
            random.Random().setstate((version, tuple(internal), gauss))
        if "numpy" in rng:
            saved = rng["numpy"]
            np.random.RandomState().set_state(  # noqa: NPY002 - a throwaway generator
                (
                    saved["kind"],
                    saved["keys"].numpy().astype(np.uint32),
                    saved["pos"],
                    saved["has_gauss"],
                    saved["cached"],
                )
            )
    except (TypeError, ValueError, KeyError, AttributeError, IndexError):
        raise _fail("the Python or NumPy generator state is malformed") from None


def _check_history(history: Any, names: tuple[str, ...]) -> int:
    _require_dict(history, "the history", names)
    if not all(isinstance(history[name], list) for name in names):
        raise _fail("the history's entries are not lists")
    per_epoch = [name for name in names if name != "rollbacks"]
    lengths = {len(history[name]) for name in per_epoch}
    if len(lengths) != 1:
        raise _fail("the history's per-epoch lists have different lengths")
    for name in per_epoch:
        if not all(_is_number(v) for v in history[name]):
            raise _fail(f"the history's {name} are not all numbers")
    return lengths.pop()


def _check_position(
    position: Any, epochs: int, steps_per_epoch: int, data_generator: torch.Generator
) -> None:
    _require_dict(position, "the mid-epoch position", POSITION_KEYS)
    if position["epoch"] != epochs or not isinstance(position["step"], int):
        raise _fail("the mid-epoch position does not follow the history")
    if not 1 <= position["step"] < steps_per_epoch or not all(
        _is_number(position[k]) for k in ("total", "seconds")
    ):
        raise _fail("the mid-epoch position is malformed")
    _check_generator_state(position["epoch_rng"], data_generator, "the epoch's generator state")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
