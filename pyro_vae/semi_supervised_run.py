"""``pyro-vae train --labels N``: the semi-supervised VAE (M2, Kingma et al. 2014) on a labelled
data set, N of whose training images keep their label.

The N images are balanced over the classes and chosen by the run's seed; their indices go to
``labelled.json`` in the run folder. ``--labels 0`` is the unsupervised case, a mixture VAE
whose clusters are scored against the labels by the best one-to-one matching of clusters to
classes. ``--label-estimator`` chooses how an unlabelled image's y is handled (exact
enumeration, the score function or a Concrete relaxation); ``--classifier-weight`` is α of the
paper's classifier term (default 0.1 N). At test time y is discrete for every estimator: log p(x)
sums it out exactly (z importance-sampled with K draws per class), the error is that of q(y|x)'s
most probable class.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyro
import torch
from scipy.optimize import linear_sum_assignment

from pyro_vae.inference import LABEL_ESTIMATORS, FitResult, fit
from pyro_vae.inference.label_estimators import (
    classification_error,
    log_marginal,
    paper_classifier_weight,
)
from pyro_vae.models import NETWORKS, SemiSupervisedVAE
from pyro_vae.models.semi_supervised import UNLABELLED

from . import plots
from .checkpoint import CHECKPOINT_NAME, save_checkpoint, write_json
from .config import TrainConfig
from .core.errors import DataError, TrainingInterrupted
from .run_folder import RunData, check_out_dir, claimed_out_dir, run_data, versions
from .run_summary import write_summary
from .signals import stop_on_signals

#: Numbers the evaluation holds at once: log p(x) decodes K x classes draws of each test image.
EVALUATION_NUMBERS = 2**25


def labelled_rows(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` training rows balanced over the classes (the first ``count mod classes``
    classes, in a seeded order, get one more), chosen by ``seed``; sorted."""
    classes = int(labels.max()) + 1
    if count > len(labels):
        raise DataError(f"--labels {count} exceeds the {len(labels)} training images")
    if 0 < count < classes:
        raise DataError(
            f"--labels {count} leaves a class with no labelled image: give at least one per "
            f"class ({classes})"
        )
    generator = torch.Generator().manual_seed(seed)
    extra = torch.randperm(classes, generator=generator)[: count % classes]
    chosen = []
    for c in range(classes):
        rows = torch.nonzero(labels.cpu() == c)[:, 0]
        want = count // classes + int(c in extra)
        if want > len(rows):
            raise DataError(
                f"--labels {count} asks for {want} images of class {c}, which has {len(rows)}"
            )
        chosen.append(rows[torch.randperm(len(rows), generator=generator)[:want]])
    return torch.cat(chosen).sort().values


