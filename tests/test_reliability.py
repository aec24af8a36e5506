"""Real training processes killed and stopped: the run folder always resumes, exactly."""

import fcntl
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from common import run_cli

from pyro_vae.checkpoint import latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.slow

#: A run of 4 epochs x 80 steps, a second or two of training.
RUN = [
    "--epochs",
    "4",
    "--hidden",
    "16",
    "--latent-dim",
    "2",
    "--batch-size",
    "50",
    "--is-samples",
    "5",
    "--quiet",
]


def start(out, resume=False):
    args = ["--resume", "--out", str(out), "--quiet"] if resume else [*RUN, "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, "-m", "pyro_vae", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def final_params(out):
    return load_checkpoint(out / "checkpoint.pt")["fit"]["params"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    done = run_cli("train", *RUN, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return final_params(out)


def assert_same(params, reference):
    assert params.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(params[name], value), name


def test_sigkill_at_several_points_then_resume_ends_as_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "run"
    process = start(out)
    # kill right as epoch 1's checkpoint lands, a moment into epoch 3, and late in epoch 4
    for marker, delay in (
        ("checkpoint-e0001.pt", 0.0),
        ("checkpoint-e0002.pt", 0.15),
        ("checkpoint-e0003.pt", 0.4),
    ):
        wait_for(out / marker, process)
        time.sleep(delay)
        process.kill()
        process.communicate()  # reaps the process and closes its pipes
        assert process.returncode == -signal.SIGKILL
        # whatever moment the kill came, the folder holds a complete, loadable checkpoint
        state = load_checkpoint(latest_checkpoint(out))
        assert state["fit"]["history"]["losses"]
        process = start(out, resume=True)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "test ELBO" in stdout
    assert_same(final_params(out), reference)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_mid_epoch_and_resume_exactly(tmp_path, reference, number):
    out = tmp_path / "run"
    process = start(out)
    wait_for(out / "checkpoint-e0001.pt", process)
    time.sleep(0.2)
    process.send_signal(number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + number, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert f"stopped by {signal.Signals(number).name}" in lines[0] and "--resume" in lines[0]
    saved = load_checkpoint(out / "checkpoint.pt")["fit"]
    epochs = len(saved["history"]["losses"])
    if "position" in saved:  # stopped inside an epoch: the step is recorded
        assert 0 < saved["position"]["step"] < 80
        assert f"epoch {epochs + 1} after step {saved['position']['step']}" in lines[0]
    resumed = start(out, resume=True)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert_same(final_params(out), reference)


def _train(out, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "pyro_vae", "train", *RUN, *args, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_writers_started_together_one_is_refused(tmp_path):
    out = tmp_path / "run"
    runs = [_train(out, "--seed", str(seed)) for seed in (1, 2)]
    results = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert len(refused.strip().splitlines()) == 1 and "Traceback" not in refused
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["seed"] == metrics["seed"]


def test_a_resume_is_refused_while_the_run_goes_on(tmp_path):
    out = tmp_path / "run"
    first = _train(out, "--epochs", "400")
    try:
        wait_for(out / "checkpoint.pt", first)
        second = run_cli("train", "--resume", "--epochs", "401", "--quiet", "--out", str(out))
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"pyro-vae: error: output folder '{out}' is in use by another pyro-vae process; "
            "wait for it to finish or choose another --out"
        ]
    finally:
        first.kill()
        first.communicate()
    # a killed writer holds nothing: the lock is free again
    with open(out / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
