"""Data-parallel training with torchrun (2 CPU processes, gloo) against one process."""

import json
import subprocess
import sys

import pytest
from common import run_cli
from exact_ppca import learned_ppca, ppca_log_likelihood, ppca_maximum

from pyro_vae.runs import load_run

pytestmark = pytest.mark.slow

#: A linear VAE on pPCA data: its optimum is known in closed form (Tipping & Bishop).
PPCA_RUN = [
    "train",
    "--dataset",
    "ppca",
    "--binarization",
    "none",
    "--likelihood",
    "normal",
    "--likelihood-opt",
    "scale=shared",
    "--hidden",
    "0",
    "--latent-dim",
    "2",
    "--objective",
    "elbo-analytic-kl",
    "--batch-size",
    "500",
    "--epochs",
    "100",
    "--lr",
    "0.05",
    "--is-samples",
    "200",
    "--quiet",
]


def torchrun_two_workers(out, *extra: str) -> subprocess.CompletedProcess:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    return subprocess.run(
        [*torchrun, "2", "-m", "pyro_vae", *PPCA_RUN, *extra, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def ppca_gap(out) -> float:
    """How far below the pPCA maximum the run's learned model is, nats per datapoint."""
    run = load_run(out)
    reached = ppca_log_likelihood(run.train_x, *learned_ppca(run.vae)).mean().item()
    return ppca_maximum(run.train_x, 2) - reached


def test_two_gloo_workers_reach_what_one_process_reaches(tmp_path):
    ddp = torchrun_two_workers(tmp_path / "ddp")
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stdout.count("run folder") == 1  # rank 0 alone reports
    single = run_cli(*PPCA_RUN, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    # rank 0 alone wrote the folder: the same files as a single process
    names = {p.name for p in (tmp_path / "ddp").iterdir()}
    assert names == {p.name for p in (tmp_path / "single").iterdir()}
    metrics = {
        name: json.loads((tmp_path / name / "metrics.json").read_text())
        for name in ("ddp", "single")
    }
    assert metrics["ddp"]["workers"] == 2 and metrics["single"]["workers"] == 1
    # Both reach the pPCA maximum within 0.05 nats per datapoint (the same tolerance for each),
    # and their test log p(x) agree within 0.05 nats.
    for name in ("ddp", "single"):
        assert abs(ppca_gap(tmp_path / name)) < 0.05, name
    test = [metrics[name]["test"]["log_likelihood"] for name in ("ddp", "single")]
    assert abs(test[0] - test[1]) < 0.05, test


def test_two_gloo_workers_with_the_compiled_loss_reach_the_ppca_maximum(tmp_path):
    # each worker compiles its own loss; gradients are averaged after the compiled backward
    ddp = torchrun_two_workers(tmp_path / "ddp", "--compile")
    assert ddp.returncode == 0, ddp.stderr
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["compile"] is True
    assert abs(ppca_gap(tmp_path / "ddp")) < 0.05


def test_shards_partition_each_epoch_equally():
    import torch
    from pyro_vae.inference.distributed import Workers

    order = torch.randperm(101)
    shards = [Workers(rank, 3).shard(order) for rank in range(3)]
    assert {len(s) for s in shards} == {33}
    together = torch.cat(shards)
    assert len(set(together.tolist())) == 99 and set(together.tolist()) <= set(order.tolist())
    assert torch.equal(Workers().shard(order), order)


def test_batch_must_split_evenly_over_workers():
    import torch
    from pyro_vae.inference import SVIConfig, fit
    from pyro_vae.inference.distributed import Workers
    from pyro_vae.models import build_vae

    from pyro_vae.core.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of the 3 workers"):
        fit(
            build_vae(4, 2, (), likelihood="normal"),
            torch.randn(50, 4),
            config=SVIConfig(batch_size=10),
            workers=Workers(0, 3),
        )
