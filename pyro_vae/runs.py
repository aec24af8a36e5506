"""Run folders: build the program a config describes, and load a trained run back.

``pyro-vae train`` and :func:`load_run` build the model through :func:`build_program`, so a run
folder (``config.json`` + ``checkpoint.pt``) always reloads into the model that wrote it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch

from pyro_vae.inference.fit_state import check_trained_params
from pyro_vae.inference.programs import PointWeights
from pyro_vae.inference.svi import FitResult, Program
from pyro_vae.models import VAE

from .checkpoint import latest_checkpoint, load_checkpoint, read_json, run_parts
from .config import TrainConfig, check_device, settings_that_differ
from .core.errors import CheckpointError, ConfigError
from .data import Dataset
from .run_folder import RunData, run_data


def build_program(config: TrainConfig, run: RunData) -> tuple[VAE, Program]:
    """The VAE ``config`` describes for the data of ``run``, and the program SVI fits.

    With a weight prior other than ``flat`` the decoder weights are global sites and the
    program is :class:`~pyro_vae.inference.programs.PointWeights` (a point decoder maximising
    the ELBO plus log p(w)); otherwise it is the VAE itself (a point decoder maximising the
    ELBO: variational EM, not maximum likelihood).
    """
    vae = config.model_spec(image_shape=run.data.image_shape).build(
        run.train_fixed,
        num_classes=run.num_classes,
        weight_prior=None if config.plain_decoder else config.weight_prior,
        weight_prior_options=config.weight_prior_options,
    )
    return vae, (PointWeights(vae) if vae.weight_sites else vae)


class Run(NamedTuple):
    """A trained run, loaded: its config, point-decoder VAE, and data as it was modelled.

    ``train_x`` / ``test_x`` are binarized once as the run's metrics were (test seed fixed);
    ``epochs`` counts the epochs in the checkpoint.
    """

    folder: Path
    config: TrainConfig
    vae: VAE
    data: Dataset
    train_x: torch.Tensor
    train_labels: torch.Tensor | None
    test_x: torch.Tensor
    test_labels: torch.Tensor | None
    epochs: int


def load_run(
    folder: str | Path,
    *,
    device: str | None = None,
    data_dir: str | None = None,
    allow_changed_data: bool = False,
) -> Run:
    """Load the run in ``folder`` (written by ``pyro-vae train``) for evaluation.

    Args:
        folder: The run folder.
        device: Where to put model and data (default: the run's own device).
        data_dir: Where to find the data set, if not where the run found it.
        allow_changed_data: Go on even if the data set's values differ from those the run was
            fitted to (otherwise refused, naming both fingerprints).

    Raises:
        CheckpointError: The folder is missing, holds no checkpoint, was written by an
            incompatible version or configuration, its ``config.json`` contradicts its
            checkpoint, or its data set has changed since.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"run folder {str(folder)!r} does not exist")
    if device is not None:
        check_device(device)  # a device that is not here is the device's fault, not the run's
    path = latest_checkpoint(folder)
    checkpoint = load_checkpoint(path)
    if "model" in checkpoint and isinstance(checkpoint.get("config"), dict):
        if checkpoint["config"].get("labels") is not None:
            raise CheckpointError(
                f"{folder} is a semi-supervised run (train --labels): diagnose and compare do "
                "not read it yet; its metrics.json and summary.html hold its scores"
            )
    saved, state = run_parts(checkpoint, path)
    overrides = {"device": device or _device_here(saved, folder)}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    config = readable_config(saved, overrides, path)
    _check_config_json(folder, config, overrides)
    run = run_data(config)
    check_same_data(recorded_data(checkpoint), run.data, folder, allow=allow_changed_data)
    data, train_x, train_labels = run.data, run.train_fixed, run.train_labels
    test_x, test_labels = run.test_x, run.test_labels
    vae, program = build_program(config, run)
    with torch.no_grad():  # create lazily built autoguide parameters before loading
        program.guide(train_x[:1], None if train_labels is None else train_labels[:1])
    try:
        epochs = check_trained_params(state, program, FitResult)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    program.load_state_dict({k: v.to(train_x.device) for k, v in state["params"].items()})
    if vae.weight_sites:
        vae.fix_weights(program.point_weights())
    vae.eval()
    return Run(folder, config, vae, data, train_x, train_labels, test_x, test_labels, epochs)


def _device_here(saved: dict[str, Any], folder: Path) -> str:
    device = str(saved.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"the run in {folder} was trained on {device}, and no CUDA GPU is "
            "available here; evaluate it on the CPU with --device cpu"
        )
    return device


def readable_config(saved: Any, overrides: dict[str, Any], path: Path) -> TrainConfig:
    """The run config ``saved`` in ``path`` (a checkpoint or ``config.json``) with
    ``overrides``, or a one-line error naming the file."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is not a pyro-vae config")
    try:
        return TrainConfig.from_dict({**saved, **overrides})
    except ConfigError as err:
        raise CheckpointError(f"{path} holds a config this pyro-vae cannot read: {err}") from None


def _check_config_json(folder: Path, config: TrainConfig, overrides: dict[str, Any]) -> None:
    """Refuse a ``config.json`` that says the run is another than its checkpoint holds (an
    edit, or a file from another run); only what a resume may change may differ."""
    path = folder / "config.json"
    if not os.path.lexists(path):
        return  # nothing says otherwise
    written = readable_config(read_json(path), overrides, path)
    differ = settings_that_differ(config, written)
    if differ:
        raise CheckpointError(
            f"{path} contradicts the run's checkpoint ({', '.join(differ)}); it was edited or "
            "comes from another run: restore it, or train a new run with those settings"
        )


def recorded_data(checkpoint: dict[str, Any]) -> str | None:
    """The fingerprint of the data a checkpoint was fitted to (``None`` for checkpoints
    written before fingerprints were recorded)."""
    record = checkpoint.get("data")
    value = record.get("content_sha256") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def check_same_data(recorded: str | None, data: Dataset, folder: Path, *, allow: bool) -> None:
    """Refuse to go on with a run on data whose values differ from those it was fitted to,
    naming both fingerprints, unless ``allow``; then say so on stderr."""
    now = data.content_sha256()
    if recorded is None or recorded == now:
        return
    what = (
        f"the data set {data.name!r} has changed since the run in {folder} was fitted to it "
        f"(SHA-256 of its values then {recorded}, now {now})"
    )
    if not allow:
        raise CheckpointError(f"{what}; give --allow-changed-data to go on with the new data")
    print(f"pyro-vae: note: {what}; going on, as --allow-changed-data asks", file=sys.stderr)
