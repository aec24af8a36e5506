"""Runs only where a CUDA GPU exists (skipped elsewhere by conftest)."""

import pytest
import torch

from pyro_vae import TrainConfig, train
from pyro_vae.checkpoint import load_checkpoint


@pytest.mark.cuda
def test_training_on_cuda_keeps_everything_on_the_gpu(tmp_path):
    config = TrainConfig(
        device="cuda", epochs=2, hidden=(32,), latent_dim=4, is_samples=20, batch_size=200
    )
    metrics = train(config, tmp_path / "gpu", progress=False)
    assert metrics["device"].startswith("cuda")
    assert metrics["test"]["log_likelihood"] > -600
    checkpoint = load_checkpoint(tmp_path / "gpu" / "checkpoint.pt", map_location="cuda")
    assert all(t.is_cuda for t in checkpoint["fit"]["params"].values())
    assert "cuda" in checkpoint["fit"]["rng"] and torch.cuda.is_available()
