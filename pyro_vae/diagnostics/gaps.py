"""Approximation and amortization gaps (Cremer et al. 2018): the encoder's q against a q*
optimised per image."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from pyro_vae.inference import evaluate
from pyro_vae.inference.local_posteriors import fit_local_posteriors
from pyro_vae.models import VAE

from ..data import evenly_spaced
from .section import (
    Budget,
    Diagnosis,
    Section,
    fmt,
    mean_of,
    register_section,
)


class Gaps(NamedTuple):
    """Cremer et al.'s decomposition of log p(x) - ELBO(q_phi), per image (nats).

    - ``log_likelihood``: IS estimate of log p(x) with q* as proposal;
    - ``elbo_optimal``: ELBO(q*), q* a Gaussian optimised for each image alone;
    - ``elbo_encoder``: ELBO(q_phi), the amortized encoder's;
    - ``approximation = log_likelihood - elbo_optimal``: the cost of a Gaussian q at all;
    - ``amortization = elbo_optimal - elbo_encoder``: the cost of one network for all x.
    """

    log_likelihood: torch.Tensor
    elbo_optimal: torch.Tensor
    elbo_encoder: torch.Tensor
    losses: list[float]

    @property
    def approximation(self) -> torch.Tensor:
        return self.log_likelihood - self.elbo_optimal

    @property
    def amortization(self) -> torch.Tensor:
        return self.elbo_optimal - self.elbo_encoder

    def summary(self) -> dict[str, float]:
        return {
            "images": len(self.log_likelihood),
            "log_likelihood": mean_of(self.log_likelihood),
            "elbo_optimal": mean_of(self.elbo_optimal),
            "elbo_encoder": mean_of(self.elbo_encoder),
            "approximation_gap": mean_of(self.approximation),
            "amortization_gap": mean_of(self.amortization),
            "q_star_steps": len(self.losses),
        }


def inference_gaps(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    steps: int = 500,
    lr: float = 0.02,
    particles: int = 8,
    is_samples: int = 1000,
) -> Gaps:
    """Approximation and amortization gaps on the rows of ``x``.

    Under a prior that reads labels the gaps are those of the model given each image's label
    (log p(x | y), and ELBOs given y), since q* is fitted given the label.

    Args:
        vae: The fitted VAE (point decoder).
        x: The images, ``(num_images, features)``.
        labels: Their labels, for priors that use them.
        steps: Adam steps of the optimisation of q* (see
            :func:`~pyro_vae.inference.local_posteriors.fit_local_posteriors`).
        lr: Its learning rate.
        particles: Draws per step of its ELBO.
        is_samples: Draws per image for the ELBOs and the IS estimate.
    """
    local, losses = fit_local_posteriors(vae, x, labels, steps=steps, lr=lr, particles=particles)
    # the q* guide is tied to its rows, so it is evaluated without splitting the images; under
    # a label-conditioned prior q* is fitted given the label, so every term here is given it
    optimal = evaluate(local, x, labels, is_samples=is_samples, batch_size=len(x))
    encoder = evaluate(vae, x, labels, is_samples=is_samples, marginalize_labels=False)
    return Gaps(optimal.log_likelihood, optimal.elbo, encoder.elbo, losses)


def _gaps(d: Diagnosis) -> None:
    config, x, labels = d.config, d.x, d.labels
    if not config.gap_images:
        return
    count = min(config.gap_images, len(x))
    d.say(f"amortization gap on {count} images ({config.gap_steps} steps of q*)")
    chosen = evenly_spaced(len(x), count).to(x.device)
    d.report["gaps"] = inference_gaps(
        d.run.vae,
        x[chosen],
        None if labels is None else labels[chosen],
        steps=config.gap_steps,
        is_samples=config.is_samples,
    ).summary()


def _render_gaps(report: dict[str, Any]) -> list[str]:
    if "gaps" not in report:
        return []
    gaps = report["gaps"]
    return [
        "## Inference gaps (Cremer et al. 2018)",
        "",
        f"On {gaps['images']} images; q* is a Gaussian optimised per image "
        f"({gaps['q_star_steps']} Adam steps from the encoder's output), log p(x) is "
        "importance-sampled with q* as proposal.",
        "",
        "| log p(x) | ELBO(q*) | ELBO(q_phi) | approximation gap | amortization gap |",
        "|---:|---:|---:|---:|---:|",
        f"| {fmt(gaps['log_likelihood'])} | {fmt(gaps['elbo_optimal'])} | "
        f"{fmt(gaps['elbo_encoder'])} | {fmt(gaps['approximation_gap'])} | "
        f"{fmt(gaps['amortization_gap'])} |",
    ]


SECTION = register_section(
    Section(
        "gaps",
        _gaps,
        _render_gaps,
        budget=(
            Budget("gap_images", 100, "images for the amortization gap (0 skips it)", 0, smoke=2),
            Budget(
                "gap_steps",
                500,
                "Adam steps of the per-image q* (the guide's own family)",
                smoke=20,
            ),
        ),
    )
)
