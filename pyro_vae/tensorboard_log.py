"""Training curves in TensorBoard: ``pyro-vae train --tensorboard`` (``train(...,
tensorboard=True)``) writes an event file into ``RUN/tensorboard`` with, after every epoch, the
training loss and KL weight, a test ELBO, the KL of q(z|x) to the prior per latent dimension,
and pictures of samples and reconstructions. TensorBoard is an optional extra
(``pip install pyro-vae[tensorboard]``).

Everything logged is computed with the random state forked and restored, so a fit logged to
TensorBoard follows the same numbers as one that is not.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from pyro_vae.inference import FitResult, evaluate
from pyro_vae.models import VAE

from .core.errors import ConfigError

#: The folder of the event files inside a run folder.
FOLDER = "tensorboard"
#: Test images the per-epoch ELBO is estimated on (one draw each), and images shown.
TEST_IMAGES, SHOWN = 500, 16


def _summary_writer() -> Any:
    try:
        with warnings.catch_warnings():  # the import's deprecation notes are not ours
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install pyro-vae[tensorboard]"
        ) from None
    return SummaryWriter


def check_available() -> None:
    """Refuse ``--tensorboard`` in one line when TensorBoard is not installed."""
    _summary_writer()


class TrainingBoard:
    """The event file of one ``train`` command (a resumed run appends a new one beside it).

    Args:
        out: The run folder.
        vae: The VAE being fitted (scored as it stands after each epoch).
        test_x: Test data as the run models it (binarized once).
        test_labels: Their labels, for priors that read them.
        image_shape: The shape of one image, or ``None`` for features (no pictures).
    """

    def __init__(
        self,
        out: Path,
        vae: VAE,
        test_x: torch.Tensor,
        test_labels: torch.Tensor | None,
        image_shape: tuple[int, ...] | None,
    ) -> None:
        self.writer = _summary_writer()(log_dir=str(out / FOLDER))
        self.vae = vae
        self.x = test_x[:TEST_IMAGES]
        self.labels = None if test_labels is None else test_labels[:TEST_IMAGES]
        self.image_shape = image_shape

    def epoch(self, result: FitResult) -> None:
        """Log the epoch that ``result`` has just recorded."""
        vae, step = self.vae, result.epochs
        self.writer.add_scalar("loss/train", result.losses[-1], step)
        self.writer.add_scalar("kl_weight", result.betas[-1], step)
        if vae.weight_sites:  # random decoder weights: no point decoder to score mid-fit
            return
        devices = [self.x.device.index or 0] if self.x.device.type == "cuda" else []
        training = vae.training
        vae.eval()
        try:
            with torch.random.fork_rng(devices=devices):
                self._scores(vae, step)
        finally:
            vae.train(training)

    def _scores(self, vae: VAE, step: int) -> None:
        from .diagnostics import posterior_collapse

        test = evaluate(vae, self.x, self.labels, is_samples=1)
        self.writer.add_scalar("elbo/test", test.elbo.mean().item(), step)
        kl = posterior_collapse(vae, self.x, self.labels).kl_per_dim
        if kl is not None:
            for dim, value in enumerate(kl.tolist()):
                self.writer.add_scalar(f"kl_per_dim/{dim}", value, step)
        if self.image_shape is not None:
            shown = self.x[:SHOWN]
            labels = None if self.labels is None else self.labels[:SHOWN]
            self._images("reconstructions", vae.reconstruct(shown, labels), step)
            self._images("samples", vae.generate(len(shown), labels), step)

    def _images(self, tag: str, flat: torch.Tensor, step: int) -> None:
        shape = self.image_shape if len(self.image_shape) == 3 else (1, *self.image_shape)
        images = flat.detach().float().clamp(0, 1).reshape(len(flat), *shape).cpu()
        self.writer.add_images(tag, images, step, dataformats="NCHW")

    def close(self) -> None:
        self.writer.close()
