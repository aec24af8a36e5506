"""Inference methods by name, all on the same generative model p(z) p_theta(x|z).

``METHODS.build(name, **options)`` gives a runner; ``runner(problem)`` fits and returns a
:class:`MethodResult` whose ``vae`` has a point decoder and an encoder, so every method is
measured by the same estimators. The methods answer "why not just maximise p(X|W)?":

========================  =====================================================================
``vae``                   amortized VI (encoder guide, any objective); decoder weights a point
                          estimate maximising the ELBO (variational EM: plain parameters under
                          weight prior ``flat``), or the ELBO plus log p(w) (``AutoDelta`` over
                          the weight sites under a weight prior, in an ``AutoGuideList``)
``iwae``                  the same with the importance-weighted bound, K particles
``mle-pairs``             one point z_i per x_i and the weights, all by ``AutoDelta`` under flat
                          priors: maximises sum_i log p(x_i | z_i, theta)
``map-pairs``             the same under the latent prior and a weight prior (MAP)
``mle-prior-mc``          maximises sum_i log (1/K) sum_k p(x_i | z_k), z_k ~ p(z): random z's
                          matched to x's, no encoder
``bayes-decoder``         VI over the decoder weights too (mean-field Normal): "full VB"
``nuts-latent``           NUTS over z for chosen images under a trained decoder: the reference
                          posterior the encoder approximates
========================  =====================================================================

Methods without an encoder (``mle-pairs``, ``map-pairs``, ``mle-prior-mc``) are evaluated with
an encoder fitted afterwards by the ELBO with the decoder frozen, for
``Problem.proposal_epochs`` epochs; their results say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pyro
import torch
from pyro_vae.models import VAE, WEIGHT_PRIORS, ModelSpec, Prior, local_params, moments
from pyro_vae.models.priors import FlatPrior
from pyro_vae.models.weight_priors import check_point_estimate

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import Registry
from pyro_vae.core.validate import nonnegative_int, positive_float, positive_int

from .guide_checks import check_guide
from .nuts import nuts_latent
from .programs import BayesianDecoder, PointLatents, PointWeights, PriorProposal
from .svi import Binarization, FitResult, SVIConfig, fit


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


def _fit(program: Any, problem: Problem, svi: SVIConfig) -> FitResult:
    return fit(
        program,
        problem.x,
        problem.labels,
        config=svi,
        binarization=problem.binarization,
        seed=problem.seed,
        progress=problem.progress,
    )


def _point(program: Any, vae: VAE) -> VAE:
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
        return _fit(vae, problem, svi)
    finally:
        for p, state in zip(frozen, states, strict=True):
            p.requires_grad_(state)


def _weight_prior(problem: Problem, default: str) -> str:
    return problem.weight_prior or default


def _point_estimate_svi(problem: Problem, method: str) -> SVIConfig:
    svi = problem.svi
    if svi.particles != 1:
        raise ConfigError(
            f"{method} is a point estimate: particles ({svi.particles}) make no sense for it"
        )
    if svi.objective not in ("elbo", "elbo-analytic-kl"):
        raise ConfigError(
            f"{method} is a point estimate; objective {svi.objective!r} does not apply"
        )
    _refuse_gradient(problem, method, "is a point estimate")
    return replace(svi, objective="elbo")


def _refuse_gradient(problem: Problem, method: str, why: str) -> None:
    """A gradient estimator other than ``reparam`` changes how q's gradient is taken; a method
    that fits no q(z|x) would record it and ignore it."""
    if problem.svi.gradient != "reparam":
        raise ConfigError(
            f"{method} {why} with no q(z|x) to fit: gradient {problem.svi.gradient!r} does not "
            "apply to it (leave --gradient at reparam)"
        )


def _refuse_encoder_prior(prior: Prior, method: str) -> None:
    if prior.uses_encoder:
        raise ConfigError(
            f"{method} has no encoder while fitting, and the {prior.name} prior is built from "
            "one; choose another prior"
        )


def _refuse_kl_weight(problem: Problem, method: str, why: str) -> None:
    if problem.svi.beta != 1.0 or problem.svi.warmup_epochs:
        raise ConfigError(f"{method} {why}: beta and warm-up do not apply")


def _refuse_learnable_prior(prior: Prior, method: str, why: str) -> None:
    if prior.learnable:
        raise ConfigError(
            f"{method} {why}, so the learnable {prior.name} prior cannot be fitted with it; "
            "choose a fixed prior (standard-normal, laplace, student-t)"
        )


def _with_proposal(
    name: str, program: Any, vae: VAE, history: FitResult, problem: Problem, start: float
) -> MethodResult:
    vae = _point(program, vae)
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


@METHODS.register("vae")
def amortized_vi(objective: str | None = None, particles: int | None = None) -> Runner:
    """Amortized VI; ``objective`` / ``particles`` override the problem's SVI settings."""

    def svi_of(problem: Problem) -> SVIConfig:
        return replace(
            problem.svi,
            objective=objective or problem.svi.objective,
            particles=particles or problem.svi.particles,
        )

    def check(problem: Problem) -> None:
        svi = svi_of(problem)
        weight_prior = _weight_prior(problem, "flat")
        if weight_prior != "flat":
            check_point_estimate(weight_prior, "the vae and iwae decoders are point estimates")
        check_guide(problem.model.guide, svi, point_decoder=weight_prior == "flat")

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        svi = svi_of(problem)
        weight_prior = _weight_prior(problem, "flat")
        notes = []
        if weight_prior == "flat":
            vae = program = problem.build(None)
            notes.append(
                "decoder weights: plain parameters maximising the ELBO with the encoder "
                "(variational EM, not maximum likelihood)"
            )
        else:
            vae = problem.build(weight_prior)
            program = PointWeights(vae)
            notes.append(
                f"decoder weights: point estimate maximising the ELBO plus the log "
                f"{weight_prior} weight prior"
            )
        history = _fit(program, problem, svi)
        return MethodResult(
            "vae" if svi.objective != "iwae" else "iwae",
            _point(program, vae),
            history,
            notes=notes,
            details={"objective": svi.objective, "particles": svi.particles},
            wall_time=time.perf_counter() - start,
            program=program,
        )

    return Runner("iwae" if objective == "iwae" else "vae", run, check)


