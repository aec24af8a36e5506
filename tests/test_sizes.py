"""Numbers at any size: every count is checked against its range, and a model or buffer that
cannot fit in memory is refused in one line, before anything is allocated or written."""

import pytest
from common import TINY, run_cli
from pyro_vae.models import build_vae
from pyro_vae.models.vae import mlp_vae_parameters

from pyro_vae.config import TrainConfig
from pyro_vae.diagnose import DiagnoseConfig
from pyro_vae.errors import ConfigError
from pyro_vae.validate import MAX_INT, check_allocation, memory_bytes

HUGE = 10**20  # 20 digits


@pytest.mark.parametrize(
    "field", ["epochs", "latent_dim", "batch_size", "particles", "seed", "is_samples"]
)
def test_counts_beyond_the_range_are_refused(field):
    with pytest.raises(ConfigError, match=f"{field} must be at most 2\\^31 - 1"):
        TrainConfig(**{field: HUGE})
    with pytest.raises(ConfigError, match="at most"):
        TrainConfig(**{field: MAX_INT + 1})


def test_the_parameter_count_is_the_built_models():
    for hidden, layer in (((400,), "relu"), ((30, 20), "gated"), ((), "relu")):
        vae = build_vae(50, 7, hidden, layer=layer)
        built = sum(p.numel() for p in vae.encoder.parameters())
        built += sum(p.numel() for p in vae.decoder.parameters())
        assert mlp_vae_parameters(50, 7, hidden, gated=layer == "gated") == built


def test_a_model_that_cannot_fit_is_refused_before_allocation():
    assert memory_bytes() is not None
    with pytest.raises(ConfigError, match=r"would need [0-9.]+ GiB, more than this machine"):
        build_vae(784, 10**8, (400,))  # 2 x 400 x 10^8 weights: hundreds of GiB


def test_buffers_that_cannot_fit_are_refused():
    with pytest.raises(ConfigError, match="log weights"):
        DiagnoseConfig(num_test=10**6, is_samples=10**6)
    check_allocation("a small buffer", 1000)  # fine


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latent-dim", "100000000"], "would need"),
        (["--seed", "99999999999999999999"], "seed must be at most"),
        (["--epochs", "99999999999999999999"], "epochs must be at most"),
    ],
)
def test_the_cli_refuses_sizes_in_one_line(tmp_path, args, message):
    out = tmp_path / "never"
    done = run_cli("train", *TINY, *args, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
