"""The networks registry: the conv network gives the MLP's interface on images, trains with
every guide and under a weight prior, and a user's own modules can be handed to the VAE."""

import json

import pyro
import pytest
import torch
from common import TINY
from pyro import poutine
from pyro_vae.inference import SVIConfig, evaluate, fit
from pyro_vae.inference.programs import BayesianDecoder
from pyro_vae.models import GUIDES, LIKELIHOODS, NETWORKS, PRIORS, VAE, build_vae
from pyro_vae.models.conv import ConvBody
from torch import nn

from pyro_vae.cli import main
from pyro_vae.core.errors import ConfigError
from pyro_vae.runs import load_run

CONV = {"channels": [4, 8], "width": 16}


def conv_vae(shape=(1, 28, 28), **changes):
    options = {"network": "conv", "network_options": CONV, "image_shape": shape, **changes}
    features = shape[0] * shape[1] * shape[2] if len(shape) == 3 else shape[0] * shape[1]
    return build_vae(features, 3, **options)


def test_every_network_is_listed():
    assert set(NETWORKS) == {"mlp", "conv"}


@pytest.mark.parametrize("particles", [1, 4])
def test_conv_gives_the_mlp_interface_on_images(particles):
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    plate = pyro.plate("particles", particles, dim=-2)
    for vae in (conv_vae(), build_vae(784, 3, (16,))):
        guide_trace = poutine.trace(plate(vae.guide)).get_trace(x)
        replayed = poutine.replay(plate(vae.model), trace=guide_trace)
        model_trace = poutine.trace(replayed).get_trace(x)
        assert model_trace.nodes["z"]["value"].shape == (particles, 5, 3)
        assert model_trace.nodes["x"]["fn"].batch_shape == (particles, 5)
        assert model_trace.nodes["x"]["fn"].event_shape == (784,)


def test_conv_body_reads_channels_first_images():
    # the body sees pixel (c, h, w) where the flat row has it: moving one pixel of the image
    # changes the output exactly as moving that pixel of the flat row does
    body = ConvBody((3, 8, 8), (4,), 6)
    image = torch.rand(1, 3, 8, 8)
    assert torch.equal(body(image.reshape(1, -1)), body.net(image))


@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_conv_trains_with_every_guide(guide):
    options = {"steps": 1} if guide in ("iaf", "semi-amortized") else {}
    vae = conv_vae(shape=(3, 8, 8), guide=guide, guide_options=options,
                   likelihood="discretized-logistic")  # fmt: skip
    x = torch.randint(0, 256, (40, 192)) / 255.0
    history = fit(vae, x, config=SVIConfig(batch_size=20, epochs=2, lr=0.01))
    assert all(torch.isfinite(torch.tensor(history.losses)))
    assert torch.isfinite(evaluate(vae, x[:4], is_samples=3).log_likelihood).all()


def test_conv_decoder_weights_take_a_prior():
    vae = conv_vae(weight_prior="normal")
    owners = {type(vae.get_submodule(site.rsplit(".", 1)[0])) for site in vae.weight_sites}
    assert any(issubclass(owner, nn.ConvTranspose2d) for owner in owners)
    program = BayesianDecoder(vae)
    x = torch.bernoulli(torch.full((20, 784), 0.3))
    history = fit(program, x, config=SVIConfig(batch_size=10, epochs=1))
    assert all(torch.isfinite(torch.tensor(history.losses)))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"image_shape": None}, "needs images"),
        ({"image_shape": (1, 28, 28), "network_options": {"channels": [4, 8, 16]}},
         "divisible by 8"),
        ({"network_options": {"channels": [0]}}, "conv channels must be a positive"),
        ({"network_options": {"depth": 3}}, "does not take depth"),
    ],
)  # fmt: skip
def test_conv_refuses_what_it_cannot_build(changes, message):
    with pytest.raises(ConfigError, match=message):
        conv_vae(**changes)


def test_the_cli_refuses_mlp_options_for_conv_and_conv_on_features(capsys, tmp_path):
    for args, message in (
        (["--network", "conv", "--hidden", "32"], "--hidden and --layer shape the mlp"),
        (["--network", "conv", "--dataset", "ppca", "--binarization", "none", "--likelihood",
          "normal"], "needs images"),
    ):  # fmt: skip
        code = main(["train", *args, "--quiet", "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r").exists()


class Residual(nn.Module):
    """A network the package does not ship: a residual MLP block."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.inner(h)


class MyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 32), Residual(32))
        self.loc, self.scale = nn.Linear(32, 3), nn.Linear(32, 3)

    def forward(self, x):
        h = self.net(x)
        return self.loc(h), nn.functional.softplus(self.scale(h)) + 1e-4


def test_a_users_own_encoder_and_decoder_make_a_vae():
    decoder = nn.Sequential(nn.Linear(3, 32), Residual(32), nn.Linear(32, 784))
    vae = VAE(MyEncoder(), decoder, PRIORS.build("standard-normal", 3), LIKELIHOODS.build(
        "bernoulli", 784))  # fmt: skip
    x = torch.bernoulli(torch.full((40, 784), 0.3))
    history = fit(vae, x, config=SVIConfig(batch_size=20, epochs=3, lr=0.01))
    assert history.losses[-1] < history.losses[0]
    result = evaluate(vae, x[:5], is_samples=10)
    assert (result.log_likelihood >= result.elbo - 1e-4).all()
    loc, scale = vae.encoder.network(x[:2])
    assert torch.allclose(vae.posterior(x[:2]).mean, loc)


@pytest.mark.slow
def test_train_with_conv_and_load_run_rebuild_it(tmp_path):
    out = tmp_path / "conv"
    args = [a for a in TINY if a not in ("--hidden", "16")]
    code = main(["train", *args, "--network", "conv", "--network-opt", "channels=[4,8]",
                 "width=16", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert json.loads((out / "config.json").read_text())["network"] == "conv"
    run = load_run(out)
    assert isinstance(run.vae.encoder.body, ConvBody)
    assert run.data.image_shape == (28, 28)
