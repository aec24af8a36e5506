"""One training run from a :class:`~pyro_vae.config.TrainConfig` to a complete run folder.

Folder contents: ``config.json``, ``checkpoint.pt`` (the newest checkpoint, written atomically
after every epoch and when SIGINT or SIGTERM stops the run; ``resume`` continues from it, also
mid-epoch), the last ``keep_checkpoints`` tagged checkpoints ``checkpoint-e0005.pt``,
``metrics.json``, and pictures (``reconstructions.png``, ``samples.png``,
``latent.png``, ``loss.png``). Everything is checked before the folder is created.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vae.inference import OBJECTIVES, FitResult, FitState, evaluate, fit
from pyro_vae.inference.distributed import Workers, leave, workers_from_environment
from pyro_vae.inference.svi import Program, check_resume_state, check_step_size
from pyro_vae.models import VAE

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
from .config import RESUMABLE_CHANGES, TrainConfig, check_device, settings_that_differ
from .core.errors import CheckpointError, ConfigError, TrainingInterrupted
from .data import TEST_BINARIZATION_SEED
from .run_folder import (
    TRAIN_ELBO_SAMPLES,
    RunData,
    check_out_dir,
    claimed_out_dir,
    run_data,
    versions,
)
from .run_summary import write_summary
from .runs import build_program, check_same_data, readable_config, recorded_data
from .semi_supervised_run import train_semi_supervised
from .signals import stop_on_signals
from .tensorboard_log import TrainingBoard, check_available

__all__ = ["RESUMABLE_CHANGES", "resume_config", "train"]


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


def _resume_state(out: Path, config: TrainConfig, device: torch.device) -> tuple[Any, Any]:
    """The fit state saved in ``out`` and the fingerprint of the data it was fitted to, after
    checking that its config may be resumed as ``config`` asks (only
    :data:`RESUMABLE_CHANGES` may differ)."""
    path = latest_checkpoint(out)
    checkpoint = load_checkpoint(path, map_location=device)
    saved_dict, state = run_parts(checkpoint, path)
    differ = settings_that_differ(readable_config(saved_dict, {}, path), config)
    if differ:
        raise CheckpointError(
            f"the checkpoint in {out} was made with other settings ({', '.join(differ)}); "
            f"on --resume only {', '.join(RESUMABLE_CHANGES)} may change"
        )
    return state, recorded_data(checkpoint)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    allow_changed_data: bool = False,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train a VAE as ``config`` says and fill ``out_dir``; returns the metrics written.

    Args:
        config: The run's settings.
        out_dir: Run folder; must be new or empty unless ``resume``.
        resume: Continue from ``out_dir/checkpoint.pt`` (see :func:`resume_config`).
        progress: Show a progress bar on stderr.
        allow_changed_data: On ``resume``, go on even if the data set's values differ from
            those the checkpoint was fitted to (otherwise refused, naming both fingerprints).
        tensorboard: Also log every epoch to TensorBoard, in ``out_dir/tensorboard`` (see
            :mod:`pyro_vae.tensorboard_log`).
    """
    out = Path(out_dir)
    if config.labels is not None:
        if resume or tensorboard:
            raise ConfigError(
                "a semi-supervised run (--labels) cannot yet be resumed or logged to TensorBoard"
            )
        return train_semi_supervised(config, out, progress=progress)
    if tensorboard:
        check_available()
    device, workers = _device_and_workers(config)
    check_out_dir(out, resume)
    workers.barrier()  # every worker has checked the folder before the first one writes
    state, recorded = _resume_state(out, config, device) if resume else (None, None)
    run = run_data(config, device)
    if resume:
        check_same_data(recorded, run.data, out, allow=allow_changed_data)
    pyro.set_rng_seed(config.seed)  # the same initial model on every worker
    # A weight prior makes the decoder weights global sites; AutoDelta gives their MAP value.
    vae, program = build_program(config, run)
    _check_before_work(config, vae, program, run, state, workers, out)
    if workers.distributed:  # each worker draws its own z's
        torch.manual_seed(config.seed + 7919 * workers.rank)
    claim = (
        claimed_out_dir(out, resume=resume, keep_partial=lambda: latest_checkpoint(out).is_file())
        if workers.is_main
        else contextlib.nullcontext()
    )
    with claim:
        if workers.is_main:
            write_json(out / "config.json", config.to_dict())
        board = (
            TrainingBoard(out, vae, run.test_x, run.test_labels, run.data.image_shape)
            if tensorboard and workers.is_main
            else None
        )
        try:
            result = _fit(config, program, run, state, workers, out, progress, board)
        finally:
            if board is not None:
                board.close()
        if not workers.is_main:  # evaluation, pictures and metrics are rank 0's
            return {}
        if vae.weight_sites:
            vae.fix_weights(program.point_weights())
        scores = _evaluate(config, vae, run)
        pictures = _save_pictures(out, vae, run, result, scores["test"]["elbo"])
        metrics = _metrics(config, vae, run, result, scores, pictures, device, workers)
        write_json(out / "metrics.json", metrics)
        write_summary(out, config.to_dict(), metrics)
        return metrics


