"""The recipe of docs/extending.md, run from outside the package: a toy latent prior and a toy
method, each one class or function plus a registration, go through train, load_run and
compare like the built-in ones."""

import json
import time
from dataclasses import replace

import pyro.distributions as dist
import pytest
import torch
from pyro_vae.inference import fit
from pyro_vae.inference.methods import METHODS, MethodResult, Runner
from pyro_vae.models import PRIORS, Prior

from pyro_vae import TrainConfig, train
from pyro_vae.compare import CompareConfig, compare
from pyro_vae.core.errors import ConfigError
from pyro_vae.runs import load_run

TINY = {"epochs": 1, "hidden": (16,), "latent_dim": 2, "batch_size": 500, "is_samples": 5}


class WideNormalPrior(Prior):
    """p(z) = N(0, scale^2 I)."""

    name = "wide-normal"
    analytic_kl = True

    def __init__(self, latent_dim, context=None, scale: float = 2.0):
        super().__init__(latent_dim)
        self.register_buffer("zeros", torch.zeros(latent_dim))
        self.scale = float(scale)

    def forward(self, batch_size, labels=None):
        return dist.Normal(self.zeros, self.scale).to_event(1).expand([batch_size])


def slow_vae(factor: float = 0.5) -> Runner:
    """Amortized VI with the learning rate times ``factor``."""

    def run(problem, reference=None):
        start = time.perf_counter()
        vae = problem.build(None)
        svi = replace(problem.svi, lr=problem.svi.lr * factor)
        history = fit(
            vae,
            problem.x,
            problem.labels,
            config=svi,
            binarization=problem.binarization,
            seed=problem.seed,
        )
        return MethodResult(
            "vae-slow", vae, history, notes=["lr x factor"], wall_time=time.perf_counter() - start
        )

    return Runner("vae-slow", run)


@pytest.fixture
def registered():
    PRIORS.register(WideNormalPrior.name)(WideNormalPrior)
    METHODS.register("vae-slow")(slow_vae)
    yield
    del PRIORS[WideNormalPrior.name]
    del METHODS["vae-slow"]


def test_a_toy_prior_trains_and_reloads(registered, tmp_path):
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
    assert isinstance(run.vae.prior, WideNormalPrior) and run.vae.prior.scale == 3.0
    with pytest.raises(ConfigError, match="scale takes a finite number, not 'abc'"):
        TrainConfig(prior="wide-normal", prior_options={"scale": "abc"})


def test_a_toy_method_and_prior_join_compare(registered, tmp_path):
    config = CompareConfig(
        base=TrainConfig(**TINY),
        methods=("vae", "vae-slow"),
        priors=("standard-normal", "wide-normal"),
        num_test=20,
        proposal_epochs=0,
    )
    results = compare(config, tmp_path / "compare", progress=False)
    cells = {(r["method"], r["prior"]) for r in results["rows"]}
    assert cells == {
        (m, p) for m in ("vae", "vae-slow") for p in ("standard-normal", "wide-normal")
    }
    assert all(r["test_nll"] > 0 for r in results["rows"])
    saved = json.loads((tmp_path / "compare" / "config.json").read_text())
    assert saved["methods"] == ["vae", "vae-slow"]


def test_the_default_grid_holds_every_registered_method(registered):
    assert CompareConfig().methods[-1] == "vae-slow"
