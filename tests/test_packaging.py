"""A regular (wheel) install holds pyro_vae.models and pyro_vae.inference, and no top-level
``models`` or ``inference`` package."""

import shutil
import subprocess
import sys
import zipfile

import pytest
from common import REPO


@pytest.mark.slow
def test_wheel_installs_the_mapped_subpackages(tmp_path):
    source = tmp_path / "src"  # build from a copy: setuptools leaves build/ beside the sources
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".venv*", ".git", "build", "runs", "*.egg-info", "__pycache__"
        ),
    )
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            ".",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=source,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("pyro_vae-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pyro_vae/models/vae.py" in names and "pyro_vae/inference/svi.py" in names
    sources = {
        "pyro_vae": "pyro_vae",
        "models": "pyro_vae/models",
        "inference": "pyro_vae/inference",
    }
    expected = {
        f"{target}/{path.relative_to(REPO / folder).as_posix()}"
        for folder, target in sources.items()
        for path in (REPO / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    missing = sorted(expected - set(names))
    assert not missing, f"the wheel lacks {missing[:5]} (a package not listed in pyproject.toml?)"
    assert not any(n.startswith(("models/", "inference/", "tests/")) for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)

    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pyro_vae, pyro_vae.models, pyro_vae.inference; print(pyro_vae.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": ""},
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(site))
