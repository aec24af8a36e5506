"""What every method shares: the problem it is given, the result it returns, the runner that
checks and fits, the registry, and the one SVI loop every method (a user's too) fits through."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pyro
import torch
from pyro_vae.models import VAE, ModelSpec, Prior
from pyro_vae.models.priors import FlatPrior

from pyro_vae.core.registry import Registry
from pyro_vae.core.validate import nonnegative_int

from ..guide_checks import check_guide
from ..svi import Binarization, FitResult, SVIConfig, fit


@dataclass
class Problem:
    """One data set, model and budget, the same for every method compared.

    Args:
        x: Training data (the fit binarizes it as ``binarization`` says).
        labels: Training labels, for priors that use them.
        model: The shared model.
        svi: Optimizer, schedule and (for ``vae``) objective.
        binarization: What the fit makes of ``x`` (e.g. ``BINARIZATIONS["dynamic"]`` of
            :mod:`pyro_vae.data`); ``None`` models it as it is.
        weight_prior: Prior on decoder weights; ``None`` takes each method's default
            (``flat`` for ``vae`` / ``iwae``, ``normal`` for ``map-pairs`` / ``bayes-decoder``).
        weight_prior_options: Its options, e.g. ``{"scale": 0.5}``.
        proposal_epochs: Epochs of encoder fitting (decoder frozen) for methods without one.
        nuts_x: Datapoints for ``nuts-latent`` (usually a few test images), already binarized.
        nuts_labels: Their labels.
        seed: Seed of initialisation, data order and binarization.
        progress: Show progress bars.
        num_classes: Classes the labels come from (default: the largest label + 1).
    """

    x: torch.Tensor
    labels: torch.Tensor | None = None
    model: ModelSpec = field(default_factory=ModelSpec)
    svi: SVIConfig = field(default_factory=SVIConfig)
    binarization: Binarization | None = None
    weight_prior: str | None = None
    weight_prior_options: dict[str, Any] = field(default_factory=dict)
    proposal_epochs: int = 10
    nuts_x: torch.Tensor | None = None
    nuts_labels: torch.Tensor | None = None
    seed: int = 0
    progress: bool = False
    num_classes: int | None = None

    def __post_init__(self) -> None:
        nonnegative_int("proposal_epochs", self.proposal_epochs)
        check_guide(self.model.guide, self.svi)
        if self.labels is not None and self.num_classes is None:
            self.num_classes = int(self.labels.max()) + 1

    def latent_prior(self) -> Prior:
        """The model's latent prior p(z), built to read its declared capabilities."""
        return self.build(None).prior

    def build(self, weight_prior: str | None, *, flat_latent: bool = False) -> VAE:
        """The shared model, seeded, on the data's device, with ``weight_prior`` attached."""
        pyro.set_rng_seed(self.seed)
        vae = self.model.build(
            self.x,
            num_classes=self.num_classes,
            weight_prior=weight_prior,
            weight_prior_options=self.weight_prior_options if weight_prior else None,
        )
        if flat_latent:
            with pyro.settings.context(module_local_params=True):
                vae.prior = FlatPrior(vae.prior)
        return vae


@dataclass
class MethodResult:
    """What a method fitted, ready for the shared estimators.

    Args:
        method: The method's name.
        vae: The fitted model with a point decoder; its encoder is the proposal for log p(x).
            ``None`` for ``nuts-latent``.
        history: The main fit's losses per epoch (nats per datapoint of the method's own
            objective).
        proposal_history: The encoder fit with the decoder frozen, for methods without one.
        notes: What a reader of the results must know (how it was evaluated).
        details: Method-specific numbers.
        wall_time: Seconds, fitting and proposal fitting together.
        program: The fitted model + guide, for inspection (e.g. ``PointLatents.latents()``).
    """

    method: str
    vae: VAE | None
    history: FitResult
    proposal_history: FitResult | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    wall_time: float = 0.0
    program: Any = None


class Runner:
    """A configured method: ``runner(problem, reference=None)`` checks, fits and returns.

    ``runner.check(problem)`` refuses a method/problem combination that makes no sense
    before any work starts (``compare`` checks every cell of its grid first).
    """

    def __init__(
        self,
        name: str,
        run: Callable[..., MethodResult],
        check: Callable[[Problem], None] | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._check = check

    def check(self, problem: Problem) -> None:
        if self._check is not None:
            self._check(problem)

    def __call__(self, problem: Problem, reference: MethodResult | None = None) -> MethodResult:
        self.check(problem)
        return self._run(problem, reference)


METHODS: Registry[Callable[..., Runner]] = Registry("method")


def fit_problem(program: Any, problem: Problem, svi: SVIConfig | None = None) -> FitResult:
    """Fit ``program`` (a VAE, or a program around one) to ``problem``'s data by SVI, with its
    binarization, seed and progress setting: the loop every method fits through, a user's own
    included. ``svi`` overrides the problem's settings (default: ``problem.svi``)."""
    svi = svi or problem.svi
    return fit(
        program,
        problem.x,
        problem.labels,
        config=svi,
        binarization=problem.binarization,
        seed=problem.seed,
        progress=problem.progress,
    )


def point_decoder(program: Any, vae: VAE) -> VAE:
    if vae.weight_sites:
        vae.fix_weights(program.point_weights())
    return vae


def fit_proposal(vae: VAE, problem: Problem) -> FitResult:
    """Fit ``vae``'s encoder by the ELBO with everything else frozen.

    For methods that learn a decoder without an encoder: the encoder then serves as the
    importance-sampling proposal of log p(x). Uses the problem's optimizer, rate and batch
    size for ``problem.proposal_epochs`` epochs.
    """
    frozen = [p for name, p in vae.named_parameters() if not name.startswith("encoder.")]
    states = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    svi = replace(
        problem.svi,
        objective="elbo",
        gradient="reparam",
        particles=1,
        beta=1.0,
        warmup_epochs=0,
        epochs=max(1, problem.proposal_epochs),
    )
    try:
        return fit_problem(vae, problem, svi)
    finally:
        for p, state in zip(frozen, states, strict=True):
            p.requires_grad_(state)


def with_proposal(
    name: str, program: Any, vae: VAE, history: FitResult, problem: Problem, start: float
) -> MethodResult:
    vae = point_decoder(program, vae)
    proposal = fit_proposal(vae, problem)
    return MethodResult(
        name,
        vae,
        history,
        proposal,
        notes=[
            f"no encoder while fitting: log p(x) uses an encoder fitted afterwards for "
            f"{proposal.epochs} epochs with the decoder frozen as the importance-sampling "
            "proposal, so its log p(x) is a lower bound (its NLL an upper bound) whose "
            "tightness depends on that proposal; the k-hat share says how far to trust it"
        ],
        details={"proposal_epochs": proposal.epochs},
        wall_time=time.perf_counter() - start,
        program=program,
    )
