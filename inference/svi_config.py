"""The settings of a fit (:class:`SVIConfig`), what a fit returns (:class:`FitResult`) and
what a resumed fit needs (:class:`FitState`), and the protocols of what a fit is given."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import nonnegative_int, positive_float, positive_int

from .gradients import GRADIENTS
from .objectives import OBJECTIVES
from .optimizers import OPTIMIZERS


class Program(Protocol):
    """An ``nn.Module`` with Pyro ``model`` and ``guide`` methods taking the same arguments."""

    def model(self, x: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any) -> Any: ...
    def guide(self, x: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any) -> Any: ...
    def parameters(self) -> Any: ...


class Binarization(Protocol):
    """How training data become what the likelihood models (see ``pyro_vae.data``):
    ``apply(x, generator)`` draws them, ``resample`` says whether afresh every epoch, and
    ``fixed(x)`` draws them once with a fixed seed."""

    resample: bool

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...
    def fixed(self, x: torch.Tensor) -> torch.Tensor: ...


#: Numbers one training step holds per particle, datapoint and feature (the decoder's output,
#: the likelihood's terms and their gradients): an estimate that refuses impossible steps.
STEP_NUMBERS_PER_FEATURE = 8
#: What a diverging fit can do.
ON_DIVERGENCE = ("stop", "rollback")
#: Rollbacks allowed in one fit, and the learning-rate factor each applies.
MAX_ROLLBACKS = 3
ROLLBACK_LR_FACTOR = 0.5


@dataclass
class SVIConfig:
    """Settings of one SVI fit.

    Args:
        objective: Name in :data:`~pyro_vae.inference.objectives.OBJECTIVES`.
        gradient: The guide's gradient estimator, a name in
            :data:`~pyro_vae.inference.gradients.GRADIENTS`: ``reparam``, ``stl`` (with
            ``elbo``) or ``dreg`` (with ``iwae``). It changes gradients, never the loss.
        particles: Samples of z per datapoint in each ELBO estimate (vectorized).
        optimizer: Name in :data:`~pyro_vae.inference.optimizers.OPTIMIZERS`.
        lr: Learning rate.
        batch_size: Minibatch size; the data plate scales each minibatch by N / batch.
        epochs: Passes over the training data.
        beta: Final weight of the KL term, positive (1 is the ELBO). With beta = 0 the latent
            site would carry no density at all and the fit would no longer be a VAE.
        warmup_epochs: Epochs over which the KL weight rises linearly from 0 to ``beta``.
        clip_grad_norm: Clip the gradients' total norm to this before each step (``None``:
            no clipping).
        on_divergence: What a non-finite loss or parameter does: ``"stop"`` raises
            :class:`TrainingDiverged` (the last good epoch's checkpoint stays);
            ``"rollback"`` restores the state at the start of the epoch, halves the learning
            rate and runs the epoch again (at most :data:`MAX_ROLLBACKS` times per fit).
        jit: Trace the loss with TorchScript (:class:`~.traced_loss.TracedLoss`): the same
            objective with Pyro's per-step Python overhead removed; validation then runs only
            while tracing.
        compile: Capture the loss as an ATen graph and compile it with ``torch.compile``
            (:class:`~.compiled_loss.CompiledLoss`): the same objective and the same draws,
            with forward and backward fused into generated kernels; each minibatch shape costs
            a compilation (seconds to a minute) first. Not together with ``jit``.
    """

    objective: str = "elbo"
    particles: int = 1
    optimizer: str = "adam"
    gradient: str = "reparam"
    lr: float = 1e-3
    batch_size: int = 100
    epochs: int = 10
    beta: float = 1.0
    warmup_epochs: int = 0
    clip_grad_norm: float | None = None
    on_divergence: str = "stop"
    jit: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        OPTIMIZERS[self.optimizer]
        for name in ("particles", "batch_size", "epochs"):
            positive_int(name, getattr(self, name))
        self.build_objective()  # refuses unknown names and a gradient the objective cannot take
        positive_float("lr", self.lr)
        positive_float("beta", self.beta)
        nonnegative_int("warmup_epochs", self.warmup_epochs)
        if self.clip_grad_norm is not None:
            positive_float("clip_grad_norm", self.clip_grad_norm)
        for name in ("jit", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r}")
        if self.jit and self.compile:
            raise ConfigError("choose one of jit (trace the loss) and compile (compile it)")
        if self.on_divergence not in ON_DIVERGENCE:
            raise ConfigError(
                f"on_divergence must be one of {', '.join(ON_DIVERGENCE)}, not "
                f"{self.on_divergence!r}"
            )

    def build_objective(self) -> Any:
        """The objective with the chosen gradient estimator."""
        elbo = OBJECTIVES.build(self.objective, self.particles)
        return GRADIENTS.build(self.gradient, elbo, self.objective)

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
    weight at the end of each epoch (the losses equal -ELBO where it is 1). ``rollbacks``
    records each divergence that was rolled back: epoch, step and the new learning rate.
    """

    losses: list[float] = field(default_factory=list)
    betas: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    rollbacks: list[dict[str, float]] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.losses)

    @property
    def wall_time(self) -> float:
        return float(sum(self.epoch_seconds))


@dataclass
class FitState:
    """Everything a resumed fit needs, as :func:`fit` hands it to ``on_epoch``.

    Its serialised form (:meth:`to_dict`, plain tensors, lists and dicts) is what a checkpoint
    stores; :meth:`from_dict` reads it back after :func:`~.fit_state.check_fit_state` has
    compared it with the program it is for.

    Args:
        params: The program's ``state_dict()``.
        optimizer: The optimizer's ``state_dict()``.
        rng: Every generator's state (see :mod:`.rng_state`).
        history: The fit's record so far.
        position: Where in an epoch a stopped fit stopped (``{"epoch", "step", ...}``);
            ``None`` at an epoch's end.
    """

    params: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    history: FitResult
    position: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        state = {
            "params": self.params,
            "optimizer": self.optimizer,
            "rng": self.rng,
            "history": {k: list(v) for k, v in asdict(self.history).items()},
        }
        return state if self.position is None else {**state, "position": self.position}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FitState:
        return cls(
            state["params"],
            state["optimizer"],
            state["rng"],
            FitResult(**state["history"]),
            state.get("position"),
        )