def _device_and_workers(config: TrainConfig) -> tuple[torch.device, Workers]:
    """The device this process trains on, and its place among torchrun's workers."""
    device = check_device(config.device)
    workers = workers_from_environment(device)  # one process unless launched by torchrun
    if workers.distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device, workers


def _analytic_kl(vae: VAE) -> bool:
    """Whether KL(q(z|x) || p(z)) has a closed form for this guide family and prior."""
    return vae.prior.analytic_kl and vae.encoder.analytic_kl


def _check_before_work(
    config: TrainConfig,
    vae: VAE,
    program: Program,
    run: RunData,
    state: Any,
    workers: Workers,
    out: Path,
) -> None:
    """Refuse data the likelihood cannot model, batch sizes the data or workers cannot take,
    and a checkpoint that does not fit the program, before anything is written."""
    if OBJECTIVES[config.objective].analytic_kl and not _analytic_kl(vae):
        print(
            f"pyro-vae: note: no closed-form KL for the {config.guide} guide and the "
            f"{config.prior} prior; elbo-analytic-kl estimates it by Monte Carlo",
            file=sys.stderr,
        )
    vae.likelihood.check_data(run.train_fixed)
    vae.likelihood.check_data(run.test_x)
    batch_size = config.batch_size
    if batch_size > len(run.train_x):
        raise ConfigError(
            f"batch_size {batch_size} exceeds the {len(run.train_x)} "
            f"training images of {config.dataset}"
        )
    if batch_size % workers.world_size:
        raise ConfigError(
            f"batch_size {batch_size} must be a multiple of the {workers.world_size} workers"
        )
    check_step_size(program, run.train_fixed, config.svi_config(), workers.world_size)
    if state is not None:  # the whole checkpoint is checked before anything is written
        try:
            check_resume_state(
                program,
                run.train_x,
                run.train_labels,
                state,
                config=config.svi_config(),
                workers=workers,
            )
        except CheckpointError as err:
            raise CheckpointError(f"{latest_checkpoint(out)}: {err}") from None


def _fit(
    config: TrainConfig,
    program: Program,
    run: RunData,
    state: Any,
    workers: Workers,
    out: Path,
    progress: bool,
    board: TrainingBoard | None = None,
) -> FitResult:
    """Fit with a checkpoint after every epoch (and the epoch logged to ``board``, if any) and
    a polite stop on SIGINT / SIGTERM."""
    config_dict = config.to_dict()
    data_record = {"content_sha256": run.data.content_sha256()}

    def checkpoint(result: FitResult, fit_state: FitState) -> None:
        if not workers.is_main:
            return
        step = (fit_state.position or {}).get("step", 0)
        save_rotating(
            out,
            {"config": config_dict, "fit": fit_state.to_dict(), "data": data_record},
            checkpoint_tag(result.epochs, step),
            config.keep_checkpoints,
        )
        if board is not None and fit_state.position is None:  # an epoch's end
            board.epoch(result)

    with stop_on_signals() as stop:
        should_stop = (
            (lambda: workers.any(stop(), run.train_x.device)) if workers.distributed else stop
        )
        try:
            result = fit(
                program,
                run.train_x,
                run.train_labels,
                config=config.svi_config(),
                binarization=run.binarization,
                seed=config.seed,
                state=state,
                on_epoch=checkpoint,
                should_stop=should_stop,
                workers=workers,
                progress=progress,
            )
        except TrainingInterrupted as interrupted:
            interrupted.signal_number = stop.signal_number
            interrupted.checkpoint = out / CHECKPOINT_NAME
            leave(workers)
            raise
        except BaseException:
            leave(workers)
            raise
    leave(workers, together=True)  # every worker finished the same last collective step
    return result


