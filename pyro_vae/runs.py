"""Run folders: build the program a config describes, and load a trained run back.

``pyro-vae train`` and :func:`load_run` build the model through :func:`build_program`, so a run
folder (``config.json`` + ``checkpoint.pt``) always reloads into the model that wrote it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from pyro_vae.inference.fit_state import check_trained_params
from pyro_vae.inference.programs import PointWeights
from pyro_vae.inference.svi import FitResult, Program
from pyro_vae.models import VAE

from .checkpoint import latest_checkpoint, load_checkpoint, run_parts
from .config import TrainConfig
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
        weight_prior=None if config.weight_prior == "flat" else config.weight_prior,
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


def load_run(folder: str | Path, *, device: str | None = None, data_dir: str | None = None) -> Run:
    """Load the run in ``folder`` (written by ``pyro-vae train``) for evaluation.

    Args:
        folder: The run folder.
        device: Where to put model and data (default: the run's own device).
        data_dir: Where to find the data set, if not where the run found it.

    Raises:
        CheckpointError: The folder is missing, holds no checkpoint, or was written by an
            incompatible version or configuration.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"run folder {str(folder)!r} does not exist")
    path = latest_checkpoint(folder)
    saved, state = run_parts(load_checkpoint(path), path)
    saved = dict(saved)
    if device is not None:
        saved["device"] = device
    elif str(saved.get("device", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"the run in {folder} was trained on {saved['device']}, and no CUDA GPU is "
            "available here; evaluate it on the CPU with --device cpu"
        )
    if data_dir is not None:
        saved["data_dir"] = data_dir
    try:
        config = TrainConfig.from_dict(saved)
    except ConfigError as err:
        raise CheckpointError(f"{path} holds a config this pyro-vae cannot read: {err}") from None
    run = run_data(config)
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
