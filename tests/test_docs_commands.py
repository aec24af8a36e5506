"""Every command shown in the README and docs/ runs as printed, so an example cannot drift.

Each shell block is read from the documents themselves, its commands run in document order in
one scratch folder (a later ``diagnose runs/a`` reads the ``runs/a`` an earlier command wrote),
with ``PYRO_VAE_SMOKE=1`` capping every budget (see :mod:`pyro_vae.smoke`) and a small
Fashion-MNIST written in its idx format where the commands expect that data set. A command
that the tool refuses, or that fails, fails its test. The few commands this machine cannot run
are listed in :data:`NOT_RUN` with the reason.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from common import REPO, run_cli, run_python, write_fake_mnist, write_image_folder, write_npz

pytestmark = pytest.mark.slow

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: Commands not run here, by their first words, and why.
NOT_RUN = {
    "python3 -m venv": "the install: .ci/run performs it on a fresh machine",
    ".venv/bin/pip install": "the install: .ci/run performs it on a fresh machine",
    ".venv/bin/python -m pytest": "the test suite itself",
    "torchrun --nnodes 2": "needs two machines with 4 GPUs each",
    "python benchmarks/speed.py --batch-sizes": "test_benchmarks.py runs it and checks its output",
    "python benchmarks/guides.py": "test_benchmarks.py runs it and checks its output",
}


def shell_commands(path: Path) -> list[str]:
    """The commands of every ``bash`` block: continuation lines joined, comments dropped,
    ``&&`` chains split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def documented() -> list[tuple[str, str]]:
    return [(path.name, command) for path in DOCUMENTS for command in shell_commands(path)]


def why_not_run(command: str) -> str | None:
    for start, reason in NOT_RUN.items():
        if command.startswith(start):
            return reason
    if "--device cuda" in command and not _has_cuda():
        return "needs a CUDA GPU"
    return None


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def argv(command: str) -> tuple[list[str], dict[str, str]]:
    """The process to start for ``command``: this interpreter for ``python``, ``pyro-vae`` and
    ``torchrun``; leading ``NAME=VALUE`` words become environment variables."""
    words, env = shlex.split(command), {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    program, rest = words[0], words[1:]
    if program.endswith("pyro-vae"):
        return [sys.executable, "-m", "pyro_vae", *rest], env
    if program == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *rest], env
    if program in ("python", "python3"):
        script = REPO / rest[0] if rest and rest[0].startswith("benchmarks/") else None
        return [sys.executable, *([str(script)] if script else []), *rest[bool(script) :]], env
    raise AssertionError(f"the docs show a command this test cannot run: {command}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    data = folder / "data"
    # Fashion-MNIST in its own idx format, small: the benchmarks' default data set
    write_fake_mnist(data / "FashionMNIST" / "raw", compress=False, n_train=600, n_test=100)
    # the user's own data the docs show: a .npz file and a folder of images
    write_npz(folder / "mine.npz")
    write_image_folder(folder / "photos", per_class=70, size=32)  # 112 training images
    return folder, data


def test_the_documents_show_commands():
    commands = [c for _, c in documented()]
    assert sum(c.startswith("pyro-vae") for c in commands) >= 15
    assert any(c.startswith("python benchmarks/") for c in commands)


@pytest.mark.parametrize(
    ("document", "command"), documented(), ids=[f"{d}: {c[:60]}" for d, c in documented()]
)
def test_documented_command_runs(workdir, document, command):
    reason = why_not_run(command)
    if reason:
        pytest.skip(reason)
    folder, data = workdir
    args, extra = argv(command)
    env = {**os.environ, **extra, "PYRO_VAE_SMOKE": "1", "PYRO_VAE_DATA": str(data)}
    # a real process of its own, forked warm where it can be
    if args[1:3] == ["-m", "pyro_vae"]:
        done = run_cli(*args[3:], cwd=folder, env=env)
    elif len(args) > 1 and args[1].endswith(".py"):
        done = run_python(Path(args[1]), *args[2:], cwd=folder, env=env)
    else:
        done = subprocess.run(
            args, cwd=folder, env=env, capture_output=True, text=True, timeout=900
        )
    assert done.returncode == 0, f"{document}: {command}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
