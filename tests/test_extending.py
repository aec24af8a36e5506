"""The recipe of docs/extending.md, run as the page prints it: its Python blocks are executed
in order, from outside the package (a toy latent prior and a toy method, each one class or
function plus a registration), the usage block under the smoke budget, as the documentation
tests run the page's commands; then the members it registered go through train, load_run and
compare like the built-in ones."""

import json
import re

import pytest
from common import REPO
from pyro_vae.inference.methods import METHODS
from pyro_vae.models import PRIORS

import pyro_vae
import pyro_vae.compare
from pyro_vae import TrainConfig, smoke, train
from pyro_vae.compare import CompareConfig, compare
from pyro_vae.core.errors import ConfigError
from pyro_vae.runs import load_run

PAGE = REPO / "docs" / "extending.md"
TINY = {"epochs": 1, "hidden": (16,), "latent_dim": 2, "batch_size": 500, "is_samples": 5}


def page_blocks() -> list[str]:
    """The page's Python code blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


@pytest.fixture
def page(monkeypatch):
    """The namespace the page's registration blocks ran in; what they registered is removed
    afterwards."""
    before = [(registry, set(registry)) for registry in (PRIORS, METHODS)]
    namespace: dict = {"__name__": "extending_page"}
    blocks = page_blocks()
    for block in blocks[:-1]:  # the last block uses what the others define
        exec(compile(block, str(PAGE), "exec"), namespace)
    yield namespace
    for registry, names in before:
        for name in set(registry) - names:
            del registry[name]


def test_the_page_runs_as_printed(page, tmp_path, monkeypatch):
    """The usage block, word for word, under the smoke budget (tiny networks and epochs)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(smoke.ENV, "1")
    smoke_train = lambda config, out, **kw: train(smoke.train_config(config), out, **kw)  # noqa: E731
    smoke_compare = lambda config, out, **kw: compare(smoke.compare_config(config), out, **kw)  # noqa: E731
    monkeypatch.setattr(pyro_vae, "train", smoke_train, raising=False)
    monkeypatch.setattr(pyro_vae.compare, "compare", smoke_compare)
    exec(compile(page_blocks()[-1], str(PAGE), "exec"), dict(page))
    metrics = json.loads((tmp_path / "runs" / "wide" / "metrics.json").read_text())
    assert metrics["prior"]["name"] == "wide-normal"
    rows = json.loads((tmp_path / "runs" / "compare-wide" / "results.json").read_text())["rows"]
    cells = {(r["method"], r["prior"]) for r in rows}
    assert cells == {
        (m, p) for m in ("vae", "vae-slow") for p in ("standard-normal", "wide-normal")
    }


def test_the_page_describes_every_family():
    """Every registry of the package is in the page's table (or its own section)."""
    text = PAGE.read_text()
    families = ["PRIORS", "METHODS", "GUIDES", "LIKELIHOODS", "WEIGHT_PRIORS", "OBJECTIVES"]
    families += ["OPTIMIZERS", "LAYERS", "NETWORKS", "DATASETS", "FILE_FORMATS", "SECTIONS"]
    for registry in families:
        assert registry in text, registry


def test_the_toy_prior_trains_and_reloads(page, tmp_path):
    metrics = train(
        TrainConfig(prior="wide-normal", prior_options={"scale": 3.0}, **TINY),
        tmp_path / "run",
        progress=False,
    )
    assert metrics["prior"] == {
        "name": "wide-normal",
        "options": {"scale": 3.0},
        "kl_estimator": "monte-carlo",
    }
    run = load_run(tmp_path / "run")
    assert isinstance(run.vae.prior, page["WideNormalPrior"]) and run.vae.prior.scale == 3.0
    with pytest.raises(ConfigError, match="scale takes a finite number, not 'abc'"):
        TrainConfig(prior="wide-normal", prior_options={"scale": "abc"})


def test_the_toy_method_and_prior_join_compare(page, tmp_path):
    config = CompareConfig(
        base=TrainConfig(**TINY),
        methods=("vae", "vae-slow"),
        priors=("standard-normal", "wide-normal"),
        num_test=20,
        proposal_epochs=0,
    )
    results = compare(config, tmp_path / "compare", progress=False)
    assert all(r["test_nll"] > 0 for r in results["rows"])
    assert {r["method"] for r in results["rows"]} == {"vae", "vae-slow"}
    saved = json.loads((tmp_path / "compare" / "config.json").read_text())
    assert saved["methods"] == ["vae", "vae-slow"]


def test_the_default_grid_holds_every_registered_method(page):
    assert CompareConfig().methods[-1] == "vae-slow"
