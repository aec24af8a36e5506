"""Shared test helpers: closeness checks, CLI runs, idx files, small priors (the exact pPCA
answers are in ``exact_ppca``)."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def assert_close(actual, expected, atol: float = 1e-6, rtol: float = 0.0, msg: str = "") -> None:
    """Elementwise |actual - expected| <= atol + rtol |expected|, with a readable failure."""
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    err = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    assert (err <= bound).all(), (
        f"{msg} max error {err.max().item():.3g} > tolerance; "
        f"actual {actual.flatten()[:5].tolist()} expected {expected.flatten()[:5].tolist()}"
    )


# ----------------------------------------------------------------------------- CLI

#: ``pyro-vae train`` options for a run of a few seconds.
TINY = [
    "--epochs",
    "1",
    "--hidden",
    "16",
    "--latent-dim",
    "2",
    "--is-samples",
    "5",
    "--batch-size",
    "500",
    "--quiet",
]

#: ``pyro-vae diagnose`` options for a diagnosis of a few seconds.
QUICK_DIAGNOSE = [
    "--num-test",
    "30",
    "--is-samples",
    "200",
    "--gap-images",
    "5",
    "--gap-steps",
    "20",
    "--nuts-images",
    "2",
    "--nuts-chains",
    "2",
    "--nuts-draws",
    "20",
    "--nuts-warmup",
    "20",
    "--coverage-draws",
    "200",
    "--sbc-simulations",
    "40",
    "--sbc-draws",
    "19",
    "--ppc-replicates",
    "10",
    "--quiet",
]


def run_cli(
    *args: str, cwd: Path | None = None, module: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the CLI in a real process of its own: ``python -m pyro_vae`` (forked from a warm
    interpreter, see ``warm_cli``) or, with ``module=False``, the ``pyro-vae`` script started
    from nothing. ``env`` replaces the environment (``PYRO_VAE_*`` variables differing from this
    process's only, for a forked run; any other difference starts a fresh interpreter)."""
    env = dict(os.environ if env is None else env)
    if module and _warm_env(env):
        return _WARM.run(list(args), cwd or Path.cwd(), env)
    cmd = (
        [sys.executable, "-m", "pyro_vae", *args]
        if module
        else [str(Path(sys.executable).with_name("pyro-vae")), *args]
    )
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def run_python(
    script: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` in a real process of its own (forked warm, as :func:`run_cli`)."""
    env = dict(os.environ if env is None else env)
    if _warm_env(env):
        return _WARM.run(list(args), cwd or Path.cwd(), env, script=str(script))
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _warm_env(env: dict[str, str]) -> bool:
    """Whether a forked child can have ``env``: only what is read after start-up may differ."""
    names = set(env) | set(os.environ)
    return all(
        env.get(name) == os.environ.get(name) for name in names if not name.startswith("PYRO_VAE_")
    )


class _WarmServer:
    """The ``warm_cli`` server of this test process, started on first use."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("warm_cli.py"))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert json.loads(self.process.stdout.readline()) == {"ready": True}
            atexit.register(self._stop, self.process)
        return self.process

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        """End of input: the server leaves its loop and exits as a process does (coverage saved)."""
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

    def run(
        self, argv: list[str], cwd: Path, env: dict[str, str], script: str | None = None
    ) -> subprocess.CompletedProcess:
        server = self._start()
        with tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            request = dict(argv=argv, cwd=str(cwd), env=env, stdout=str(out), stderr=str(err))
            if script:
                request["script"] = script
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            pid = json.loads(server.stdout.readline())["pid"]
            timer = threading.Timer(600, os.kill, (pid, signal.SIGKILL))
            timer.start()
            try:
                code = json.loads(server.stdout.readline())["returncode"]
            finally:
                timer.cancel()
            command = [sys.executable, script] if script else ["pyro-vae"]
            return subprocess.CompletedProcess(
                [*command, *argv], code, out.read_text(), err.read_text()
            )


_WARM = _WarmServer()


# ----------------------------------------------------------------------------- idx files


def write_idx(path: Path, array, compress: bool = False) -> None:
    """Write a uint8 array in the idx format of (Fashion-)MNIST, optionally gzipped."""
    import gzip

    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    payload = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def write_fake_mnist(
    folder: Path, compress: bool, n_train: int = 30, n_test: int = 10, seed: int = 0
) -> None:
    """Four small idx files with the official names, images 28x28 and labels 0-9."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, compress)


# ----------------------------------------------------------------------------- priors

#: Options that keep every prior small in tests.
SMALL_PRIOR_OPTIONS = {"vamp": {"components": 5}, "mog": {"components": 3}}


def prior_context(data_dim: int = 6, latent_dim: int = 2, num_classes: int = 4):
    """A PriorContext with a small encoder, data in [0, 1] and labels."""
    from pyro_vae.models import GUIDES, PriorContext
    from pyro_vae.models.networks import mlp

    return PriorContext(
        encoder=GUIDES["diagonal"](mlp(data_dim, (8,)), 8, latent_dim),
        data=torch.rand(30, data_dim),
        num_classes=num_classes,
    )


def build_prior(name: str, latent_dim: int = 2, **options):
    from pyro_vae.models import PRIORS

    options = {**SMALL_PRIOR_OPTIONS.get(name, {}), **options}
    return PRIORS.build(name, latent_dim, prior_context(latent_dim=latent_dim), **options)


# ----------------------------------------------------------------------------- own data


def colour_images(n: int, seed: int = 0, size: int = 8) -> np.ndarray:
    """Small 8-bit colour images of two kinds: a bright top half or a bright left half."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, 3, size, size), dtype=np.uint8)
    labels = np.arange(n) % 2
    images[labels == 0, :, : size // 2, :] += 180
    images[labels == 1, :, :, : size // 2] += 180
    return images, labels


def write_npz(path, n_train: int = 120, n_test: int = 30, size: int = 8, **extra):
    train, train_labels = colour_images(n_train, 0, size)
    test, test_labels = colour_images(n_test, 1, size)
    arrays = dict(train=train, test=test, train_labels=train_labels, test_labels=test_labels)
    np.savez(path, **{**arrays, **extra})
    return path


def write_image_folder(root, per_class: int = 10, size: int = 8, grey: bool = False):
    from PIL import Image

    images, labels = colour_images(2 * per_class, 2, size)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / ("top" if label == 0 else "left")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = image.transpose(1, 2, 0)
        picture = Image.fromarray(pixels[..., 0] if grey else pixels)
        picture.save(folder / f"{i:03d}.png")
    return root
