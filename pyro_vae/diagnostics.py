"""Can this fit be trusted? Per-image diagnostics of a trained VAE, returned as data.

- :func:`importance_diagnostics`: importance-sampled log p(x), plain and Pareto-smoothed, and
  Pareto k-hat per image (is q(z|x) a usable proposal for p(z|x)?);
- :func:`posterior_collapse`: KL per latent dimension and active units;
- :func:`aggregate_posterior`: the mixture of q(z|x) over the data against p(z), and the
  mutual information I(x; z) under q;
- :func:`inference_gaps`: approximation and amortization gaps (Cremer et al. 2018);
- :func:`vi_against_nuts`: q(z|x) draws beside NUTS draws of the exact posterior;
- :func:`elpd_comparison`: differences of expected log predictive density between fits, with
  standard errors.

Pictures and the ``diagnose`` report are built on these (see :mod:`pyro_vae.diagnose`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import pyro.distributions as dist
import torch
from torch.distributions import kl_divergence

from pyro_vae.inference import Evaluation, evaluate
from pyro_vae.inference.local_posteriors import fit_local_posteriors
from pyro_vae.inference.nuts import LatentPosterior, nuts_latent
from pyro_vae.inference.svi import Program
from pyro_vae.models import VAE, moments

from . import arviz_bridge
from .core.errors import ConfigError
from .core.validate import positive_float, positive_int

#: Fewest importance samples per image that k-hat is estimated from. PSIS fits the Pareto
#: tail to the largest min(K/5, 3 sqrt K) weights (Vehtari et al. 2024); at K = 20 that is 4,
#: too few for a fit (ArviZ returns k-hat = inf), and the paper's sample-size-dependent
#: threshold min(1 - 1/log10 K, 0.7) only reaches 0.5 at K = 100. 200 gives a 28-draw tail.
MIN_IS_SAMPLES = 200
#: Pareto k-hat bins of Vehtari et al.: good, usable, unreliable.
KHAT_GOOD, KHAT_BAD = 0.5, 0.7
#: A latent unit is active when Cov_x(E_q[z_u]) exceeds this (Burda et al. 2016).
ACTIVE_THRESHOLD = 1e-2


def _mean(values: torch.Tensor) -> float:
    return values.double().mean().item()


# ----------------------------------------------------------------------------- k-hat


class ImportanceDiagnostics(NamedTuple):
    """Per-image importance sampling with the guide as proposal; tensors of shape (num_data,).

    - ``log_likelihood``: log (1/K) sum_k w_k, the plain IS estimate of log p(x);
    - ``psis_log_likelihood``: the same with Pareto-smoothed weights;
    - ``khat``: Pareto shape of each image's weights (-inf: constant weights, exact posterior);
    - ``elbo``: mean over the K draws of log w_k.
    """

    log_likelihood: torch.Tensor
    psis_log_likelihood: torch.Tensor
    khat: torch.Tensor
    elbo: torch.Tensor
    is_samples: int

    @property
    def khat_threshold(self) -> float:
        """The sample-size-dependent bound for "good" (Vehtari et al. 2024):
        min(1 - 1/log10 K, 0.7)."""
        return min(1.0 - 1.0 / math.log10(self.is_samples), KHAT_BAD)

    def khat_shares(self) -> dict[str, float]:
        """Shares of images with k-hat below 0.5, from 0.5 to 0.7, and above 0.7."""
        k = self.khat
        return {
            "good (< 0.5)": _mean(k < KHAT_GOOD),
            "ok (0.5-0.7)": _mean((k >= KHAT_GOOD) & (k <= KHAT_BAD)),
            "bad (> 0.7)": _mean(k > KHAT_BAD),
        }

    def worst(self, num: int = 8) -> list[int]:
        """Indices of the ``num`` images with the largest k-hat, worst first."""
        return self.khat.argsort(descending=True)[:num].tolist()

    def summary(self) -> dict[str, object]:
        return {
            "is_samples": self.is_samples,
            "log_likelihood": _mean(self.log_likelihood),
            "psis_log_likelihood": _mean(self.psis_log_likelihood),
            "elbo": _mean(self.elbo),
            "khat_max": self.khat.max().item(),
            "khat_median": self.khat.median().item(),
            "khat_shares": self.khat_shares(),
            "khat_threshold_for_K": self.khat_threshold,
        }


def importance_diagnostics(
    program: Program,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    is_samples: int = 1000,
    batch_size: int = 100,
) -> ImportanceDiagnostics:
    """IS log p(x), PSIS log p(x) and Pareto k-hat for every row of ``x``.

    Args:
        program: Module with ``model`` and ``guide``; the guide is the proposal.
        x: Data as the model expects it, ``(num_data, features)``.
        labels: Labels for priors that use them.
        is_samples: K, draws per image (k-hat needs a few hundred to be meaningful).
        batch_size: Images per chunk.
    """
    if is_samples < MIN_IS_SAMPLES:
        raise ConfigError(
            f"Pareto k-hat needs at least {MIN_IS_SAMPLES} importance samples, not {is_samples}"
        )
    result = evaluate(
        program, x, labels, is_samples=is_samples, batch_size=batch_size, keep_log_weights=True
    )
    return pareto_diagnostics(result)


def pareto_diagnostics(result: Evaluation) -> ImportanceDiagnostics:
    """PSIS and k-hat from an :func:`~pyro_vae.inference.evaluate` run with
    ``keep_log_weights=True`` (so one pass gives the ELBO terms and the diagnostics)."""
    if result.log_weights is None:
        raise ConfigError("pareto_diagnostics needs evaluate(..., keep_log_weights=True)")
    smoothed, khat = arviz_bridge.pareto_smoothed(result.log_weights)
    device = result.log_weights.device
    return ImportanceDiagnostics(
        result.log_likelihood,
        torch.logsumexp(torch.as_tensor(smoothed, device=device), dim=-1)
        - math.log(result.is_samples),
        torch.as_tensor(khat, device=device),
        result.elbo,
        result.is_samples,
    )


# ----------------------------------------------------------------------------- collapse


class Collapse(NamedTuple):
    """How much each latent dimension is used.

    - ``kl_per_dim``: mean over the data of KL(q(z_u|x) || p(z_u)), ``(latent_dim,)``; ``None``
      when the prior does not factorise over dimensions (mixtures, VampPrior, flows);
    - ``activity``: Cov_x(E_q[z_u]) per dimension;
    - ``active_units``: how many exceed ``threshold``.
    """

    kl_per_dim: torch.Tensor | None
    activity: torch.Tensor
    active_units: int
    threshold: float

    def summary(self) -> dict[str, object]:
        return {
            "active_units": self.active_units,
            "latent_dim": len(self.activity),
            "threshold": self.threshold,
            "activity": self.activity.tolist(),
            "kl_per_dim": None if self.kl_per_dim is None else self.kl_per_dim.tolist(),
        }


def _factorised(prior: dist.Distribution) -> dist.Distribution | None:
    """The per-dimension distribution of a prior that is a product over dimensions."""
    while isinstance(prior, dist.ExpandedDistribution):
        prior = prior.base_dist
    if isinstance(prior, torch.distributions.Independent) and prior.base_dist.event_shape == ():
        return prior.base_dist
    return None


@torch.no_grad()
def posterior_collapse(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    threshold: float = ACTIVE_THRESHOLD,
    draws: int = 100,
) -> Collapse:
    """KL per latent dimension and active units of the encoder on ``x``.

    Args:
        vae: The fitted VAE.
        x: Data, ``(num_data, features)``.
        labels: Labels for priors that use them.
        threshold: Activity above which a unit counts as active.
        draws: Draws per datapoint for the KL where it has no closed form, and for q's
            moments where they have none (``iaf``).

    q(z_u|x) is the marginal of q in coordinate u: exact for the Gaussian families, the
    Gaussian with its mean and standard deviation for ``iaf``.
    """
    positive_float("threshold", threshold)
    positive_int("draws", draws)
    loc, scale = moments(vae.posterior(x, labels), draws)
    activity = loc.double().var(0, unbiased=False) if len(x) > 1 else torch.zeros_like(loc[0])
    base = _factorised(vae.prior(len(x), labels))
    kl = None
    if base is not None:
        q = dist.Normal(loc, scale)
        p = base.expand(loc.shape)
        try:
            kl = kl_divergence(q, p).mean(0)
        except NotImplementedError:
            z = q.sample((draws,))
            kl = (q.log_prob(z) - p.log_prob(z)).mean((0, 1))
    return Collapse(kl, activity, int((activity > threshold).sum()), threshold)


# ----------------------------------------------------------------------------- aggregate posterior


class AggregatePosterior(NamedTuple):
    """q(z) = (1/N) sum_n q(z|x_n) against the prior p(z), estimated on N datapoints.

    - ``kl``: KL(q(z) || p(z)) = E_q(z)[log q(z) - log p(z)];
    - ``mutual_information``: I(x; z) under q = E_x E_q(z|x)[log q(z|x) - log q(z)], a Monte
      Carlo estimate with one draw per datapoint (at most log N; near 0 it can dip below);
    - ``hole_fraction``: share of prior draws where q(z) is lower than at 99 % of its own
      draws, each scored without its own component (0.01 when q(z) = p(z); more means p(z)
      puts mass where no data is encoded: holes that samples from the prior fall into);
    - ``expected_kl``: E_x KL(q(z|x) || p(z)) = ``mutual_information + kl``.

    With N datapoints the mixture is a density estimate: the information estimate cannot
    exceed log N, and when it sits near that cap ``kl`` is overestimated by the excess.
    - ``q_draws``, ``p_draws``: one draw per datapoint from each, ``(N, latent_dim)``.
    """

    kl: float
    mutual_information: float
    hole_fraction: float
    q_draws: torch.Tensor
    p_draws: torch.Tensor

    @property
    def expected_kl(self) -> float:
        return self.mutual_information + self.kl

    @property
    def at_cap(self) -> bool:
        """Whether I(x; z) is within 0.5 nats of log N: N is then too small to resolve it."""
        return self.mutual_information > math.log(len(self.q_draws)) - 0.5

    def summary(self) -> dict[str, float | bool]:
        return {
            "kl": self.kl,
            "mutual_information": self.mutual_information,
            "mutual_information_bound": math.log(len(self.q_draws)),
            "mutual_information_at_bound": self.at_cap,
            "expected_kl": self.expected_kl,
            "hole_fraction": self.hole_fraction,
        }


def _in_float64(q: dist.Distribution) -> dist.Distribution:
    """The Gaussian families' q in float64 (sums of many small densities); others as they are."""
    if isinstance(q, dist.Independent) and isinstance(q.base_dist, dist.Normal):
        return dist.Normal(q.base_dist.loc.double(), q.base_dist.scale.double()).to_event(1)
    if isinstance(q, dist.MultivariateNormal):
        return dist.MultivariateNormal(q.loc.double(), scale_tril=q.scale_tril.double())
    return q


