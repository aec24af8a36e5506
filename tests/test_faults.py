"""Faults during a fit: divergence stops or rolls back, clipping, stop requests resume exactly,
and checkpoints rotate atomically."""

import dataclasses
import math

import pyro
import pytest
import torch
from pyro_vae.inference import OPTIMIZERS, SVIConfig, fit
from pyro_vae.models import build_vae
from torch import nn

from pyro_vae.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_tag,
    load_checkpoint,
    save_rotating,
)
from pyro_vae.core.errors import DataError, TrainingDiverged, TrainingInterrupted
from pyro_vae.data import BINARIZATIONS, load_dataset

#: Pyro warns about the NaN loss these tests cause on purpose.
nan_warning = pytest.mark.filterwarnings("ignore:Encountered NaN")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k").train_x[:200]


class Poisoned(nn.Module):
    """The VAE, with a NaN added to the log joint at the chosen model calls (1 per step)."""

    def __init__(self, vae, poisoned_steps):
        super().__init__()
        self.vae = vae
        self.calls = 0
        self.poisoned_steps = poisoned_steps

    def model(self, *args, **kwargs):
        self.calls += 1
        out = self.vae.model(*args, **kwargs)
        if self.poisoned_steps(self.calls):
            with pyro.validation_enabled(False):  # a NaN factor is invalid on purpose
                pyro.factor("poison", torch.tensor(float("nan")))
        return out

    def guide(self, *args, **kwargs):
        return self.vae.guide(*args, **kwargs)


CONFIG = dict(epochs=3, batch_size=50, lr=1e-3)  # 4 steps per epoch


@nan_warning
def test_divergence_stops_naming_epoch_and_step_and_keeps_the_last_good_state(digits):
    program = Poisoned(build_vae(784, 2, (8,)), lambda call: call == 7)  # epoch 2, step 3
    saved = []
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 3 \(epoch 1 is the last good"):
        fit(
            program,
            digits,
            config=SVIConfig(**CONFIG),
            binarization=BINARIZATIONS["dynamic"],
            on_epoch=lambda result, state: saved.append(load_roundtrip(state)),
        )
    assert len(saved) == 1  # the checkpoint callback only ever saw the good epoch
    assert all(torch.isfinite(v).all() for v in saved[0]["params"].values())


def load_roundtrip(state):
    return {"params": {k: v.clone() for k, v in state.params.items()}}


@nan_warning
def test_rollback_redoes_the_epoch_at_half_the_rate(digits):
    program = Poisoned(build_vae(784, 2, (8,)), lambda call: call == 7)
    result = fit(
        program,
        digits,
        config=SVIConfig(**CONFIG, on_divergence="rollback"),
        binarization=BINARIZATIONS["dynamic"],
    )
    assert result.epochs == 3 and all(math.isfinite(v) for v in result.losses)
    assert result.rollbacks == [{"epoch": 2, "step": 3, "lr": 5e-4}]
    assert all(torch.isfinite(p).all() for p in program.parameters())


@nan_warning
def test_rollback_gives_up_after_three_tries(digits):
    program = Poisoned(build_vae(784, 2, (8,)), lambda call: call >= 7)
    with pytest.raises(TrainingDiverged, match="diverged again after 3 rollbacks"):
        fit(
            program,
            digits,
            config=SVIConfig(**CONFIG, on_divergence="rollback"),
            binarization=BINARIZATIONS["dynamic"],
        )


def test_gradients_are_clipped_to_the_given_norm(digits, monkeypatch):
    norms = []

    def recording(params, lr):
        params = list(params)
        optimizer = torch.optim.Adam(params, lr=lr)
        optimizer.register_step_pre_hook(
            lambda *_: norms.append(
                torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()
            )
        )
        return optimizer

    monkeypatch.setitem(OPTIMIZERS, "recording", recording)
    vae = build_vae(784, 2, (8,))
    config = SVIConfig(optimizer="recording", clip_grad_norm=0.5, **CONFIG)
    fit(vae, digits, config=config, binarization=BINARIZATIONS["threshold"])
    assert len(norms) == 12 and max(norms) <= 0.5 + 1e-5
    norms.clear()
    config = SVIConfig(optimizer="recording", **CONFIG)
    fit(build_vae(784, 2, (8,)), digits, config=config, binarization=BINARIZATIONS["threshold"])
    assert max(norms) > 0.5  # without clipping they are larger


def test_nan_data_are_refused_before_work():
    x = torch.rand(20, 6)
    x[3, 2] = float("nan")
    with pytest.raises(DataError, match="NaN or infinite"):
        fit(build_vae(6, 2, (4,), likelihood="normal"), x, config=SVIConfig(batch_size=10))


# The request is polled after each of an epoch's 4 steps and once more at its end: the 1st poll
# is in epoch 1 after step 1, the 4th after its last step (so the stop waits for the epoch's
# end), the 7th in epoch 2 after step 2.
@pytest.mark.parametrize("stop_at, step", [(1, 1), (4, 0), (7, 2)])
def test_a_stop_request_saves_a_state_that_resumes_bit_for_bit(digits, stop_at, step):
    config = SVIConfig(**CONFIG)

    def run(should_stop=None, state=None):
        torch.manual_seed(0)
        vae = build_vae(784, 3, (16,))
        saved = {}

        def keep(result, s):
            saved["state"] = dataclasses.replace(
                s, params={k: v.clone() for k, v in s.params.items()}
            )

        try:
            fit(
                vae,
                digits,
                config=config,
                binarization=BINARIZATIONS["dynamic"],
                seed=3,
                state=state,
                on_epoch=keep,
                should_stop=should_stop,
            )
        except TrainingInterrupted as stop:
            return vae, saved["state"], stop
        return vae, saved["state"], None

    whole, _, _ = run()
    steps = iter(range(1, 100))
    _, state, stop = run(should_stop=lambda: next(steps) >= stop_at)
    assert stop is not None
    assert stop.step == step
    if step:
        assert state.position["step"] == step
    else:
        assert state.position is None and stop.epoch == 2
    torch.manual_seed(99)  # nothing in between may matter
    resumed, _, _ = run(state=state)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoints_rotate_and_checkpoint_pt_is_always_the_newest(tmp_path):
    for epoch in range(1, 6):
        save_rotating(tmp_path, {"epoch": epoch}, checkpoint_tag(epoch), keep=2)
        assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == epoch
    save_rotating(tmp_path, {"epoch": 5.5}, checkpoint_tag(5, 3), keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-e0005-s0003.pt", "checkpoint-e0005.pt", CHECKPOINT_NAME]
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 5.5
    # a crash mid-write leaves temporary files behind; they change nothing
    (tmp_path / ".checkpoint-e0006.pt.tmp").write_bytes(b"half a checkp")
    (tmp_path / f".{CHECKPOINT_NAME}.link").write_bytes(b"junk")
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 5.5
    save_rotating(tmp_path, {"epoch": 6}, checkpoint_tag(6), keep=2)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 6
    assert not (tmp_path / f".{CHECKPOINT_NAME}.link").exists()


def test_keep_zero_writes_only_checkpoint_pt(tmp_path):
    for epoch in (1, 2):
        save_rotating(tmp_path, {"epoch": epoch}, checkpoint_tag(epoch), keep=0)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
