"""Every array of a data set is checked against every other before the first step."""

import re

import numpy as np
import pytest
import torch
from common import TINY, run_cli, write_fake_mnist, write_idx

from pyro_vae.core.errors import DataError
from pyro_vae.data import Dataset, load_dataset


def _data(**changes):
    parts = {
        "train_x": torch.rand(20, 4),
        "test_x": torch.rand(6, 4),
        "train_labels": torch.arange(20) % 3,
        "test_labels": torch.arange(6) % 3,
    }
    return {**parts, **changes}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"train_labels": torch.arange(19) % 3}, "19 training labels for 20 training datapoints"),
        ({"test_labels": torch.arange(7) % 3}, "7 test labels for 6 test datapoints"),
        ({"train_labels": (torch.arange(20) % 3) - 1}, "training labels run from -1 to 1"),
        ({"test_labels": torch.tensor([0, 1, 2, 0, 1, 3])}, "test labels run from 0 to 3"),
        ({"train_labels": torch.tensor([0, 1, 255] * 6 + [0, 1])}, "lack class(es) 2, 3, 4, 5, 6"),
        ({"train_labels": torch.arange(20) % 2}, "test labels run from 0 to 2"),
        ({"test_labels": None}, "labels for one split only"),
        ({"train_labels": torch.rand(20)}, "must be a 1-D integer tensor"),
        ({"test_x": torch.rand(6, 5)}, "training data have 4 features per datapoint, test data 5"),
        ({"test_x": torch.full((6, 4), float("nan"))}, "test data contain NaN"),
        ({"train_x": torch.rand(0, 4)}, "training data are empty"),
    ],
)
def test_inconsistent_arrays_are_refused_when_the_data_set_is_made(changes, message):
    with pytest.raises(DataError, match=re.escape(message)):
        Dataset("toy", **_data(**changes))


def test_declared_classes_bound_the_labels_and_test_classes_must_be_seen_in_training():
    with pytest.raises(DataError, match="training labels run from 0 to 2; they must lie in 0..1"):
        Dataset("toy", **_data(), num_classes=2)
    train_labels = torch.tensor([0, 1, 3] * 6 + [0, 1])
    with pytest.raises(DataError, match="test labels 2 are classes the training data do not"):
        Dataset("toy", **_data(train_labels=train_labels), num_classes=4)
    assert Dataset("toy", **_data(), num_classes=10).num_classes == 10
    assert Dataset("toy", **_data()).num_classes == 3


def _fake_mnist(folder, train_labels=None, test_labels=None):
    raw = folder / "MNIST" / "raw"
    write_fake_mnist(raw, compress=False, n_train=20, n_test=5)
    if train_labels is not None:
        write_idx(raw / "train-labels-idx1-ubyte", train_labels)
    if test_labels is not None:
        write_idx(raw / "t10k-labels-idx1-ubyte", test_labels)


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"train_labels": np.r_[np.arange(19) % 10, 255]}, "training labels run from 0 to 255"),
        ({"test_labels": np.arange(4)}, "4 test labels for 5 test datapoints"),
        (
            {"train_labels": np.arange(20) % 5, "test_labels": np.arange(5) + 5},
            "test labels 5, 6, 7, 8, 9 are classes",
        ),
    ],
)
def test_bad_labels_on_disk_stop_train_before_any_folder_is_made(tmp_path, labels, message):
    _fake_mnist(tmp_path / "data", **labels)
    out = tmp_path / "run"
    done = run_cli(
        "train", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path / "data"),
        "--prior", "class-conditional", "--batch-size", "10", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyro-vae: error: mnist: "), done.stderr
    assert message in lines[0]
    assert not out.exists()


def test_the_built_in_sets_declare_their_classes():
    assert load_dataset("mnist5k").num_classes == 10
    assert load_dataset("ppca").num_classes is None