def _log_aggregate(
    z: torch.Tensor,
    q: dist.Distribution,
    leave_own_out: bool = False,
    chunk: int = 256,
) -> torch.Tensor:
    """log (1/N) sum_n q(z_i | x_n) for every row z_i, in chunks of rows; ``q`` has batch
    shape ``(N,)``.

    With ``leave_own_out`` (z_i drawn from component i) the i-th component is left out and the
    mean is over the other N - 1, so z_i is scored like a point the mixture has not seen.
    """
    out = []
    components = _in_float64(q)
    count = q.batch_shape[0]
    for start in range(0, len(z), chunk):
        zi = z[start : start + chunk]
        zi = zi if components is q else zi.double()
        log_p = components.log_prob(zi[:, None, :].expand(len(zi), count, zi.shape[-1])).double()
        log_p = log_p.nan_to_num(nan=-math.inf)  # an inverted flow that overflowed: density 0
        if leave_own_out:
            own = torch.arange(start, start + len(zi), device=z.device)
            log_p[torch.arange(len(zi), device=z.device), own] = -math.inf
        out.append(torch.logsumexp(log_p, dim=1))
    return torch.cat(out) - math.log(count - (1 if leave_own_out else 0))


def _log_prior(vae: VAE, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """log p(z); for a prior conditioned on labels, the mixture over the labels' frequencies."""
    if not vae.prior.needs_labels:
        return vae.prior(len(z), None).log_prob(z).double()
    classes, counts = labels.unique(return_counts=True)
    terms = [
        vae.prior(len(z), torch.full_like(labels[: len(z)], int(c))).log_prob(z).double()
        + math.log(n / len(labels))
        for c, n in zip(classes.tolist(), counts.tolist(), strict=True)
    ]
    return torch.logsumexp(torch.stack(terms), dim=0)


@torch.no_grad()
def aggregate_posterior(
    vae: VAE, x: torch.Tensor, labels: torch.Tensor | None = None
) -> AggregatePosterior:
    """Compare the aggregate posterior of the encoder on ``x`` with the prior.

    Args:
        vae: The fitted VAE.
        x: Data, ``(num_data, features)``; at least 2 rows.
        labels: Labels (needed by label-conditioned priors; their p(z) is the mixture over the
            labels' frequencies in ``labels``).
    """
    if len(x) < 2:
        raise ConfigError("the aggregate posterior needs at least 2 datapoints")
    if vae.prior.needs_labels and labels is None:
        raise ConfigError(f"the {vae.prior.name} prior needs labels")
    q = vae.posterior(x, labels)
    z = q.sample()
    log_q_own = q.log_prob(z).double()
    log_q = _log_aggregate(z, q)
    prior_draws = vae.prior(len(x), labels).sample()
    log_q_at_prior = _log_aggregate(prior_draws, q)
    cutoff = torch.quantile(_log_aggregate(z, q, leave_own_out=True), 0.01)
    return AggregatePosterior(
        _mean(log_q - _log_prior(vae, z, labels)),
        _mean(log_q_own - log_q),
        _mean(log_q_at_prior < cutoff),
        z,
        prior_draws,
    )


# ----------------------------------------------------------------------------- gaps


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
            "log_likelihood": _mean(self.log_likelihood),
            "elbo_optimal": _mean(self.elbo_optimal),
            "elbo_encoder": _mean(self.elbo_encoder),
            "approximation_gap": _mean(self.approximation),
            "amortization_gap": _mean(self.amortization),
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


# ----------------------------------------------------------------------------- NUTS


class LatentComparison(NamedTuple):
    """NUTS and q(z|x) draws for the same images, ``(chains, draws, images, latent_dim)``, and
    q's mean ``loc`` and standard deviation ``scale`` per coordinate, ``(images, latent_dim)``
    (exact for the Gaussian families, from draws for ``iaf``)."""

    nuts: LatentPosterior
    variational: torch.Tensor
    images: list[int]
    loc: torch.Tensor
    scale: torch.Tensor

    def differences(self) -> dict[str, torch.Tensor]:
        """Per image and dimension: (E_q z - E_nuts z) / sd_nuts and sd_q / sd_nuts (see
        :meth:`~pyro_vae.inference.nuts.LatentPosterior.against_moments`)."""
        return self.nuts.against_moments(self.loc, self.scale)

    def gap_summary(self) -> dict[str, float]:
        """``mean_abs_gap_in_sd`` and ``sd_ratio_mean``, as ``compare`` reports them."""
        return self.nuts.gap_summary(self.loc, self.scale)


def vi_against_nuts(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    images: Sequence[int] = (0, 1, 2, 3),
    chains: int = 4,
    draws: int = 200,
    warmup: int = 200,
    seed: int = 0,
) -> LatentComparison:
    """NUTS over z for ``x[images]`` under the fitted decoder, and as many q(z|x) draws.

    Args:
        vae: The fitted VAE (point decoder).
        x: Data; ``images`` index its rows.
        labels: Labels for priors that use them.
        images: Rows to sample.
        chains: NUTS chains (run one after another).
        draws: Draws kept per chain.
        warmup: Warm-up steps per chain.
        seed: Seed of the first chain; the q draws use ``seed`` too.
    """
    images = list(images)
    if not images or min(images) < 0 or max(images) >= len(x):
        raise ConfigError(f"NUTS images must be row indices in 0..{len(x) - 1}, not {images}")
    xs = x[images]
    ys = None if labels is None else labels[images]
    posterior = nuts_latent(vae, xs, ys, chains=chains, draws=draws, warmup=warmup, seed=seed)
    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        q = vae.posterior(xs, ys)
        loc, scale = moments(q)
        draws_q = q.sample((chains, draws))
    return LatentComparison(posterior, draws_q, images, loc, scale)


# ----------------------------------------------------------------------------- ELPD


def elpd_comparison(per_image: Mapping[str, torch.Tensor]) -> list[dict[str, float | str]]:
    """Expected log predictive density of each fit on held-out images, and differences.

    The ELPD of a fit is sum_i log p(x_i) over the test images (held out, so no leave-one-out
    correction is needed); its standard error is sqrt(n var_i log p(x_i)). Fits are sorted
    best first; ``elpd_diff`` is the gap to the best and ``dse`` the standard error of the
    pointwise differences, sqrt(n var_i d_i), as ``arviz.compare`` computes it.

    Args:
        per_image: Per fit, log p(x_i) for the same test images in the same order.
    """
    if not per_image:
        raise ConfigError("elpd_comparison needs at least one fit")
    values = {name: v.double().flatten() for name, v in per_image.items()}
    sizes = {len(v) for v in values.values()}
    if len(sizes) != 1:
        raise ConfigError(f"fits were evaluated on different numbers of images: {sorted(sizes)}")
    n = sizes.pop()
    ranked = sorted(values, key=lambda name: -values[name].sum().item())
    best = values[ranked[0]]
    rows = []
    for name in ranked:
        diff = best - values[name]
        rows.append(
            {
                "fit": name,
                "elpd": values[name].sum().item(),
                "se": math.sqrt(n * values[name].var(unbiased=False).item()),
                "elpd_diff": diff.sum().item(),
                "dse": math.sqrt(n * diff.var(unbiased=False).item()),
            }
        )
    return rows
