"""Combinations of method and problem that make no sense, refused before any work (each method's
``check`` calls the ones that apply to it)."""

from __future__ import annotations

from dataclasses import replace

from pyro_vae.models import Prior

from pyro_vae.core.errors import ConfigError

from ..svi import SVIConfig
from .problem import Problem


def weight_prior_of(problem: Problem, default: str) -> str:
    return problem.weight_prior or default


def point_estimate_svi(problem: Problem, method: str) -> SVIConfig:
    svi = problem.svi
    if svi.particles != 1:
        raise ConfigError(
            f"{method} is a point estimate: particles ({svi.particles}) make no sense for it"
        )
    if svi.objective not in ("elbo", "elbo-analytic-kl"):
        raise ConfigError(
            f"{method} is a point estimate; objective {svi.objective!r} does not apply"
        )
    refuse_gradient(problem, method, "is a point estimate")
    return replace(svi, objective="elbo")


def refuse_gradient(problem: Problem, method: str, why: str) -> None:
    """A gradient estimator other than ``reparam`` changes how q's gradient is taken; a method
    that fits no q(z|x) would record it and ignore it."""
    if problem.svi.gradient != "reparam":
        raise ConfigError(
            f"{method} {why} with no q(z|x) to fit: gradient {problem.svi.gradient!r} does not "
            "apply to it (leave --gradient at reparam)"
        )


def refuse_encoder_prior(prior: Prior, method: str) -> None:
    if prior.uses_encoder:
        raise ConfigError(
            f"{method} has no encoder while fitting, and the {prior.name} prior is built from "
            "one; choose another prior"
        )


def refuse_kl_weight(problem: Problem, method: str, why: str) -> None:
    if problem.svi.beta != 1.0 or problem.svi.warmup_epochs:
        raise ConfigError(f"{method} {why}: beta and warm-up do not apply")


def refuse_learnable_prior(prior: Prior, method: str, why: str) -> None:
    if prior.learnable:
        raise ConfigError(
            f"{method} {why}, so the learnable {prior.name} prior cannot be fitted with it; "
            "choose a fixed prior (standard-normal, laplace, student-t)"
        )