@METHODS.register("iwae")
def importance_weighted(particles: int = 5) -> Runner:
    """Amortized VI by the importance-weighted bound with K = ``particles``."""
    positive_int("iwae particles", particles)
    return amortized_vi(objective="iwae", particles=particles)


def _pairs(name: str, flat_latent: bool, default_weight_prior: str) -> Runner:
    def check(problem: Problem) -> None:
        _point_estimate_svi(problem, name)
        prior = problem.latent_prior()  # built once for both prior checks
        _refuse_encoder_prior(prior, name)
        _refuse_kl_weight(problem, name, "is a joint point estimate of z and the weights")
        weight_prior = _weight_prior(problem, default_weight_prior)
        if flat_latent and weight_prior != "flat":
            raise ConfigError(
                f"{name} is maximum likelihood: its weight prior is flat, not {weight_prior!r}; "
                "use map-pairs for a weight prior"
            )
        check_point_estimate(weight_prior, f"{name} is a point estimate")
        why = (
            "puts a flat prior on z"
            if flat_latent
            else "has no maximum under a learned prior (it can collapse onto one z_i)"
        )
        _refuse_learnable_prior(prior, name, why)

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        svi = _point_estimate_svi(problem, name)
        vae = problem.build(_weight_prior(problem, default_weight_prior), flat_latent=flat_latent)
        program = PointLatents(vae, problem.x, problem.labels)
        history = _fit(program, problem, svi)
        if flat_latent:  # the fitted decoder is evaluated under the model's real prior
            with pyro.settings.context(module_local_params=True):
                vae.prior = vae.prior.base
        return _with_proposal(name, program, vae, history, problem, start)

    return Runner(name, run, check)


@METHODS.register("mle-pairs")
def mle_pairs() -> Runner:
    """Maximum likelihood with a point z_i per datapoint: flat priors on z and weights."""
    return _pairs("mle-pairs", flat_latent=True, default_weight_prior="flat")


@METHODS.register("map-pairs")
def map_pairs() -> Runner:
    """MAP with a point z_i per datapoint under the latent prior and a weight prior."""
    return _pairs("map-pairs", flat_latent=False, default_weight_prior="normal")


