"""Stochastic variational inference: minibatch SVI on any (model, guide) pair.

The loop uses Pyro's ELBO objects for the loss (``elbo.differentiable_loss``) and a torch
optimizer over the program's own parameters (module-local, see
:func:`pyro_vae.models.local_params`), so its whole state is a ``state_dict``. Its settings and
records are in :mod:`.svi_config` (and importable from here).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pyro
import torch
from pyro_vae.models import VAE
from tqdm.auto import tqdm

from pyro_vae.core.errors import ConfigError, DataError, TrainingDiverged, TrainingInterrupted
from pyro_vae.core.validate import check_allocation

from . import rng_state
from .compiled_loss import CompiledLoss
from .distributed import Workers
from .fit_state import check_fit_state
from .guide_checks import check_program_guide
from .optimizers import OPTIMIZERS
from .svi_config import (
    MAX_ROLLBACKS,
    ON_DIVERGENCE,
    ROLLBACK_LR_FACTOR,
    STEP_NUMBERS_PER_FEATURE,
    Binarization,
    FitResult,
    FitState,
    Program,
    SVIConfig,
)
from .traced_loss import TracedLoss

__all__ = [
    "MAX_ROLLBACKS",
    "ON_DIVERGENCE",
    "ROLLBACK_LR_FACTOR",
    "STEP_NUMBERS_PER_FEATURE",
    "Binarization",
    "FitResult",
    "FitState",
    "Program",
    "SVIConfig",
    "check_resume_state",
    "check_step_size",
    "fit",
]


def _step_loss(
    elbo: Any, program: Program, num_data: int, config: SVIConfig
) -> Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor, float], torch.Tensor]:
    """``loss(x, labels, indices, beta)`` of one minibatch: eager Pyro, traced or compiled."""
    if config.jit:
        return TracedLoss(elbo, program, num_data)
    if config.compile:
        return CompiledLoss(elbo, program, num_data)

    def loss(
        x: torch.Tensor, labels: torch.Tensor | None, indices: torch.Tensor, beta: float
    ) -> torch.Tensor:
        return elbo.differentiable_loss(
            program.model, program.guide, x, labels, num_data=num_data, indices=indices, beta=beta
        )

    return loss


def check_step_size(program: Any, x: torch.Tensor, config: SVIConfig, world_size: int = 1) -> None:
    """Refuse a training step that cannot fit in memory, before any is taken.

    Per particle and datapoint a step holds :data:`STEP_NUMBERS_PER_FEATURE` numbers per
    feature (the likelihood's terms and gradients) and, for a VAE, every value its networks'
    layers produce, with its gradient and a temporary (counted by one forward pass of one
    datapoint, :meth:`~pyro_vae.models.VAE.activations_per_datapoint`).
    """
    vae = program if isinstance(program, VAE) else getattr(program, "vae", None)
    features = x.shape[1] if x.dim() > 1 else 1
    layers = vae.activations_per_datapoint(x) if isinstance(vae, VAE) else 0
    batch = config.batch_size // world_size
    check_allocation(
        f"a training step with {config.particles} particles of each of {batch} datapoints",
        config.particles * batch * (STEP_NUMBERS_PER_FEATURE * features + 3 * layers),
    )


def fit(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    config: SVIConfig | None = None,
    binarization: Binarization | None = None,
    seed: int = 0,
    state: FitState | dict[str, Any] | None = None,
    on_epoch: Callable[[FitResult, FitState], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: Workers | None = None,
    progress: bool = False,
    objective: Any | None = None,
) -> FitResult:
    """Fit ``program.model`` / ``program.guide`` to ``x`` by minibatch SVI.

    Args:
        program: The VAE (or any module with ``model`` and ``guide``), already on x's device.
        x: Training data, ``(num_data, features)``.
        labels: Class labels for priors that use them.
        config: Objective, optimizer and schedule; defaults to :class:`SVIConfig()`.
        binarization: What the data become, e.g. ``pyro_vae.data.BINARIZATIONS["dynamic"]``
            (drawn afresh every epoch); ``None`` models ``x`` as it is.
        seed: Seed of the data order and of dynamic binarization.
        state: A :class:`FitState` from ``on_epoch``, or its ``to_dict()`` form (a
            checkpoint's), to resume from.
        on_epoch: Called after every epoch with the result so far and the full state
            (parameters, optimizer, RNGs, history) for checkpointing; also when
            ``should_stop`` ends a fit mid-epoch, with the state's ``position`` in the epoch.
        should_stop: Polled after every step; when it returns true the fit saves its state
            through ``on_epoch`` and raises :class:`~pyro_vae.core.errors.TrainingInterrupted`.
            Resuming from that state ends with the parameters an uninterrupted fit would have.
        workers: This process's place in a data-parallel fit (see
            :mod:`~pyro_vae.inference.distributed`): each worker fits its shard with
            ``batch_size / world_size`` datapoints a step and gradients are averaged.
        progress: Show a tqdm progress bar with the running loss.
        objective: An object with Pyro's ``differentiable_loss(model, guide, *args,
            **kwargs)`` to use instead of ``config``'s objective and gradient (a member of
            :data:`~pyro_vae.inference.LABEL_ESTIMATORS` for the semi-supervised VAE, which
            needs one).

    Returns:
        The :class:`FitResult` over all epochs run, including those before a resume.
    """
    config = config or SVIConfig()
    check_program_guide(program, config, objective)
    workers = workers or Workers()
    num_data = x.shape[0]
    if config.batch_size > num_data:
        raise ConfigError(
            f"batch_size {config.batch_size} exceeds the {num_data} training datapoints"
        )
    if config.batch_size % workers.world_size:
        raise ConfigError(
            f"batch_size {config.batch_size} must be a multiple of the {workers.world_size} "
            "workers (each takes an equal share of every step)"
        )
    if not torch.isfinite(x).all():
        raise DataError("the training data contain NaN or infinite values")
    check_step_size(program, x, config, workers.world_size)
    loop = _FitLoop(program, x, labels, config, binarization, seed, workers, state, objective)
    return loop.run(on_epoch, should_stop, progress)


class _FitLoop:
    """The state of one fit (program, optimizer, generators, history) and its epochs."""

    def __init__(
        self,
        program: Program,
        x: torch.Tensor,
        labels: torch.Tensor | None,
        config: SVIConfig,
        binarization: Binarization | None,
        seed: int,
        workers: Workers,
        state: dict[str, Any] | None,
        objective: Any | None = None,
    ) -> None:
        self.program, self.x, self.labels, self.config, self.workers = (
            program,
            x,
            labels,
            config,
            workers,
        )
        self.num_data = x.shape[0]
        self.batch = config.batch_size // workers.world_size
        objective = config.build_objective() if objective is None else objective
        self.step_loss = _step_loss(objective, program, self.num_data, config)
        self.binarization = binarization
        self.resample = binarization is not None and binarization.resample
        self.fixed_x = (
            x if binarization is None else None if self.resample else binarization.fixed(x)
        )
        self.params, self.optimizer, self.gen = _optimizer_and_generator(
            program, x, labels, config, seed
        )
        self.steps_per_epoch = _steps_per_epoch(self.num_data, config, workers)
        self.result, self.position = FitResult(), None
        if state is not None:
            self.result, self.position = _load_state(
                program, self.optimizer, self.gen, state, self.steps_per_epoch
            )

    def full_state(self, position: dict[str, Any] | None = None) -> FitState:
        """Everything a resumed fit needs (see :mod:`.fit_state`)."""
        return FitState(
            self.program.state_dict(),
            self.optimizer.state_dict(),
            rng_state.capture(self.gen),
            FitResult(**{k: list(v) for k, v in asdict(self.result).items()}),
            position,
        )

    def run(
        self,
        on_epoch: Callable[[FitResult, FitState], None] | None,
        should_stop: Callable[[], bool] | None,
        progress: bool,
    ) -> FitResult:
        self.on_epoch, self.should_stop, self.progress = on_epoch, should_stop, progress
        config, steps = self.config, self.steps_per_epoch
        done = self.result.epochs * steps + (self.position["step"] if self.position else 0)
        self.bar = tqdm(
            total=config.epochs * steps,
            initial=done,
            disable=not (progress and self.workers.is_main),
            unit="step",
            dynamic_ncols=True,
        )
        try:
            while self.result.epochs < config.epochs:
                self._epoch()
        finally:
            self.bar.close()
        return self.result

    def _stop_requested(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def _epoch(self) -> None:
        """One epoch (or the rest of an interrupted one), rolled back if it diverged."""
        epoch, result, x = self.result.epochs, self.result, self.x
        if self.position is not None:  # part of this epoch ran before an interruption
            epoch_rng, first_step = self.position["epoch_rng"], self.position["step"]
            total = torch.tensor(self.position["total"], device=x.device)
            seconds = self.position["seconds"]
            self.gen.set_state(epoch_rng)  # the epoch's data and order are drawn again below
            self.position = None
        else:
            epoch_rng, first_step, seconds = self.gen.get_state(), 0, 0.0
            total = torch.zeros((), device=x.device)
        rollback = self.config.on_divergence == "rollback"
        snapshot = copy.deepcopy(self.full_state()) if rollback else None
        start = time.perf_counter()
        data = self.binarization.apply(x, self.gen) if self.resample else self.fixed_x
        order = self.workers.shard(
            torch.randperm(self.num_data, generator=self.gen, device=x.device)
        )
        epoch_start = {"epoch_rng": epoch_rng, "seconds": seconds, "start": start}
        first_bad, steps_done, beta = self._steps(
            epoch, data, order, first_step, total, epoch_start
        )
        mean = self.workers.mean(total.item() / self.steps_per_epoch / self.num_data, x.device)
        bad_step = int(first_bad)
        if bad_step < 0 and not (math.isfinite(mean) and _finite(self.params)):
            bad_step = self.steps_per_epoch - 1  # a gradient overflowed without the loss showing
        if bad_step >= 0:
            if snapshot is None or len(result.rollbacks) >= MAX_ROLLBACKS:
                raise TrainingDiverged(_diverged(epoch, bad_step, result))
            lr = _roll_back(self.program, self.optimizer, self.gen, snapshot)
            result.rollbacks.append({"epoch": epoch + 1, "step": bad_step + 1, "lr": lr})
            self.bar.update(-steps_done)
            return
        result.losses.append(mean)
        result.betas.append(beta)
        result.epoch_seconds.append(seconds + time.perf_counter() - start)
        self.bar.set_postfix_str(f"epoch {epoch + 1}/{self.config.epochs} loss {mean:.2f} nats")
        if self.on_epoch is not None:
            self.on_epoch(result, self.full_state())
        if self._stop_requested() and result.epochs < self.config.epochs:
            raise TrainingInterrupted(epoch + 2, 0)

    def _steps(
        self,
        epoch: int,
        data: torch.Tensor,
        order: torch.Tensor,
        first_step: int,
        total: torch.Tensor,
        epoch_start: dict[str, Any],
    ) -> tuple[torch.Tensor, int, float]:
        """The epoch's steps from ``first_step``, adding each loss to ``total``; returns the
        first step whose loss or gradient was not finite (-1 if none, on the device), the steps
        done, and the last KL weight."""
        config, labels, steps = self.config, self.labels, self.steps_per_epoch
        first_bad = torch.full((), -1, dtype=torch.long, device=data.device)
        steps_done, beta = 0, config.beta
        for step in range(first_step, steps):
            idx = order[step * self.batch : (step + 1) * self.batch]
            beta = config.kl_weight(epoch * steps + step, steps)
            try:
                loss = self.step_loss(data[idx], None if labels is None else labels[idx], idx, beta)
            except ValueError as err:
                if not _invalid_from_divergence(str(err), self.params):
                    raise
                first_bad = torch.where(first_bad < 0, step, first_bad)
                break
            finite = self._update(loss)
            total += loss.detach()
            first_bad = torch.where((first_bad < 0) & ~finite, step, first_bad)
            if self.progress and (step + 1) % 20 == 0:
                self.bar.set_postfix_str(
                    f"epoch {epoch + 1}/{config.epochs} "
                    f"loss {total.item() / (step + 1) / self.num_data:.2f} nats"
                )
            self.bar.update(1)
            steps_done += 1
            if self._stop_requested() and step + 1 < steps:
                self._stop_mid_epoch(epoch, step + 1, total, epoch_start)
        return first_bad, steps_done, beta

    def _update(self, loss: torch.Tensor) -> torch.Tensor:
        """One optimizer step on ``loss``; returns whether loss and gradient were finite."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.workers.average_gradients(self.params)
        finite = torch.isfinite(loss.detach())
        if self.config.clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_grad_norm)
            finite = finite & torch.isfinite(norm)
        self.optimizer.step()
        return finite

    def _stop_mid_epoch(
        self, epoch: int, step: int, total: torch.Tensor, epoch_start: dict[str, Any]
    ) -> None:
        """Save the state with the position inside the epoch, and stop."""
        if self.on_epoch is not None:
            position = {
                "epoch": epoch,
                "step": step,
                "epoch_rng": epoch_start["epoch_rng"],
                "total": total.item(),
                "seconds": epoch_start["seconds"] + time.perf_counter() - epoch_start["start"],
            }
            self.on_epoch(self.result, self.full_state(position))
        raise TrainingInterrupted(epoch + 1, step)


