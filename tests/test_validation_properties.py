"""Property-based tests of the validation layer: every value is either accepted or refused with
a one-line ConfigError that names the option; nothing else escapes."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro_vae.inference import SVIConfig
from pyro_vae.models import LIKELIHOODS, PRIORS, WEIGHT_PRIORS

from pyro_vae.cli_parser import _key_value
from pyro_vae.config import TrainConfig, check_device
from pyro_vae.core.errors import ConfigError, UnknownNameError
from pyro_vae.core.validate import MAX_INT, nonnegative_int, positive_float, positive_int
from pyro_vae.diagnose import DiagnoseConfig
from pyro_vae.diagnostics import MIN_IS_SAMPLES

settings.register_profile("pyro-vae", max_examples=60, deadline=None)
settings.load_profile("pyro-vae")

#: Anything a user or a config file could hand over.
ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value):
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def refused_in_one_line(call, *args, **kwargs):
    with pytest.raises(ConfigError) as error:
        call(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message and message
    return message


@given(ANYTHING)
def test_positive_int(value):
    if is_int(value) and value > MAX_INT:
        message = refused_in_one_line(positive_int, "epochs", value)
        assert message == f"epochs must be at most 2^31 - 1 = {MAX_INT}, not {value}"
    elif is_int(value) and value > 0:
        positive_int("epochs", value)
    else:
        message = refused_in_one_line(positive_int, "epochs", value)
        assert message == f"epochs must be a positive integer, not {value!r}"


@given(ANYTHING)
def test_nonnegative_int(value):
    if is_int(value) and value > MAX_INT:
        assert "seed must be at most 2^31 - 1" in refused_in_one_line(
            nonnegative_int, "seed", value
        )
    elif is_int(value) and value >= 0:
        nonnegative_int("seed", value)
    else:
        assert "seed must be a non-negative integer" in refused_in_one_line(
            nonnegative_int, "seed", value
        )


@given(ANYTHING)
def test_positive_float(value):
    if is_finite_number(value) and value > 0:
        positive_float("lr", value)
    else:
        assert "lr must be a positive finite number" in refused_in_one_line(
            positive_float, "lr", value
        )


@given(st.sampled_from(["epochs", "batch_size", "latent_dim", "is_samples", "particles"]), ANYTHING)
def test_train_config_sizes(field, value):
    if is_int(value) and value > MAX_INT:
        assert "at most 2^31 - 1" in refused_in_one_line(TrainConfig, **{field: value})
    elif is_int(value) and value > 0:
        if field == "batch_size" or value < 10**6:
            TrainConfig(**{field: value})
    else:
        refused_in_one_line(TrainConfig, **{field: value})


@given(st.sampled_from(["lr", "beta", "clip_grad_norm"]), ANYTHING)
def test_train_config_rates(field, value):
    allowed = is_finite_number(value) and (value >= 0 if field == "clip_grad_norm" else value > 0)
    if allowed:
        TrainConfig(**{field: value})
    else:
        message = refused_in_one_line(TrainConfig, **{field: value})
        assert field in message


@given(
    st.sampled_from(
        [
            ("dataset", None),
            ("prior", PRIORS),
            ("likelihood", LIKELIHOODS),
            ("weight_prior", WEIGHT_PRIORS),
            ("objective", None),
            ("binarization", None),
        ]
    ),
    st.text(max_size=12),
)
def test_unknown_names_list_the_valid_ones(entry, name):
    field, registry = entry
    try:
        TrainConfig(**{field: name})
    except UnknownNameError as error:
        message = str(error)
        assert repr(name) in message and "\n" not in message
        for valid in registry or ():
            assert valid in message


@given(st.text(max_size=12))
def test_devices_are_parsed_or_refused(text):
    try:
        device = check_device(text)
    except ConfigError as error:
        assert "\n" not in str(error)
    else:
        assert device.type == "cpu"  # no GPU on a test machine without CUDA


@given(
    st.sampled_from(["num_test", "is_samples", "gap_steps", "nuts_draws", "nuts_chains"]),
    ANYTHING,
)
def test_diagnose_config(field, value):
    minimum = {"is_samples": MIN_IS_SAMPLES, "nuts_chains": 2}.get(field, 1)
    if is_int(value) and value >= minimum:
        if value < 10**6:
            DiagnoseConfig(**{field: value})
    else:
        refused_in_one_line(DiagnoseConfig, **{field: value})


@given(st.sampled_from(["on_divergence", "objective", "optimizer"]), st.text(max_size=10))
def test_svi_config_names(field, text):
    try:
        SVIConfig(**{field: text})
    except ConfigError as error:
        assert "\n" not in str(error)


@given(
    st.from_regex(r"[a-z][a-z_-]{0,10}", fullmatch=True),
    st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.text(max_size=6)),
)
def test_key_value_options_are_read_as_json_data(key, value):
    parsed_key, parsed = _key_value(f"{key}={json.dumps(value)}")
    assert parsed_key == key.replace("-", "_")
    assert parsed == value or (isinstance(value, float) and math.isinf(value))
