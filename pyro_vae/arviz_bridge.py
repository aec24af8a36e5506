"""The one module that talks to ArviZ: PSIS, InferenceData for SVI fits, summaries, plots.

ArviZ's ``from_pyro`` reads MCMC runs only (DESIGN.md trap 9), so SVI draws and per-image
log-likelihoods are built with ``from_dict``. Everything else in pyro-vae passes tensors and
plain numbers; if ArviZ's API changes, this file is what changes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import arviz as az


@functools.cache
def _arviz() -> Any:
    """ArviZ, imported on first use (it takes seconds, and most commands never need it)."""
    with warnings.catch_warnings():  # ArviZ 0.2x announces its 1.0 refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


#: The columns of :func:`posterior_summary` besides image and latent.
SUMMARY_COLUMNS = ("mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail", "r_hat")
#: Log weights spanning less than this (nats) are constant: the proposal is the posterior.
CONSTANT_SPAN = 1e-6


def _numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().double().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def pareto_smoothed(log_weights: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSIS of each row's importance weights: ``(smoothed log weights, k-hat)``.

    Args:
        log_weights: ``(num_data, K)``, one row of K raw log weights per datapoint.

    Returns:
        The Pareto-smoothed, truncated (unnormalised) log weights, ``(num_data, K)``, and the
        Pareto shape estimate k-hat per datapoint. Rows whose weights are constant (the
        proposal equals the posterior; ArviZ would return ``inf``) keep their weights and get
        k-hat ``-inf``: no tail at all.
    """
    lw = _numpy(log_weights)
    smoothed = lw.copy()
    khat = np.full(lw.shape[:-1], -np.inf)
    varying = (lw.max(-1) - lw.min(-1)) >= CONSTANT_SPAN
    if varying.any():
        smoothed[varying], khat[varying] = _arviz().psislw(lw[varying], normalize=False)
    return smoothed, khat


def inference_data(
    *,
    nuts: torch.Tensor | None = None,
    variational: torch.Tensor | None = None,
    images: Sequence[int] = (),
    log_likelihood: Mapping[str, torch.Tensor] | None = None,
    test_images: Sequence[int] = (),
) -> az.InferenceData:
    """One InferenceData for a diagnosis.

    Args:
        nuts: NUTS draws of z, ``(chains, draws, len(images), latent_dim)``: posterior
            variable ``z_nuts``.
        variational: Draws from q(z|x) for the same images in the same layout (independent
            draws arranged as chains x draws): posterior variable ``z_vi``.
        images: Indices (into the test set) of the images NUTS ran on.
        log_likelihood: Per fit, the importance-sampled log p(x_i) of each test image; the
            ``log_likelihood`` group holds one variable per fit with one chain and one draw
            (the value is already marginalised over z).
        test_images: Indices of those test images.
    """
    posterior = {}
    if nuts is not None:
        posterior["z_nuts"] = _numpy(nuts)
    if variational is not None:
        posterior["z_vi"] = _numpy(variational)
    groups: dict[str, Any] = {}
    if posterior:
        groups["posterior"] = posterior
    if log_likelihood:
        groups["log_likelihood"] = {
            name: _numpy(values)[None, None, :] for name, values in log_likelihood.items()
        }
    dims = {name: ["image", "latent"] for name in posterior}
    dims.update({name: ["test_image"] for name in log_likelihood or {}})
    coords: dict[str, Any] = {}
    if posterior:
        latent_dim = next(iter(posterior.values())).shape[-1]
        coords.update(image=list(images), latent=list(range(latent_dim)))
    if log_likelihood:
        coords["test_image"] = list(test_images)
    return _arviz().from_dict(**groups, coords=coords, dims=dims)


def posterior_summary(idata: az.InferenceData, var_name: str) -> list[dict[str, Any]]:
    """ArviZ's summary (mean, sd, 94 % HDI, ESS, R-hat) of one posterior variable, as rows
    ``{"image", "latent", "mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail",
    "r_hat"}``."""
    table = _arviz().summary(idata, var_names=[var_name], kind="all", round_to="none")
    draws = idata.posterior[var_name]
    rows = []
    for image in draws.coords["image"].values:
        for latent in draws.coords["latent"].values:
            entry = table.loc[f"{var_name}[{image}, {latent}]"]
            rows.append(
                {
                    "image": int(image),
                    "latent": int(latent),
                    **{key: float(entry[key]) for key in SUMMARY_COLUMNS},
                }
            )
    return rows


def convergence(draws: torch.Tensor | list[dict[str, Any]]) -> dict[str, float]:
    """Worst rank-normalised split R-hat and smallest bulk and tail ESS (ArviZ) over every
    image and latent dimension.

    Args:
        draws: NUTS draws ``(chains, draws, images, latent_dim)``, or the rows
            :func:`posterior_summary` already made of them.
    """
    if isinstance(draws, torch.Tensor):
        idata = inference_data(nuts=draws, images=range(draws.shape[2]))
        draws = posterior_summary(idata, "z_nuts")
    return {
        "rhat_max": max(r["r_hat"] for r in draws),
        "ess_bulk_min": min(r["ess_bulk"] for r in draws),
        "ess_tail_min": min(r["ess_tail"] for r in draws),
    }


def save(idata: az.InferenceData, path: str | Path) -> None:
    """Write ``idata`` as netCDF (readable with ``arviz.from_netcdf``)."""
    idata.to_netcdf(str(path))


def load(path: str | Path) -> az.InferenceData:
    """Read an InferenceData written by :func:`save`."""
    return _arviz().from_netcdf(str(path))


def save_posterior_overlay(idata: az.InferenceData, path: str | Path, max_panels: int = 12) -> None:
    """Densities of NUTS against q(z|x), one panel per (image, latent) pair, up to
    ``max_panels``."""
    images = idata.posterior.coords["image"].values
    latents = idata.posterior.coords["latent"].values
    per_image = max(1, min(len(latents), max_panels // max(1, len(images))))
    rows = max(1, min(len(images), max_panels // per_image))
    shown = {"image": images[:rows], "latent": latents[:per_image]}
    nuts, vi = (
        idata.posterior[[name]].sel(shown).rename({name: "z"}) for name in ("z_nuts", "z_vi")
    )
    axes = _arviz().plot_density(
        [nuts, vi],
        data_labels=["NUTS", "q(z|x)"],
        var_names=["z"],
        shade=0.2,
        hdi_prob=0.94,
        grid=(rows, per_image),
        figsize=(2.8 * per_image, 2.4 * rows),
        textsize=8,
        show=False,
    )
    figure = np.atleast_1d(axes).ravel()[0].get_figure()
    figure.subplots_adjust(hspace=0.6)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    _close(figure)


def _close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