def _optimizer_and_generator(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    config: SVIConfig,
    seed: int,
) -> tuple[list[torch.Tensor], torch.optim.Optimizer, torch.Generator]:
    """The trainable parameters (lazily built ones created first), their optimizer, and the
    generator of data order and binarization."""
    # create lazily built parameters (autoguides) before the optimizer; the values are
    # thrown away, so raw (not yet binarized) data is not validated
    with torch.no_grad(), pyro.validation_enabled(False):
        program.guide(
            x[:1],
            None if labels is None else labels[:1],
            num_data=x.shape[0],
            indices=torch.zeros(1, dtype=torch.long, device=x.device),
        )
    params = [p for p in program.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS.build(config.optimizer, params, config.lr)
    return params, optimizer, torch.Generator(device=x.device).manual_seed(seed)


def _load_state(
    program: Program,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    state: FitState | dict[str, Any],
    steps_per_epoch: int,
) -> tuple[FitResult, dict[str, Any] | None]:
    """Check ``state`` against this fit, then load it; returns the history and position."""
    serialised = state.to_dict() if isinstance(state, FitState) else state
    check_fit_state(serialised, program, optimizer, gen, FitResult, steps_per_epoch)
    state = FitState.from_dict(serialised)
    program.load_state_dict(state.params)
    optimizer.load_state_dict(state.optimizer)
    rng_state.restore(gen, state.rng)
    return state.history, state.position


def check_resume_state(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    state: Any,
    *,
    config: SVIConfig,
    workers: Workers | None = None,
) -> None:
    """Raise :class:`~pyro_vae.core.errors.CheckpointError` unless :func:`fit` can resume from
    ``state`` with these arguments. Loads nothing into the program and writes nothing."""
    workers = workers or Workers()
    _, optimizer, gen = _optimizer_and_generator(program, x, labels, config, seed=0)
    steps_per_epoch = _steps_per_epoch(x.shape[0], config, workers)
    check_fit_state(state, program, optimizer, gen, FitResult, steps_per_epoch)


def _steps_per_epoch(num_data: int, config: SVIConfig, workers: Workers) -> int:
    """Steps in one epoch of each worker: its shard of the data in minibatches of its share."""
    shard = len(workers.shard(torch.arange(num_data)))
    return math.ceil(shard / (config.batch_size // workers.world_size))


def _invalid_from_divergence(message: str, params: list[torch.Tensor]) -> bool:
    """Whether Pyro's validation error means the fit diverged: a distribution parameter (a
    network output) became NaN/inf, or a sampled value did because a parameter did. Invalid
    data values are not divergence."""
    if "found invalid values" not in message:
        return False
    return message.startswith("Expected parameter") or not _finite(params)


def _finite(params: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def _diverged(epoch: int, step: int, result: FitResult) -> str:
    done = f"epoch {epoch} is the last good one" if epoch else "no epoch finished"
    hint = (
        f"it diverged again after {len(result.rollbacks)} rollbacks"
        if result.rollbacks
        else "lower the learning rate, set --clip-grad-norm, or use --on-divergence rollback"
    )
    return (
        f"the loss or parameters became NaN or infinite in epoch {epoch + 1}, step {step + 1} "
        f"({done}); {hint}"
    )


def _roll_back(
    program: Program, optimizer: torch.optim.Optimizer, gen: torch.Generator, snapshot: FitState
) -> float:
    """Restore the epoch's starting state and lower the learning rate; returns the new rate."""
    program.load_state_dict(snapshot.params)
    optimizer.load_state_dict(snapshot.optimizer)
    rng_state.restore(gen, snapshot.rng)
    for group in optimizer.param_groups:
        group["lr"] *= ROLLBACK_LR_FACTOR
    return float(optimizer.param_groups[0]["lr"])
