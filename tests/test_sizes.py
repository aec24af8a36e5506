"""Numbers at any size: every count is checked against its range, and a model or buffer that
cannot fit in memory is refused in one line, before anything is allocated or written."""

import pytest
import torch
from common import TINY, run_cli
from pyro_vae.models import GUIDES, build_vae
from pyro_vae.models.conv import conv_parameters
from pyro_vae.models.networks import mlp_parameters

from pyro_vae.config import TrainConfig
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import MAX_INT, check_allocation, memory_bytes
from pyro_vae.diagnose import DiagnoseConfig

HUGE = 10**20  # 20 digits


@pytest.mark.parametrize(
    "field", ["epochs", "latent_dim", "batch_size", "particles", "seed", "is_samples"]
)
def test_counts_beyond_the_range_are_refused(field):
    with pytest.raises(ConfigError, match=f"{field} must be at most 2\\^31 - 1"):
        TrainConfig(**{field: HUGE})
    with pytest.raises(ConfigError, match="at most"):
        TrainConfig(**{field: MAX_INT + 1})


@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_the_parameter_counts_are_the_built_models(guide):
    # what the memory check counts before allocating, against what is then built
    def built(vae):
        return sum(p.numel() for p in [*vae.encoder.parameters(), *vae.decoder.parameters()])

    for hidden, layer in (((400,), "relu"), ((30, 20), "gated"), ((), "relu")):
        vae = build_vae(50, 7, hidden, layer=layer, guide=guide)
        width = hidden[-1] if hidden else 50
        expected = mlp_parameters(50, 7, hidden, gated=layer == "gated")
        expected += 2 * (width * 7 + 7) + GUIDES[guide].count_parameters(50, 7, width)
        assert expected == built(vae), (hidden, layer)
    options = {"channels": [4, 8], "width": 16}
    vae = build_vae(3 * 8 * 8, 7, guide=guide, network="conv", network_options=options,
                    image_shape=(3, 8, 8))  # fmt: skip
    expected = conv_parameters((3, 8, 8), 7, (4, 8), 16)
    expected += 2 * (16 * 7 + 7) + GUIDES[guide].count_parameters(192, 7, 16)
    assert expected == built(vae)


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
        (["--particles", "2147483647"], "a training step with 2147483647 particles"),
        (["--particles", "5000"], "a training step with 5000 particles of each of 500"),
    ],
)
def test_the_cli_refuses_sizes_in_one_line(tmp_path, args, message):
    out = tmp_path / "never"
    done = run_cli("train", *TINY, *args, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_step_that_cannot_fit_is_refused_before_it_is_taken():
    from pyro_vae.inference import SVIConfig, fit

    x = torch.rand(100, 784)
    vae = build_vae(784, 2, (8,))
    config = SVIConfig(batch_size=100, particles=10**6, epochs=1)
    with pytest.raises(ConfigError, match="particles of each of 100 datapoints would need"):
        fit(vae, x, config=config)


def test_running_out_of_memory_anyway_is_one_line_and_exit_2(capsys, monkeypatch):
    import pyro_vae.cli as cli

    def exhausted(args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9")

    monkeypatch.setattr(cli, "_train", exhausted)
    assert cli.main(["train", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyro-vae: error: not enough memory")
