"""``train --tensorboard``: the event file holds, per epoch, the training loss (the numbers of
metrics.json's train.loss_per_epoch), a test ELBO, KL per latent dimension and pictures;
logging leaves the fit's numbers as they are; without TensorBoard the option is one line."""

import json
import sys

import pytest
from common import TINY

from pyro_vae.cli import main

pytest.importorskip("tensorboard")

ARGS = [*TINY, "--epochs", "2", "--latent-dim", "3"]


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def test_every_epoch_is_logged_and_the_fit_is_unchanged(tmp_path):
    logged, plain = tmp_path / "logged", tmp_path / "plain"
    assert main(["train", *ARGS, "--tensorboard", "--out", str(logged)]) == 0
    assert main(["train", *ARGS, "--out", str(plain)]) == 0
    events = _events(logged / "tensorboard")
    scalars, images = events.Tags()["scalars"], events.Tags()["images"]
    assert {"loss/train", "kl_weight", "elbo/test", "kl_per_dim/0", "kl_per_dim/2"} <= set(scalars)
    assert {"samples", "reconstructions"} <= set(images)
    history = json.loads((logged / "metrics.json").read_text())["train"]
    losses = events.Scalars("loss/train")
    assert [e.step for e in losses] == [1, 2]
    assert [e.value for e in losses] == pytest.approx(history["loss_per_epoch"], rel=1e-6)
    assert all(e.value < 0 for e in events.Scalars("elbo/test"))
    assert all(e.value >= 0 for e in events.Scalars("kl_per_dim/0"))
    shown = events.Images("samples")[-1]
    assert (shown.width, shown.height) != (0, 0) and len(events.Images("samples")) == 2
    # logging forks the random state: the fit is the one an unlogged run makes
    plain_history = json.loads((plain / "metrics.json").read_text())["train"]
    assert history["loss_per_epoch"] == plain_history["loss_per_epoch"]
    assert history["elbo"] == plain_history["elbo"]


def test_without_tensorboard_the_option_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--tensorboard", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install pyro-vae[tensorboard]" in err[0]
    assert not out.exists()
