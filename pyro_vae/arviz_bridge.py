"""The one module that talks to ArviZ: PSIS, the posterior/log-likelihood container, summaries,
ELPD records and netCDF files, with either ArviZ line.

ArviZ 0.x is one package with ``psislw`` and an ``InferenceData`` class; ArviZ 1.x (which pip
picks on Python >= 3.12) splits into arviz-base, arviz-stats and arviz-plots, has no
``arviz.psislw``, returns xarray ``DataTree`` objects and takes ``from_dict``'s groups as one
mapping. The line is chosen by feature (:func:`_legacy`: whether ``arviz.psislw`` exists),
never by version string. ArviZ's ``from_pyro`` reads MCMC runs only, so SVI draws and per-image
log-likelihoods are built with ``from_dict``. Everything else in pyro-vae passes tensors and
plain numbers; if ArviZ's API changes, this file is what changes.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .checkpoint import write_file

if TYPE_CHECKING:
    import arviz as az


@functools.cache
def _arviz() -> Any:
    """ArviZ, imported on first use (it takes seconds, and most commands never need it)."""
    with warnings.catch_warnings():  # ArviZ 0.2x announces its 1.0 refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def _legacy() -> bool:
    """Whether the installed ArviZ is the 0.x line (one package with ``psislw``)."""
    return hasattr(_arviz(), "psislw")


#: The columns of :func:`posterior_summary` besides image and latent.
SUMMARY_COLUMNS = ("mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail", "r_hat")
#: ArviZ 1.x's names of the 94 % HDI bounds, and ours (0.x's).
HDI_COLUMNS = {"hdi94_lb": "hdi_3%", "hdi94_ub": "hdi_97%"}
#: Log weights spanning less than this (nats) are constant: the proposal is the posterior.
CONSTANT_SPAN = 1e-6
#: Fewest tail draws a Pareto fit is made from (fewer: k-hat is infinite, as ArviZ 0.x says).
MIN_TAIL = 5


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
        k-hat ``-inf``: no tail at all. With fewer draws than a tail of :data:`MIN_TAIL` needs
        (K < 20), every varying row keeps its weights and gets k-hat ``inf``.
    """
    lw = _numpy(log_weights)
    smoothed = lw.copy()
    khat = np.full(lw.shape[:-1], -np.inf)
    varying = (lw.max(-1) - lw.min(-1)) >= CONSTANT_SPAN
    if _tail_length(lw.shape[-1]) < MIN_TAIL:  # too few draws to fit a tail
        khat[varying] = np.inf
        return smoothed, khat
    if varying.any():
        smoothed[varying], khat[varying] = _psis(lw[varying])
    return smoothed, khat


def _tail_length(draws: int) -> int:
    """How many of the largest weights PSIS fits its Pareto tail to: ceil(min(K/5, 3 sqrt K))."""
    return math.ceil(min(0.2 * draws, 3 * math.sqrt(draws)))


