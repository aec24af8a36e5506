"""Family options are checked against their declared types before anything is built: a boolean
takes only true/false, a number is finite, an integer is not a float; one line names both."""

import math

import pytest
from common import run_cli
from hypothesis import given
from hypothesis import strategies as st
from pyro_vae.inference.methods import METHODS
from pyro_vae.models import GUIDES, LIKELIHOODS, NETWORKS, PRIORS, WEIGHT_PRIORS

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import IntSequence, check_option_types, option_types
from pyro_vae.data import DATASETS, FILE_FORMATS

FAMILIES = [PRIORS, LIKELIHOODS, WEIGHT_PRIORS, METHODS, DATASETS, GUIDES, NETWORKS, FILE_FORMATS]
MEMBERS = [(family, name) for family in FAMILIES for name in sorted(family)]
#: A value of the wrong kind for each declared type, and a right one.
WRONG = {bool: ["False", 1, 0.0], int: [2.5, "3", True, math.nan], float: ["abc", math.nan,
         math.inf, True], str: [3, True, 0.5],
         IntSequence: [3, "32,64", [1.5], [True]]}  # fmt: skip
RIGHT = {bool: [True, False], int: [3, -1], float: [0.5, 2], str: ["shared"],
         IntSequence: [[32, 64], (8,)]}  # fmt: skip


@pytest.mark.parametrize(("family", "name"), MEMBERS, ids=[f"{f.kind}-{n}" for f, n in MEMBERS])
def test_every_declared_option_refuses_values_of_another_kind(family, name):
    declared = option_types(family[name])
    for option, (kind, optional) in declared.items():
        for value in WRONG[kind]:
            with pytest.raises(ConfigError, match=f"option {option} takes"):
                check_option_types(f"{family.kind} {name!r}", family[name], {option: value})
        for value in RIGHT[kind] + ([None] if optional else []):
            check_option_types(f"{family.kind} {name!r}", family[name], {option: value})


def test_the_options_users_set_are_declared():
    # the options the README shows must be among the checked ones
    assert option_types(PRIORS["class-conditional"])["learned"] == (bool, False)
    assert option_types(PRIORS["mog"])["components"] == (int, False)
    assert option_types(LIKELIHOODS["normal"])["scale"] == (str, False)
    assert option_types(WEIGHT_PRIORS["normal"])["scale"] == (float, False)
    assert option_types(METHODS["iwae"])["particles"] == (int, False)
    assert option_types(GUIDES["iaf"])["steps"] == (int, False)
    assert option_types(NETWORKS["conv"])["channels"] == (IntSequence, False)


@given(st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.none()))
def test_any_value_is_accepted_or_refused_by_type_in_one_line(value):
    for family, name in MEMBERS:
        for option in option_types(family[name]):
            try:
                check_option_types("x", family[name], {option: value})
            except ConfigError as err:
                assert "\n" not in str(err)


@pytest.mark.slow
def test_a_boolean_option_given_text_is_refused_by_the_cli(tmp_path):
    out = tmp_path / "never"
    args = ["--prior", "class-conditional", "--prior-opt", "learned=False", "--out", str(out)]
    done = run_cli("train", "--epochs", "1", *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "pyro-vae: error: prior 'class-conditional' option learned takes true or false, not 'False'"
    ]
    assert not out.exists()


def test_the_run_config_holds_every_model_and_svi_setting_by_its_name():
    """TrainConfig is flat (its fields are the command line's options and config.json's
    keys); svi_config() and model_spec() read ModelSpec's and SVIConfig's fields by name, so a
    setting added to either must be a TrainConfig field of the same name."""
    from dataclasses import fields

    from pyro_vae.inference import SVIConfig
    from pyro_vae.models import ModelSpec

    from pyro_vae.config import TrainConfig

    mine = {f.name: f for f in fields(TrainConfig)}
    for spec in (ModelSpec, SVIConfig):
        for f in fields(spec):
            if f.name == "image_shape":
                continue  # from the data, not a setting
            assert f.name in mine, f"{spec.__name__}.{f.name} is not a TrainConfig setting"
    config = TrainConfig(latent_dim=3, hidden=(7,), epochs=2, lr=0.01, clip_grad_norm=0.0)
    assert config.model_spec().latent_dim == 3 and config.model_spec().hidden == (7,)
    assert config.svi_config().epochs == 2 and config.svi_config().clip_grad_norm is None
