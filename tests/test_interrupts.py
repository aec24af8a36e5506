"""SIGINT and SIGTERM at any moment: one line, exit 128 + signal, no partial files left."""

import signal
import subprocess
import sys
import time

import pytest
from common import TINY, write_fake_mnist

import pyro_vae.data.mnist as mnist_module
from pyro_vae.data import load_dataset

#: Moments after start: in start-up imports, in data loading and model building, in training.
DELAYS = (0.5, 1.5, 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay", DELAYS)
def test_a_signal_at_any_moment_gives_one_line_and_its_exit_code(tmp_path, number, delay):
    out = tmp_path / "runs" / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "pyro_vae", "train", *TINY, "--epochs", "50", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    process.send_signal(number)
    _, err = process.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert process.returncode == 128 + number, err
    assert len(lines) == 1 and "Traceback" not in err, err
    name = signal.Signals(number).name
    assert lines[0].startswith(f"pyro-vae: stopped by {name}") or lines[0].startswith(
        f"pyro-vae: interrupted by {name}"
    ), err
    leftovers = [
        p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.name.endswith((".part", ".link"))
    ]
    assert leftovers == []
    if not (out / "checkpoint.pt").exists():  # stopped before an epoch ended: nothing is kept
        assert not (tmp_path / "runs").exists(), list(tmp_path.rglob("*"))


def test_an_interrupt_while_decompressing_leaves_no_partial_file(tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_fake_mnist(source, compress=True)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mnist_module.shutil, "copyfileobj", interrupted)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        load_dataset("fashion-mnist", data_dir=cache.parent, system_dir=source, download=False)
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".part")] == []
    assert not (tmp_path / "FashionMNIST").exists()  # the cache folders it made are gone


def test_a_failed_look_up_leaves_no_empty_cache_folders(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(mnist_module.DataError, match="not found"):
        load_dataset("mnist", data_dir=data_dir, download=False)
    assert list(data_dir.iterdir()) == []