def _psis(lw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed log weights on the scale of ``lw`` (rows: datapoints) and k-hat per row."""
    if _legacy():
        return _arviz().psislw(lw, normalize=False)
    from arviz_stats.base import array_stats

    # ArviZ 1.x's psislw takes log-likelihoods and smooths the LOO ratios 1/p, i.e. their
    # negatives: give it -lw. It returns normalised log weights; smoothing leaves the body of
    # the weights (the smallest included) as it was, so one shift puts them back on lw's scale.
    smoothed, khat = array_stats.psislw(-lw, r_eff=1, axis=-1)
    low = lw.argmin(-1)[..., None]
    shift = np.take_along_axis(lw, low, -1) - np.take_along_axis(smoothed, low, -1)
    return smoothed + shift, np.asarray(khat, dtype=np.float64)


def inference_data(
    *,
    nuts: torch.Tensor | None = None,
    variational: torch.Tensor | None = None,
    images: Sequence[int] = (),
    log_likelihood: Mapping[str, torch.Tensor] | None = None,
    test_images: Sequence[int] = (),
    predictive: Mapping[str, torch.Tensor] | None = None,
    observed: Mapping[str, torch.Tensor] | None = None,
    predictive_dims: Mapping[str, str] | None = None,
    ranks: torch.Tensor | None = None,
    rank_names: Sequence[str] = (),
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
        predictive: Replicated test statistics of the posterior predictive check, each
            ``(replicates, values)``: the ``posterior_predictive`` group (one chain).
        observed: The same statistics of the test images, each ``(values,)``:
            ``observed_data``; with ``predictive``, what ``arviz.plot_ppc`` reads.
        predictive_dims: Each statistic's dimension name (e.g. ``"ppc_image"``).
        ranks: Simulation-based calibration ranks, ``(quantities, simulations)``: the extra
            group ``sbc_ranks``, one coordinate per name in ``rank_names``.
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
    if predictive:
        groups["posterior_predictive"] = {k: _numpy(v)[None] for k, v in predictive.items()}
        groups["observed_data"] = {k: _numpy(v) for k, v in (observed or {}).items()}
        dims.update({name: [(predictive_dims or {}).get(name, name)] for name in predictive})
    if _legacy():
        idata = _arviz().from_dict(**groups, coords=coords, dims=dims)
    else:
        idata = _arviz().from_dict(groups, coords=coords, dims=dims)
    if ranks is not None:
        _add_ranks(idata, ranks, rank_names)
    return idata


def _add_ranks(idata: Any, ranks: torch.Tensor, names: Sequence[str]) -> None:
    """The group ``sbc_ranks`` (not one of ArviZ's standard groups, so added afterwards)."""
    import xarray as xr

    values = ranks.cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)
    dataset = xr.Dataset(
        {"rank": (("quantity", "simulation"), values.astype(np.int64))},
        coords={"quantity": list(names)},
    )
    if _legacy():
        with warnings.catch_warnings():  # "sbc_ranks is not a standard group"
            warnings.simplefilter("ignore", UserWarning)
            idata.add_groups({"sbc_ranks": dataset})
    else:
        idata["sbc_ranks"] = xr.DataTree(dataset)


def posterior_summary(idata: az.InferenceData, var_name: str) -> list[dict[str, Any]]:
    """ArviZ's summary (mean, sd, 94 % HDI, ESS, R-hat) of one posterior variable, as rows
    ``{"image", "latent", "mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail",
    "r_hat"}``."""
    if _legacy():
        table = _arviz().summary(idata, var_names=[var_name], kind="all", round_to="none")
    else:
        table = (
            _arviz()
            .summary(
                idata,
                var_names=[var_name],
                kind="all",
                ci_kind="hdi",
                ci_prob=0.94,
                round_to="none",
            )
            .rename(columns=HDI_COLUMNS)
        )
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
    write_file(path, lambda name: idata.to_netcdf(name))


def load(path: str | Path) -> az.InferenceData:
    """Read a file written by :func:`save` (with either ArviZ line)."""
    return _arviz().from_netcdf(str(path))


def group_names(idata: Any) -> list[str]:
    """The groups of a container :func:`inference_data` or :func:`load` made, e.g.
    ``["posterior", "log_likelihood"]``."""
    if hasattr(idata, "children"):  # an xarray DataTree (ArviZ 1.x)
        return list(idata.children)
    return list(idata.groups())


def held_out_elpd(log_likelihood: Any) -> Any:
    """An ArviZ ``ELPDData`` for held-out per-image log p(x_i), for ``arviz.compare``.

    A held-out ELPD needs no leave-one-out: the images were not fitted, and each log p(x_i)
    is already marginalised over z, so ``elpd_i = log p(x_i)`` and the whole ELPD is their sum
    with standard error sqrt(n var_i). ``arviz.compare({name: held_out_elpd(values), ...})``
    then gives each fit's difference to the best and its standard error (``dse``), with either
    ArviZ line.

    Args:
        log_likelihood: Per image log p(x_i): a tensor, an array, or a ``log_likelihood``
            variable of the file :func:`save` wrote (one chain, one draw).
    """
    import xarray as xr

    values = np.asarray(getattr(log_likelihood, "values", log_likelihood), dtype=np.float64)
    values = values.reshape(-1) if values.ndim != 1 else values
    n = len(values)
    elpd_i = xr.DataArray(values, dims=["test_image"], name="loo_i")
    pareto_k = xr.DataArray(np.zeros(n), dims=["test_image"], name="pareto_k")
    elpd, se = float(values.sum()), float(np.sqrt(n * values.var()))
    if _legacy():
        from arviz.stats.stats_utils import ELPDData

        return ELPDData(
            data=[elpd, se, 0.0, 1, n, False, elpd_i, pareto_k, "log", 0.7],
            index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning",
                   "loo_i", "pareto_k", "scale", "good_k"],
        )  # fmt: skip
    from arviz_stats.utils import ELPDData

    return ELPDData(
        elpd=elpd,
        se=se,
        p=0.0,
        n_samples=1,
        n_data_points=n,
        scale="log",
        warning=False,
        good_k=0.7,
        elpd_i=elpd_i,
        pareto_k=pareto_k,
    )


def ecdf_band(n: int, points: np.ndarray, prob: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's simultaneous ``prob`` band (Säilynoja et al. 2022) for the ECDF of ``n``
    uniform values at ``points``, as ECDF fractions ``(lower, upper)``.

    ArviZ 0.x has it as ``ecdf_confidence_band`` (optimised); 1.x (arviz-stats) gives the
    pointwise level that makes a band simultaneous, by simulation, and the band at that level.
    """
    points = np.asarray(points, dtype=np.float64)
    if _legacy():
        from arviz.stats.ecdf_utils import ecdf_confidence_band

        lower, upper = ecdf_confidence_band(n, points, points, prob=prob, method="optimized")
    else:
        from arviz_stats.ecdf_utils import get_pointwise_confidence_band, simulate_confidence_bands

        rng = np.random.default_rng(0)
        pointwise = simulate_confidence_bands(n, 1, points, prob, 1000, rng)
        lower, upper = get_pointwise_confidence_band(pointwise, n, points)
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
