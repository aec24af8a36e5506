"""One training run from a :class:`~pyro_vae.config.TrainConfig` to a complete run folder.

Folder contents: ``config.json``, ``checkpoint.pt`` (the newest checkpoint, written atomically
after every epoch and when SIGINT or SIGTERM stops the run; ``resume`` continues from it, also
mid-epoch), the last ``keep_checkpoints`` tagged checkpoints ``checkpoint-e0005.pt``,
``metrics.json``, and pictures (``reconstructions.png``, ``samples.png``,
``latent.png``, ``loss.png``). Everything is checked before the folder is created.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vae.inference import FitResult, evaluate, fit
from pyro_vae.inference.distributed import leave, workers_from_environment
from pyro_vae.inference.svi import check_resume_state

from . import plots
from .checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_tag,
    latest_checkpoint,
    load_checkpoint,
    read_json,
    run_parts,
    save_rotating,
    write_json,
)
from .config import TrainConfig, check_device
from .data import BINARIZATIONS, TEST_BINARIZATION_SEED, load_dataset
from .errors import CheckpointError, ConfigError, TrainingInterrupted
from .run_folder import check_out_dir, claimed_out_dir, versions
from .runs import build_program
from .signals import stop_on_signals

#: Settings that may change when a run is resumed; all others must match the saved run.
RESUMABLE_CHANGES = (
    "epochs",
    "device",
    "is_samples",
    "keep_checkpoints",
    "on_divergence",
    "jit",
    "compile",
)
#: Draws per training image for the reported train ELBO.
TRAIN_ELBO_SAMPLES = 10


def resume_config(out_dir: str | Path, **changes: Any) -> TrainConfig:
    """The saved config of the run in ``out_dir`` with ``changes`` applied.

    :func:`train` with ``resume=True`` then refuses changes outside :data:`RESUMABLE_CHANGES`.
    """
    saved = read_json(Path(out_dir) / "config.json")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{Path(out_dir) / 'config.json'} is not a pyro-vae config")
    return TrainConfig.from_dict({**saved, **changes})


def _label_marginal(classes: int | None) -> dict[str, str]:
    """What ``metrics.json`` says of log p(x) under a prior that reads labels."""
    if classes is None:
        return {}
    return {
        "log_likelihood": f"marginal log sum_y p(y) p(x|y), p(y) uniform over {classes} "
        "classes; test.log_likelihood_given_label is log p(x|y) at the true label"
    }


def _resume_state(out: Path, config_dict: dict[str, Any], device: torch.device) -> Any:
    """The fit state saved in ``out``, after checking that its config may be resumed as
    ``config_dict`` asks (only :data:`RESUMABLE_CHANGES` may differ)."""
    path = latest_checkpoint(out)
    saved_dict, state = run_parts(load_checkpoint(path, map_location=device), path)
    try:
        saved = TrainConfig.from_dict(saved_dict).to_dict()
    except ConfigError as err:
        raise CheckpointError(f"{path} holds a config this pyro-vae cannot read: {err}") from None
    differ = [
        f.name
        for f in fields(TrainConfig)
        if f.name not in RESUMABLE_CHANGES and saved[f.name] != config_dict[f.name]
    ]
    if differ:
        raise CheckpointError(
            f"the checkpoint in {out} was made with other settings ({', '.join(differ)}); "
            f"on --resume only {', '.join(RESUMABLE_CHANGES)} may change"
        )
    return state


def train(
    config: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train a VAE as ``config`` says and fill ``out_dir``; returns the metrics written.

    Args:
        config: The run's settings.
        out_dir: Run folder; must be new or empty unless ``resume``.
        resume: Continue from ``out_dir/checkpoint.pt`` (see :func:`resume_config`).
        progress: Show a progress bar on stderr.
    """
    out = Path(out_dir)
    device = check_device(config.device)
    workers = workers_from_environment(device)  # one process unless launched by torchrun
    if workers.distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    check_out_dir(out, resume)
    workers.barrier()  # every worker has checked the folder before the first one writes
    config_dict = config.to_dict()
    state = _resume_state(out, config_dict, device) if resume else None

    data = load_dataset(config.dataset, config.data_dir)
    binarize = BINARIZATIONS[config.binarize]
    train_x, test_x = data.train_x.to(device), data.test_x.to(device)
    train_y = None if data.train_y is None else data.train_y.to(device)
    test_y = None if data.test_y is None else data.test_y.to(device)
    train_fixed, test_fixed = binarize.fixed(train_x), binarize.fixed(test_x)

    pyro.set_rng_seed(config.seed)  # the same initial model on every worker
    num_classes = data.num_classes
    # A weight prior makes the decoder weights global sites; AutoDelta gives their MAP value.
    vae, program = build_program(config, train_fixed, num_classes)
    kl_estimator = (
        "analytic"
        if config.objective == "elbo-analytic-kl" and vae.prior.analytic_kl
        else "monte-carlo"
    )
    if config.objective == "elbo-analytic-kl" and kl_estimator != "analytic":
        print(
            f"pyro-vae: note: no closed-form KL for the {config.prior} prior; "
            "elbo-analytic-kl estimates it by Monte Carlo",
            file=sys.stderr,
        )
    vae.likelihood.check_data(train_fixed)
    vae.likelihood.check_data(test_fixed)
    svi_config = config.svi_config()
    if svi_config.batch_size > len(train_x):
        raise ConfigError(
            f"batch_size {svi_config.batch_size} exceeds the {len(train_x)} "
            f"training images of {config.dataset}"
        )

    if svi_config.batch_size % workers.world_size:
        raise ConfigError(
            f"batch_size {svi_config.batch_size} must be a multiple of the "
            f"{workers.world_size} workers"
        )
    if state is not None:  # the whole checkpoint is checked before anything is written
        try:
            check_resume_state(program, train_x, train_y, state, config=svi_config, workers=workers)
        except CheckpointError as err:
            raise CheckpointError(f"{latest_checkpoint(out)}: {err}") from None
    if workers.distributed:  # each worker draws its own z's
        torch.manual_seed(config.seed + 7919 * workers.rank)

    claim = (
        claimed_out_dir(out, resume=resume, keep_partial=lambda: latest_checkpoint(out).is_file())
        if workers.is_main
        else contextlib.nullcontext()
    )
    with claim:
        if workers.is_main:
            write_json(out / "config.json", config_dict)

        def checkpoint(result: FitResult, fit_state: dict[str, Any]) -> None:
            if not workers.is_main:
                return
            step = fit_state.get("position", {}).get("step", 0)
            save_rotating(
                out,
                {"config": config_dict, "fit": fit_state},
                checkpoint_tag(result.epochs, step),
                config.keep_checkpoints,
            )

        with stop_on_signals() as stop:
            try:
                result = fit(
                    program,
                    train_x,
                    train_y,
                    config=svi_config,
                    binarization=binarize,
                    seed=config.seed,
                    state=state,
                    on_epoch=checkpoint,
                    should_stop=(lambda: workers.any(stop(), device))
                    if workers.distributed
                    else stop,
                    workers=workers,
                    progress=progress,
                )
            except TrainingInterrupted as interrupted:
                interrupted.signal_number = stop.signal_number
                interrupted.checkpoint = out / CHECKPOINT_NAME
                raise
            finally:
                leave(workers)
        if not workers.is_main:  # evaluation, pictures and metrics are rank 0's
            return {}

        if vae.weight_sites:
            vae.fix_weights(program.point_weights())
        start = time.perf_counter()
        vae.eval()
        train_eval = evaluate(
            vae,
            train_fixed,
            train_y,
            num_samples=TRAIN_ELBO_SAMPLES,
            jit=config.jit,
            compile=config.compile,
        )
        test_eval = evaluate(
            vae,
            test_fixed,
            test_y,
            num_samples=config.is_samples,
            jit=config.jit,
            compile=config.compile,
        )
        test_summary = test_eval.summary()
        eval_seconds = time.perf_counter() - start

        pictures = ["loss.png"]
        plots.save_loss_curve(result.losses, out / "loss.png", test_summary["elbo"], result.betas)
        plots.save_latent_scatter(vae, test_fixed, test_y, out / "latent.png")
        pictures.append("latent.png")
        if data.image_shape is not None:
            plots.save_reconstructions(
                vae, test_fixed, data.image_shape, out / "reconstructions.png"
            )
            sample_labels = (
                torch.arange(num_classes, device=device).repeat_interleave(8)
                if vae.prior.needs_labels
                else None
            )
            plots.save_samples(
                vae,
                data.image_shape,
                out / "samples.png",
                labels=sample_labels,
                num=64 if sample_labels is None else len(sample_labels),
            )
            pictures += ["reconstructions.png", "samples.png"]

        metrics = {
            "units": "nats per datapoint",
            "dataset": config.dataset,
            "data": {**data.info, "num_train": len(train_x), "num_test": len(test_x)},
            "binarization": {
                "mode": config.binarize,
                "test_seed": TEST_BINARIZATION_SEED if binarize.name == "dynamic" else None,
            },
            "likelihood": {"name": config.likelihood, "options": config.likelihood_options},
            "weight_prior": {
                "name": config.weight_prior,
                "options": config.weight_prior_options,
                "decoder_estimate": "max ELBO (variational EM)"
                if config.weight_prior == "flat"
                else "max ELBO + log p(w)",
            },
            "prior": {
                "name": config.prior,
                "options": config.prior_options,
                "kl_estimator": kl_estimator,
                **_label_marginal(test_eval.label_classes),
            },
            "seed": config.seed,
            "device": str(device),
            "workers": workers.world_size,
            "epochs": result.epochs,
            "train": {
                "loss_per_epoch": result.losses,
                "kl_weight_per_epoch": result.betas,
                "elbo": train_eval.summary()["elbo"],
                "elbo_samples": TRAIN_ELBO_SAMPLES,
            },
            "test": test_summary,
            "wall_time_s": {"train": result.wall_time, "evaluation": eval_seconds},
            "pictures": pictures,
            "versions": versions(),
        }
        write_json(out / "metrics.json", metrics)
        return metrics
