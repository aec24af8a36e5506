"""Stochastic variational inference: minibatch SVI on any (model, guide) pair.

The loop uses Pyro's ELBO objects for the loss (``elbo.differentiable_loss``) and a torch
optimizer over the program's own parameters (module-local, see
:func:`pyro_vae.models.local_params`), so its whole state is a ``state_dict``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from pyro_vae.data import BINARIZATIONS
from pyro_vae.errors import ConfigError, TrainingDiverged
from pyro_vae.validate import nonnegative_float, nonnegative_int, positive_float, positive_int

from .objectives import OBJECTIVES
from .optimizers import OPTIMIZERS


class Program(Protocol):
    """An ``nn.Module`` with Pyro ``model`` and ``guide`` methods taking the same arguments."""

    def model(self, x: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any) -> Any: ...
    def guide(self, x: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any) -> Any: ...
    def parameters(self) -> Any: ...


@dataclass
class SVIConfig:
    """Settings of one SVI fit.

    Args:
        objective: Name in :data:`~pyro_vae.inference.objectives.OBJECTIVES`.
        num_particles: Samples of z per datapoint in each ELBO estimate (vectorized).
        optimizer: Name in :data:`~pyro_vae.inference.optimizers.OPTIMIZERS`.
        lr: Learning rate.
        batch_size: Minibatch size; the data plate scales each minibatch by N / batch.
        epochs: Passes over the training data.
        beta: Final weight of the KL term (1 is the ELBO).
        warmup_epochs: Epochs over which the KL weight rises linearly from 0 to ``beta``.
    """

    objective: str = "elbo"
    num_particles: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 100
    epochs: int = 10
    beta: float = 1.0
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        OBJECTIVES[self.objective]
        OPTIMIZERS[self.optimizer]
        for name in ("num_particles", "batch_size", "epochs"):
            positive_int(name, getattr(self, name))
        positive_float("lr", self.lr)
        nonnegative_float("beta", self.beta)
        nonnegative_int("warmup_epochs", self.warmup_epochs)

    def kl_weight(self, step: int, steps_per_epoch: int) -> float:
        """The KL weight at global step ``step`` (0-based) under the linear warm-up."""
        if self.warmup_epochs == 0:
            return self.beta
        return self.beta * min(1.0, (step + 1) / (self.warmup_epochs * steps_per_epoch))


@dataclass
class FitResult:
    """What a fit did, epoch by epoch.

    ``losses`` are the mean minibatch objective of each epoch divided by the number of
    datapoints: nats per datapoint of the negative (KL-weighted) ELBO. ``betas`` hold the KL
    weight at the end of each epoch (the losses equal -ELBO where it is 1).
    """

    losses: list[float] = field(default_factory=list)
    betas: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.losses)

    @property
    def wall_time(self) -> float:
        return float(sum(self.epoch_seconds))


def _rng_state(gen: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"data": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(gen: torch.Generator, state: dict[str, torch.Tensor]) -> None:
    gen.set_state(state["data"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def fit(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    config: SVIConfig | None = None,
    binarization: str = "none",
    seed: int = 0,
    state: dict[str, Any] | None = None,
    on_epoch: Callable[[FitResult, dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> FitResult:
    """Fit ``program.model`` / ``program.guide`` to ``x`` by minibatch SVI.

    Args:
        program: The VAE (or any module with ``model`` and ``guide``), already on x's device.
        x: Training data, ``(num_data, features)``.
        labels: Class labels for priors that use them.
        config: Objective, optimizer and schedule; defaults to :class:`SVIConfig()`.
        binarization: Name in :data:`~pyro_vae.data.BINARIZATIONS`; ``dynamic`` draws the
            training data afresh every epoch.
        seed: Seed of the data order and of dynamic binarization.
        state: A state from ``on_epoch`` (or a checkpoint) to resume from.
        on_epoch: Called after every epoch with the result so far and the full state
            (parameters, optimizer, RNGs, history) for checkpointing.
        progress: Show a tqdm progress bar with the running loss.

    Returns:
        The :class:`FitResult` over all epochs run, including those before a resume.
    """
    config = config or SVIConfig()
    binarize = BINARIZATIONS[binarization]
    num_data = x.shape[0]
    if config.batch_size > num_data:
        raise ConfigError(
            f"batch_size {config.batch_size} exceeds the {num_data} training datapoints"
        )
    elbo = OBJECTIVES.build(config.objective, config.num_particles)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    fixed_x = binarize.fixed(x) if not binarize.resample else None

    with torch.no_grad():  # create lazily built parameters (autoguides) before the optimizer
        program.guide(
            x[:1],
            None if labels is None else labels[:1],
            num_data=num_data,
            indices=torch.zeros(1, dtype=torch.long, device=x.device),
        )
    optimizer = OPTIMIZERS.build(
        config.optimizer, [p for p in program.parameters() if p.requires_grad], config.lr
    )
    result = FitResult()
    if state is not None:
        program.load_state_dict(state["params"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(gen, state["rng"])
        result = FitResult(**state["history"])

    steps_per_epoch = math.ceil(num_data / config.batch_size)
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=result.epochs * steps_per_epoch,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
    )
    try:
        for epoch in range(result.epochs, config.epochs):
            start = time.perf_counter()
            data = binarize.apply(x, gen) if binarize.resample else fixed_x
            order = torch.randperm(num_data, generator=gen, device=x.device)
            total = torch.zeros((), device=x.device)
            for step in range(steps_per_epoch):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                beta = config.kl_weight(epoch * steps_per_epoch + step, steps_per_epoch)
                loss = elbo.differentiable_loss(
                    program.model,
                    program.guide,
                    data[idx],
                    None if labels is None else labels[idx],
                    num_data=num_data,
                    indices=idx,
                    beta=beta,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach()
                if progress and (step + 1) % 20 == 0:
                    bar.set_postfix_str(
                        f"epoch {epoch + 1}/{config.epochs} "
                        f"loss {total.item() / (step + 1) / num_data:.2f} nats"
                    )
                bar.update(1)
            mean = total.item() / steps_per_epoch / num_data
            if not math.isfinite(mean):
                raise TrainingDiverged(
                    f"the loss became {mean} in epoch {epoch + 1}; "
                    "lower the learning rate or check the data"
                )
            result.losses.append(mean)
            result.betas.append(beta)
            result.epoch_seconds.append(time.perf_counter() - start)
            bar.set_postfix_str(f"epoch {epoch + 1}/{config.epochs} loss {mean:.2f} nats")
            if on_epoch is not None:
                on_epoch(
                    result,
                    {
                        "params": program.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": _rng_state(gen),
                        "history": {k: list(v) for k, v in asdict(result).items()},
                    },
                )
    finally:
        bar.close()
    return result