def _cluster_error(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    """The error of the clusters under the best one-to-one matching with the classes."""
    counts = torch.zeros(classes, classes)
    counts.index_put_((predicted.cpu(), labels.cpu()), torch.ones(len(labels)), accumulate=True)
    rows, cols = linear_sum_assignment(-counts.numpy())
    return 1.0 - counts[rows, cols].sum().item() / len(labels)


def _evaluate(config: TrainConfig, vae: SemiSupervisedVAE, run: RunData) -> dict[str, Any]:
    start = time.perf_counter()
    estimator = LABEL_ESTIMATORS.build("enumerate")
    elbo, log_px = 0.0, []
    per_image = config.is_samples * vae.classes * run.test_x.shape[1]
    for rows in torch.arange(len(run.test_x)).split(max(1, EVALUATION_NUMBERS // per_image)):
        x = run.test_x[rows]
        elbo -= estimator.loss(vae, x).item()  # differentiable (Pyro's rule), not kept
        log_px.append(log_marginal(vae, x, config.is_samples))
    log_px = torch.cat(log_px)
    with pyro.settings.context(module_local_params=True), torch.no_grad():
        predicted = vae.classifier_logits(run.test_x).argmax(-1)
    test = {
        "elbo": elbo / len(run.test_x),
        "log_likelihood": log_px.mean().item(),
        "nll": -log_px.mean().item(),
        "is_samples": config.is_samples,
    }
    if config.labels:
        test["classification_error"] = classification_error(vae, run.test_x, run.test_labels)
    else:
        test["cluster_error"] = _cluster_error(predicted, run.test_labels, vae.classes)
    return {"test": test, "seconds": time.perf_counter() - start}


@torch.no_grad()
def _save_pictures(out: Path, vae: SemiSupervisedVAE, run: RunData, result: FitResult) -> list[str]:
    plots.save_loss_curve(result.losses, out / "loss.png")
    shape = run.data.image_shape
    if shape is None:
        return ["loss.png"]
    with pyro.settings.context(module_local_params=True):
        z = torch.randn(8, vae.latent_dim, device=run.test_x.device)
        rows = {
            f"y = {c}": vae.likelihood.mean(
                vae.decode(z, vae.one_hot(torch.full((8,), c, device=z.device)))
            )
            for c in range(vae.classes)
        }
    plots.save_image_rows(rows, shape, out / "samples.png", per_row=8)
    return ["loss.png", "samples.png"]


def build_semi_supervised(config: TrainConfig, run: RunData) -> SemiSupervisedVAE:
    """The semi-supervised VAE ``config`` describes, for the data of ``run``."""
    options = dict(config.network_options)
    if NETWORKS.takes(config.network, "hidden"):  # the MLP family's widths and layer type
        options = {"hidden": config.hidden, "layer": config.layer, **options}
    weight = config.classifier_weight
    return SemiSupervisedVAE(
        run.data.data_dim,
        run.num_classes,
        config.latent_dim,
        image_shape=run.data.image_shape,
        network=config.network,
        network_options=options,
        likelihood=config.likelihood,
        likelihood_options=config.likelihood_options,
        classifier_weight=paper_classifier_weight(len(run.train_x)) if weight is None else weight,
    ).to(run.train_x.device)


def train_semi_supervised(
    config: TrainConfig, out_dir: str | Path, *, progress: bool = True
) -> dict[str, Any]:
    """Fit the semi-supervised VAE as ``config`` says (``config.labels`` labelled images) and
    fill ``out_dir``; returns the metrics written."""
    out = Path(out_dir)
    check_out_dir(out, resume=False)
    run = run_data(config)
    if run.train_labels is None or run.test_labels is None:
        raise DataError(f"--labels needs a labelled data set; {config.dataset} has no labels")
    chosen = labelled_rows(run.train_labels, config.labels, config.seed)
    labels = torch.full_like(run.train_labels, UNLABELLED)
    labels[chosen] = run.train_labels[chosen]
    pyro.set_rng_seed(config.seed)
    vae = build_semi_supervised(config, run)
    vae.likelihood.check_data(run.train_fixed)
    vae.likelihood.check_data(run.test_x)
    objective = LABEL_ESTIMATORS.build(config.label_estimator, config.particles)
    with claimed_out_dir(out):
        write_json(out / "config.json", config.to_dict())
        write_json(out / "labelled.json", {"rows": chosen.tolist(), "seed": config.seed})
        with stop_on_signals() as stop:
            try:
                result = fit(
                    vae,
                    run.train_x,
                    labels,
                    config=config.svi_config(),
                    binarization=run.binarization,
                    seed=config.seed,
                    should_stop=stop,
                    progress=progress,
                    objective=objective,
                )
            except TrainingInterrupted as interrupted:
                interrupted.signal_number = stop.signal_number
                raise
        save_checkpoint(
            out / CHECKPOINT_NAME, {"config": config.to_dict(), "model": vae.state_dict()}
        )
        vae.eval()
        scores = _evaluate(config, vae, run)
        metrics = {
            "units": "nats per datapoint",
            "dataset": config.dataset,
            "data": run.record(),
            "binarization": {"mode": config.binarization},
            "model": "semi-supervised VAE (M2)",
            "labels": {"count": config.labels, "file": "labelled.json"},
            "label_estimator": config.label_estimator,
            "classifier_weight": vae.classifier_weight,
            "device": str(run.train_x.device),
            "epochs": result.epochs,
            "seconds_per_epoch": sum(result.epoch_seconds) / max(1, len(result.epoch_seconds)),
            "train": {"loss_per_epoch": result.losses},
            "test": scores["test"],
            "wall_time_s": {"train": result.wall_time, "evaluation": scores["seconds"]},
            "pictures": _save_pictures(out, vae, run, result),
            "versions": versions(),
        }
        write_json(out / "metrics.json", metrics)
        write_summary(out, config.to_dict(), metrics)
        return metrics
