"""Every test starts from a clean Pyro state: seeded, empty param store, validation on.

Under pytest-xdist (``-n auto``, the default in ``pyproject.toml``) each worker computes with one
torch thread, and so does every process it starts: on 2 cores, two workers of one thread each
keep both busy without oversubscribing them.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # before torch is imported: its processes inherit it
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pyro_vae.data import load_dataset  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(scope="session")
def ppca():
    """Synthetic pPCA data (2,000 train / 200 test, 8-D, 2 latent): the exact-answer tests'
    data set. Read-only: tests must not change it in place."""
    return load_dataset("ppca", num_train=2000, num_test=200)


@pytest.fixture(scope="session")
def small_ppca():
    """The same model, 400 train / 100 test: for tests that fit it many times."""
    return load_dataset("ppca", num_train=400, num_test=100)