@METHODS.register("mle-prior-mc")
def mle_prior_mc(particles: int = 10) -> Runner:
    """Maximise the simulated likelihood log (1/K) sum_k p(x|z_k), z_k ~ p(z), K = particles."""
    positive_int("mle-prior-mc particles", particles)

    name = "mle-prior-mc"

    def check(problem: Problem) -> None:
        prior = problem.latent_prior()  # built once for both prior checks
        _refuse_encoder_prior(prior, name)
        if _weight_prior(problem, "flat") != "flat":
            raise ConfigError(f"{name} is maximum likelihood: its weight prior must be flat")
        _refuse_kl_weight(problem, name, "has no KL term")
        if problem.svi.particles != 1:
            raise ConfigError(
                f"{name} sets its own number of prior draws: use its particles option, "
                f"not particles={problem.svi.particles}"
            )
        _refuse_learnable_prior(prior, name, "draws z from the prior and never fits it")
        _refuse_gradient(problem, name, "draws z from the prior")

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        vae = problem.build(None)
        program = PriorProposal(vae)
        svi = replace(problem.svi, objective="iwae", particles=particles)
        history = _fit(program, problem, svi)
        result = _with_proposal(name, program, vae, history, problem, start)
        result.details = {**result.details, "particles": particles}
        return result

    return Runner(name, run, check)


@METHODS.register("bayes-decoder")
def bayes_decoder(init_scale: float = 1e-3) -> Runner:
    """VI over the decoder weights (mean-field Normal) with the amortized encoder."""
    positive_float("bayes-decoder init_scale", init_scale)

    def check(problem: Problem) -> None:
        name = _weight_prior(problem, "normal")
        if not WEIGHT_PRIORS[name].proper:
            raise ConfigError(f"bayes-decoder needs a proper weight prior, not {name!r}")
        check_guide(problem.model.guide, problem.svi, point_decoder=False)

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        weight_prior = _weight_prior(problem, "normal")
        vae = problem.build(weight_prior)
        program = BayesianDecoder(vae, init_scale=init_scale)
        history = _fit(program, problem, problem.svi)
        scales = torch.cat([s.flatten() for s in program.posterior_scales().values()])
        num_weights = scales.numel()
        return MethodResult(
            "bayes-decoder",
            _point(program, vae),
            history,
            notes=[
                f"decoder weights: mean-field Normal posterior under the {weight_prior} prior; "
                "log p(x) is evaluated at the posterior mean"
            ],
            details={
                "weights": num_weights,
                "posterior_sd_median": scales.median().item(),
                "objective": problem.svi.objective,
            },
            wall_time=time.perf_counter() - start,
            program=program,
        )

    return Runner("bayes-decoder", run, check)


@METHODS.register("nuts-latent")
def nuts_reference(images: int = 4, chains: int = 2, draws: int = 200, warmup: int = 200) -> Runner:
    """NUTS over z for ``images`` datapoints under the decoder of a ``vae`` fit.

    The runner takes ``reference=`` a fitted :class:`MethodResult` (``compare`` passes its
    ``vae`` result); without one it fits ``vae`` first.
    """
    for name, value in (("images", images), ("chains", chains), ("draws", draws)):
        positive_int(f"nuts-latent {name}", value)
    positive_int("nuts-latent warmup", warmup)
    if chains < 2:
        raise ConfigError("nuts-latent needs at least 2 chains to check convergence (R-hat)")

    def run(problem: Problem, reference: MethodResult | None) -> MethodResult:
        start = time.perf_counter()
        notes = []
        if reference is None or reference.vae is None:
            reference = amortized_vi()(problem)
            notes.append("decoder: a vae fit made for this reference")
        else:
            notes.append(f"decoder: the {reference.method} fit")
        vae = reference.vae
        x = problem.nuts_x if problem.nuts_x is not None else problem.x
        y = problem.nuts_labels if problem.nuts_x is not None else problem.labels
        x, y = x[:images], None if y is None else y[:images]
        posterior = local_params(nuts_latent)(
            vae, x, y, chains=chains, draws=draws, warmup=warmup, seed=problem.seed
        )
        with torch.no_grad():
            loc, scale = moments(vae.posterior(x, y))
        # how far the encoder's q(z|x) is from the NUTS posterior
        details = {**posterior.summary(), **posterior.gap_summary(loc, scale)}
        return MethodResult(
            "nuts-latent",
            None,
            FitResult(),
            notes=notes,
            details={**details, "posterior": posterior},
            wall_time=time.perf_counter() - start,
        )

    return Runner("nuts-latent", run)