def _evaluate(config: TrainConfig, vae: VAE, run: RunData) -> dict[str, Any]:
    """The train ELBO and the test scores, with the seconds they took."""
    start = time.perf_counter()
    vae.eval()
    speed = {"jit": config.jit, "compile": config.compile}
    train_eval = evaluate(
        vae, run.train_fixed, run.train_labels, is_samples=TRAIN_ELBO_SAMPLES, **speed
    )
    test_eval = evaluate(vae, run.test_x, run.test_labels, is_samples=config.is_samples, **speed)
    test = test_eval.summary()
    if vae.likelihood.discrete:  # -log p(x) is then a code length
        test["bits_per_dim"] = test["nll"] / (run.data.data_dim * math.log(2))
    return {
        "train_elbo": train_eval.summary()["elbo"],
        "test": test,
        "label_classes": test_eval.label_classes,
        "seconds": time.perf_counter() - start,
    }


def _save_pictures(
    out: Path, vae: VAE, run: RunData, result: FitResult, test_elbo: float
) -> list[str]:
    """The run folder's pictures; returns their file names."""
    plots.save_loss_curve(result.losses, out / "loss.png", test_elbo, result.betas)
    plots.save_latent_scatter(vae, run.test_x, run.test_labels, out / "latent.png")
    shape = run.data.image_shape
    if shape is None:
        return ["loss.png", "latent.png"]
    plots.save_reconstructions(vae, run.test_x, shape, out / "reconstructions.png")
    sample_labels = (
        torch.arange(run.num_classes, device=run.test_x.device).repeat_interleave(8)
        if vae.prior.needs_labels
        else None
    )
    plots.save_samples(
        vae,
        shape,
        out / "samples.png",
        labels=sample_labels,
        num=64 if sample_labels is None else len(sample_labels),
    )
    return ["loss.png", "latent.png", "reconstructions.png", "samples.png"]


def _metrics(
    config: TrainConfig,
    vae: VAE,
    run: RunData,
    result: FitResult,
    scores: dict[str, Any],
    pictures: list[str],
    device: torch.device,
    workers: Workers,
) -> dict[str, Any]:
    """The record ``metrics.json`` holds."""
    return {
        "units": "nats per datapoint",
        "dataset": config.dataset,
        "data": run.record(),
        "binarization": {
            "mode": config.binarization,
            "test_seed": TEST_BINARIZATION_SEED if run.binarization.resample else None,
        },
        "likelihood": {"name": config.likelihood, "options": config.likelihood_options},
        "guide": {"name": config.guide, "options": config.guide_options},
        "weight_prior": {
            "name": config.weight_prior,
            "options": config.weight_prior_options,
            "decoder_estimate": "max ELBO (variational EM)"
            if config.plain_decoder
            else "max ELBO + log p(w)",
        },
        "prior": {
            "name": config.prior,
            "options": config.prior_options,
            "kl_estimator": "analytic"
            if OBJECTIVES[config.objective].analytic_kl and _analytic_kl(vae)
            else "monte-carlo",
            **_label_marginal(scores["label_classes"]),
        },
        "seed": config.seed,
        "device": str(device),
        "workers": workers.world_size,
        "epochs": result.epochs,
        "train": {
            "loss_per_epoch": result.losses,
            "kl_weight_per_epoch": result.betas,
            "elbo": scores["train_elbo"],
            "elbo_samples": TRAIN_ELBO_SAMPLES,
        },
        "test": scores["test"],
        "wall_time_s": {"train": result.wall_time, "evaluation": scores["seconds"]},
        "pictures": pictures,
        "versions": versions(),
    }
