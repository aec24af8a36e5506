"""The user's own data: arrays from Python, .npz files and image folders, checked like the
built-in sets, and run through every command."""

import hashlib
import json

import numpy as np
import pytest
import torch
from common import colour_images, run_cli, write_image_folder, write_npz

from pyro_vae.cli import main
from pyro_vae.core.errors import DataError
from pyro_vae.data import Dataset, load_dataset

# ----------------------------------------------------------------------------- from Python


def test_arrays_become_a_dataset_in_one_call():
    train, train_labels = colour_images(20)
    test, test_labels = colour_images(6, 1)
    data = Dataset.from_arrays("mine", train, test, train_labels, test_labels)
    assert data.image_shape == (3, 8, 8) and data.data_dim == 192 and data.num_classes == 2
    assert torch.equal(data.train_x[0], torch.from_numpy(train[0]).float().flatten() / 255)
    grey = Dataset.from_arrays("grey", train[:, 0], test[:, 0])
    assert grey.image_shape == (8, 8) and not grey.has_labels
    rng = np.random.default_rng(0)
    features = Dataset.from_arrays("features", rng.random((5, 3)), rng.random((2, 3)))
    assert features.image_shape is None and features.train_x.dtype == torch.float32


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train": np.zeros((4, 3, 3), dtype=np.int16)}, "int16"),
        ({"test": np.zeros((4, 3, 4), dtype=np.uint8)}, "training datapoints have shape"),
        ({"train": np.zeros(4, dtype=np.uint8)}, "must be .N, D. features"),
        ({"train_labels": np.zeros(4) + 0.5}, "labels must be integers"),
        ({"test_labels": np.array([0, 5])}, "test labels run from 0 to 5"),
        ({"train": np.full((4, 3, 3), np.nan)}, "NaN or infinite"),
    ],
)
def test_inconsistent_arrays_are_refused(change, message):
    arrays = {
        "train": np.zeros((4, 3, 3), dtype=np.uint8),
        "test": np.zeros((2, 3, 3), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 0]),
        "test_labels": np.array([0, 1]),
        **change,
    }
    with pytest.raises(DataError, match=message):
        Dataset.from_arrays("mine", **arrays)


# ----------------------------------------------------------------------------- files


def test_an_npz_file_is_a_dataset_with_its_hash(tmp_path):
    path = write_npz(tmp_path / "mine.npz")
    data = load_dataset(str(path))
    assert data.image_shape == (3, 8, 8) and len(data.train_x) == 120 and data.num_classes == 2
    assert data.info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert data.info["arrays"]["train"] == {"dtype": "uint8", "shape": [120, 3, 8, 8]}


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: np.savez(p, train=np.zeros((3, 4))), "missing test"),
        (lambda p: np.savez(p, train=np.zeros((3, 4)), test=np.zeros((2, 4)), x=np.ones(2)),
         "unknown x"),
        (lambda p: np.savez(p, train=np.array([{}], dtype=object), test=np.zeros((2, 4))),
         "Python objects (dtype |O), which pyro-vae never unpickles"),
        (lambda p: p.write_bytes(b"not a zip"), "is not a .npz archive"),
    ],
)  # fmt: skip
def test_bad_npz_files_are_one_line(tmp_path, capsys, write, message):
    path = tmp_path / "bad.npz"
    write(path)
    code = main(["train", "--dataset", str(path), "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not (tmp_path / "r").exists()


def test_an_image_folder_is_split_by_class_and_resized(tmp_path):
    root = write_image_folder(tmp_path / "pictures", per_class=10)
    data = load_dataset(str(root), image_size=4, test_per_class=3)
    assert data.image_shape == (3, 4, 4) and data.num_classes == 2
    assert len(data.test_x) == 6 and data.test_labels.bincount().tolist() == [3, 3]
    again = load_dataset(str(root), image_size=4, test_per_class=3)
    assert torch.equal(again.test_x, data.test_x)  # the split is deterministic
    grey = load_dataset(str(write_image_folder(tmp_path / "grey", grey=True)))
    assert grey.image_shape == (8, 8) and data.info["classes"] == ["left", "top"]


def test_image_folder_options_are_checked_before_loading(tmp_path, capsys):
    root = write_image_folder(tmp_path / "pictures")
    for option, message in (("image_size=abc", "takes an integer"), ("colour=1", "does not take")):
        code = main(["train", "--dataset", str(root), "--dataset-opt", option, "--quiet",
                     "--out", str(tmp_path / "r")])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and message in err, err


# ----------------------------------------------------------------------------- every command


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["npz", "folder"])
def test_train_compare_and_diagnose_run_on_own_colour_data(tmp_path, kind):
    # the .npz with the MLP and every method; the image folder with the conv network, and
    # compare's methods with a decoder of their own (a Bayesian one over conv weights among them)
    if kind == "npz":
        data, network, methods = write_npz(tmp_path / "mine.npz"), ["--hidden", "32"], []
    else:
        data = write_image_folder(tmp_path / "pictures", per_class=40)
        network = ["--network", "conv", "--network-opt", "channels=[4,8]", "width=16"]
        methods = ["--methods", "vae", "bayes-decoder", "map-pairs"]
    model = ["--dataset", str(data), "--binarization", "none", "--likelihood",
             "discretized-logistic", *network, "--latent-dim", "2",
             "--batch-size", "20"]  # fmt: skip
    run = tmp_path / "run"
    done = run_cli("train", *model, "--epochs", "2", "--is-samples", "200", "--quiet",
                   "--out", str(run))  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["image_shape"] == [3, 8, 8]
    assert metrics["test"]["bits_per_dim"] == pytest.approx(
        -metrics["test"]["log_likelihood"] / (192 * np.log(2))
    )
    done = run_cli("diagnose", str(run), "--num-test", "10", "--is-samples", "200",
                   "--gap-images", "2", "--gap-steps", "5", "--nuts-images", "1",
                   "--nuts-draws", "10", "--nuts-warmup", "10", "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = run_cli("compare", "--preset", "quick", *model, *methods, "--epochs", "1",
                   "--num-test", "10", "--is-samples", "5", "--quiet",
                   "--out", str(tmp_path / "c"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "samples.png").exists()


# ----------------------------------------------------------------------------- cifar10


def write_cifar(root, per_batch: int = 4):
    """Batches in torchvision's cifar-10-batches-py format, a few images each."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(k) for k in rng.permutation(10)[:per_batch]]
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": labels, b"batch_label": b"made by a test"}  # fmt: skip
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    return folder


def test_cifar10_reads_torchvisions_batches(tmp_path):
    folder = write_cifar(tmp_path)
    data = load_dataset("cifar10", tmp_path, download=False)
    assert data.image_shape == (3, 32, 32) and len(data.train_x) == 20 and len(data.test_x) == 4
    assert data.num_classes == 10
    import pickle

    with open(folder / "test_batch", "rb") as handle:
        first = pickle.load(handle)[b"data"][0]
    assert torch.equal(data.test_x[0], torch.from_numpy(first).float() / 255)


def test_a_cifar10_batch_that_would_run_code_is_refused(tmp_path):
    import pickle

    folder = write_cifar(tmp_path)

    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": Exploit(), b"labels": []}, handle)
    with pytest.raises(DataError, match="does not hold builtins.print"):
        load_dataset("cifar10", tmp_path, download=False)
