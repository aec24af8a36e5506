"""Untrusted data, class by class: every bad input is either read faithfully or refused in one
line (exit 2, nothing written), never a traceback, a hang, an exhausted memory or silent
corruption. Each class is tested through its root (the one checked path), with examples."""

import json
import os
import pickle
import signal
import struct
import zlib

import numpy as np
import pytest
import torch
from common import TINY, write_image_folder, write_npz
from pyro_vae.models import NETWORKS

from pyro_vae.cli import main
from pyro_vae.core import validate
from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.data import load_dataset


def _refused(capsys, tmp_path, *argv, command="train"):
    """Run the CLI in this process; assert exit 2, one line, nothing written to --out."""
    out = tmp_path / "never"
    extra = ["--out", str(out)] if command in ("train", "compare") else []
    code = main([command, *argv, *extra])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("pyro-vae: error: "), err
    assert "Traceback" not in err and not out.exists()
    return lines[0]


def _arrays(**change):
    rng = np.random.default_rng(0)
    arrays = {
        "train": rng.integers(0, 256, (20, 4, 4)).astype(np.uint8),
        "test": rng.integers(0, 256, (6, 4, 4)).astype(np.uint8),
        "train_labels": np.arange(20) % 2,
        "test_labels": np.arange(6) % 2,
    }
    arrays.update(change)
    return {k: v for k, v in arrays.items() if v is not None}


def _npz(tmp_path, name="data.npz", **change):
    path = tmp_path / name
    np.savez(path, **_arrays(**change))
    return path


# ----------------------------------------------------------------- 1. sizes derived from input


def test_a_huge_label_value_is_refused_without_allocating_for_it(tmp_path, capsys):
    labels = np.array([0, 1] * 9 + [1, 2**40])
    line = _refused(capsys, tmp_path, "--dataset", str(_npz(tmp_path, train_labels=labels)))
    assert "run to 1099511627776 but lack class(es) 2, 3, 4, 5, 6" in line


def test_an_array_header_larger_than_its_bytes_is_refused_before_reading(tmp_path, capsys):
    import zipfile

    path = tmp_path / "bomb.npz"
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in _arrays().items():
            with archive.open(f"{name}.npy", "w") as handle:
                if name == "train":
                    np.lib.format.write_array_header_1_0(handle, header)
                    handle.write(b"\0" * 64)
                else:
                    np.lib.format.write_array(handle, array)
    line = _refused(capsys, tmp_path, "--dataset", str(path))
    assert "declares shape (1000000, 1000000) of float64" in line and "truncated" in line


def test_sizes_taken_from_data_options_are_bounded_by_memory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(validate, "memory_bytes", lambda: 256 * 2**20)
    root = write_image_folder(tmp_path / "pictures", per_class=4)
    line = _refused(capsys, tmp_path, "--dataset", str(root), "--dataset-opt", "image_size=4000")
    assert "the images of" in line and "more than this machine's 0.2 GiB" in line
    line = _refused(capsys, tmp_path, "--dataset", "ppca", "--dataset-opt", "num_train=100000000")
    assert "ppca's data would need" in line


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_network_refuses_a_batch_whose_activations_cannot_fit(
    network, tmp_path, capsys, monkeypatch
):
    """The parameters fit in the (patched) memory, a batch of 4,000 images does not."""
    monkeypatch.setattr(validate, "memory_bytes", lambda: 64 * 2**20)
    shape = ["--hidden", "16"] if network == "mlp" else []
    argv = ["--network", network, *shape, "--latent-dim", "2", "--batch-size", "4000"]
    line = _refused(capsys, tmp_path, *argv, "--epochs", "1", "--quiet")
    assert "a training step with 1 particles of each of 4000 datapoints" in line


def test_activations_are_counted_without_touching_the_random_state():
    from pyro_vae.models import build_vae

    x = torch.rand(3, 16)
    vae = build_vae(16, latent_dim=2, hidden=(8,))
    before = torch.get_rng_state()
    counted = vae.activations_per_datapoint(x)
    assert torch.equal(torch.get_rng_state(), before)
    # encoder: linear 16->8 and its ReLU (8 + 8), loc and scale heads (2 + 2);
    # decoder: linear 2->8 and its ReLU (8 + 8), output layer (16)
    assert counted == (8 + 8) + (2 + 2) + (8 + 8) + 16


# ----------------------------------------------------------------- 2. contents that crash loaders

NOT_NUMBERS = {
    "text": (np.array([["ab"] * 4] * 20), "text (dtype <U2)"),
    "bytes": (np.array([[b"ab"] * 4] * 20), "bytes (dtype |S2)"),
    "records": (np.zeros((20, 4), dtype=[("a", "f4"), ("b", "i4")]), "structured"),
    "raw bytes": (np.zeros((20, 4), dtype="V4"), "structured or raw-byte records"),
    "dates": (np.zeros((20, 4), dtype="datetime64[s]"), "dates (dtype <M8[s])"),
    "time spans": (np.zeros((20, 4), dtype="timedelta64[s]"), "time spans"),
    "complex": (np.zeros((20, 4), dtype=np.complex64), "complex numbers"),
    "objects": (np.array([[{}] * 4] * 20, dtype=object), "Python objects"),
    "int16": (np.zeros((20, 4), dtype=np.int16), "are int16; give uint8 images"),
}


@pytest.mark.parametrize("kind", NOT_NUMBERS)
def test_arrays_that_are_not_numbers_are_refused_by_name(kind, tmp_path, capsys):
    values, words = NOT_NUMBERS[kind]
    line = _refused(capsys, tmp_path, "--dataset", str(_npz(tmp_path, train=values)))
    assert words in line and "array train" in line
    with pytest.raises(DataError, match="training data"):  # the same check from Python
        from pyro_vae.data import Dataset

        Dataset.from_arrays("mine", values, values[:6])


def test_big_endian_arrays_load_as_their_values(tmp_path):
    native = _arrays(train=np.random.default_rng(1).random((20, 4, 4)))
    path = _npz(
        tmp_path,
        train=native["train"].astype(">f8"),
        test=native["test"].astype(">u1"),
        train_labels=native["train_labels"].astype(">i4"),
        test_labels=native["test_labels"].astype(">u2"),
    )
    data = load_dataset(str(path))
    assert np.allclose(data.train_x.numpy(), native["train"].reshape(20, -1).astype(np.float32))
    assert np.array_equal(data.test_x.numpy() * 255, native["test"].reshape(6, -1))
    assert data.train_labels.tolist() == native["train_labels"].tolist()


def test_channels_last_images_are_read_channels_first(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (20, 3, 8, 8)).astype(np.uint8)
    last = _npz(
        tmp_path,
        "last.npz",
        train=images.transpose(0, 2, 3, 1),
        test=images[:6].transpose(0, 2, 3, 1),
    )
    first = _npz(tmp_path, "first.npz", train=images, test=images[:6])
    a, b = load_dataset(str(last)), load_dataset(str(first))
    assert a.image_shape == b.image_shape == (3, 8, 8)
    assert torch.equal(a.train_x, b.train_x) and "channels-last" in a.info["layout"]


@pytest.mark.parametrize("shape", [(20, 0), (20, 0, 4), (20, 3, 0, 4)])
def test_zero_sized_datapoints_are_refused_before_training(shape, tmp_path, capsys):
    empty = np.zeros(shape, dtype=np.float32)
    line = _refused(capsys, tmp_path, "--dataset", str(_npz(tmp_path, train=empty, test=empty[:6])))
    assert "datapoints have no values" in line


def test_a_npy_file_named_npz_is_named(tmp_path, capsys):
    path = tmp_path / "one.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros((3, 4)))
    assert "is a .npy file (one array)" in _refused(capsys, tmp_path, "--dataset", str(path))


def _huge_png(path, width=40_000, height=40_000):
    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [9000, 40_000])
def test_an_image_declaring_too_many_pixels_is_refused_unread(side, tmp_path, capsys):
    root = write_image_folder(tmp_path / "pictures", per_class=4, grey=True)
    _huge_png(root / "top" / "huge.png", side, side)
    line = _refused(capsys, tmp_path, "--dataset", str(root))
    assert "huge.png declares" in line and "at most 67,108,864 pixels" in line


@pytest.mark.parametrize("seed", ["12345678901234567890", "99999999999999999999", "-3"])
def test_dataset_seeds_are_checked_like_every_seed(seed, tmp_path, capsys):
    root = write_image_folder(tmp_path / "pictures", per_class=4)
    for dataset in (str(root), "ppca"):
        line = _refused(capsys, tmp_path, "--dataset", dataset, "--dataset-opt", f"seed={seed}")
        assert "seed" in line and ("at most 2^31 - 1" in line or "non-negative" in line)


# ----------------------------------------------------------------- 3. silent corruption


def test_16_bit_grey_pngs_keep_their_values(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    root = tmp_path / "deep"
    written = {}
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            values = rng.integers(0, 65536, (4, 4)).astype(np.uint16)
            Image.fromarray(values).save(root / label / f"{i}.png")
            written[(label, i)] = values
    data = load_dataset(str(root), test_per_class=1)
    expected = np.stack([v.astype(np.float64) / 65535 for v in written.values()])
    seen = np.concatenate([data.train_x.numpy(), data.test_x.numpy()]).astype(np.float64)
    # every image, read back, is one of those written (split order aside), to float32 precision
    for row in seen:
        assert np.min(np.abs(expected.reshape(8, -1) - row).max(axis=1)) < 1e-6
    assert len(np.unique(seen)) > 100 and data.info["modes"] == {"I;16": 8}


def test_float_tiffs_keep_their_values(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(4)
    root = tmp_path / "floats"
    values = rng.random((8, 4, 4)).astype(np.float32)
    for i, image in enumerate(values):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="F").save(root / "ab"[i % 2] / f"{i}.tif")
    data = load_dataset(str(root), test_per_class=1)
    seen = np.concatenate([data.train_x.numpy(), data.test_x.numpy()])
    assert sorted(map(tuple, seen.round(6))) == sorted(map(tuple, values.reshape(8, -1).round(6)))


def test_a_32_bit_integer_tiff_is_refused_by_name(tmp_path, capsys):
    from PIL import Image

    root = write_image_folder(tmp_path / "pictures", per_class=4, grey=True)
    Image.fromarray(np.full((8, 8), 70000, dtype=np.int32), mode="I").save(root / "top" / "x.tif")
    assert "32-bit integer pixels" in _refused(capsys, tmp_path, "--dataset", str(root))


def _cifar(root, data, labels):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (folder / name).open("wb") as handle:
            pickle.dump({b"data": data, b"labels": labels}, handle)
    return root


@pytest.mark.parametrize(
    "pixels, labels, message",
    [
        (np.full((10, 3072), 100.0), list(range(10)), "holds float64 pixels"),
        (np.full((10, 3072), np.nan), list(range(10)), "holds float64 pixels"),
        (np.zeros((10, 3072), dtype=np.uint8), [0.5] * 10, "labels of CIFAR-10 batch"),
        (np.zeros((10, 100), dtype=np.uint8), list(range(10)), "expected (N, 3072)"),
    ],
)
def test_cifar_batches_of_other_types_are_refused_not_cast(
    pixels, labels, message, tmp_path, capsys
):
    root = _cifar(tmp_path / "c", pixels, labels)
    argv = ["--dataset", "cifar10", "--data-dir", str(root), "--dataset-opt", "download=false"]
    assert message in _refused(capsys, tmp_path, *argv)


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0] * 10), np.array([True, False] * 10)])
def test_labels_that_are_not_integers_are_refused_not_truncated(labels, tmp_path, capsys):
    line = _refused(capsys, tmp_path, "--dataset", str(_npz(tmp_path, train_labels=labels)))
    assert "array train_labels must be integers" in line


# ----------------------------------------------------------------- 5. unsafe advice


def _pickle_file(path):
    with path.open("wb") as handle:
        pickle.dump({"train": 1}, handle)


def _link_to_text(path):
    target = path.parent / "notes.txt"
    target.write_text("a text file\n")
    path.symlink_to(target)


@pytest.mark.parametrize(
    "write",
    [_pickle_file, lambda p: p.write_bytes(os.urandom(300)), _link_to_text],
    ids=["pickle", "random bytes", "link to a text file"],
)
def test_files_that_are_not_archives_get_no_unpickling_advice(write, tmp_path, capsys):
    path = tmp_path / "data.npz"
    write(path)
    line = _refused(capsys, tmp_path, "--dataset", str(path))
    assert "is not a .npz archive" in line
    assert "allow_pickle" not in line and "pickle.load" not in line


# ----------------------------------------------------------------- 6. special files


@pytest.fixture
def no_hang():
    """Fail (instead of hanging the suite) if the test blocks for 60 s."""

    def stop(*_):
        raise TimeoutError("blocked on a special file")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_fifo_in_an_image_folder_is_refused_not_read(tmp_path, capsys, no_hang):
    root = write_image_folder(tmp_path / "pictures", per_class=4)
    os.mkfifo(root / "top" / "x.png")
    assert "x.png is a FIFO (named pipe), not an image file" in _refused(
        capsys, tmp_path, "--dataset", str(root)
    )


def test_a_fifo_or_device_named_npz_is_refused_not_read(tmp_path, capsys, no_hang):
    os.mkfifo(tmp_path / "pipe.npz")
    assert "is a FIFO" in _refused(capsys, tmp_path, "--dataset", str(tmp_path / "pipe.npz"))
    (tmp_path / "zero.npz").symlink_to("/dev/zero")
    assert "is a character device" in _refused(
        capsys, tmp_path, "--dataset", str(tmp_path / "zero.npz")
    )


# ----------------------------------------------------------------- 7. options that change nothing


@pytest.mark.parametrize("method", ["mle-pairs", "map-pairs", "mle-prior-mc"])
def test_methods_without_q_refuse_a_gradient_estimator(method, tmp_path, capsys):
    argv = ["--methods", method, "--gradient", "stl", "--epochs", "1", "--quiet"]
    line = _refused(capsys, tmp_path, *argv, "--dataset", str(write_npz(tmp_path / "d.npz")),
                    command="compare")  # fmt: skip
    assert f"{method}" in line and "gradient 'stl' does not apply" in line


def test_methods_with_q_take_every_gradient_estimator():
    from pyro_vae.inference import SVIConfig
    from pyro_vae.inference.methods import METHODS, Problem

    for method in ("vae", "iwae", "bayes-decoder"):
        for gradient in ("reparam", "stl", "dreg"):
            objective = "iwae" if gradient == "dreg" or method == "iwae" else "elbo"
            try:
                svi = SVIConfig(gradient=gradient, objective=objective, epochs=1)
            except ConfigError:
                continue  # a pairing no method takes (stl with iwae)
            try:
                METHODS.build(method).check(Problem(torch.rand(8, 4), svi=svi))
            except ConfigError as err:
                assert "does not apply to it" not in str(err), (method, gradient)


@pytest.mark.parametrize(
    "argv",
    [
        ["--network-opt", "width=8", "width=16"],
        ["--network-opt", "width=8", "--network-opt", "width=16"],
        ["--prior", "mog", "--prior-opt", "components=2", "components=3"],
        ["--dataset", "ppca", "--dataset-opt", "seed=1", "seed=2"],
    ],
)
def test_an_option_key_given_twice_is_refused(argv, tmp_path, capsys):
    network = ["--network", "conv"] if "--network-opt" in argv else []
    line = _refused(capsys, tmp_path, *network, *argv)
    assert "twice" in line


def test_a_compare_option_key_given_twice_for_one_scope_is_refused(tmp_path, capsys):
    argv = ["--methods", "iwae", "--method-opt", "iwae.particles=2", "iwae.particles=3"]
    assert "twice for one scope" in _refused(capsys, tmp_path, *argv, command="compare")


# ----------------------------------------------------------------- data set on a tiny run


def test_a_checked_data_set_still_trains(tmp_path):
    """The checks refuse what they should and nothing more: big-endian, channels-last data
    trains end to end."""
    images = np.random.default_rng(5).integers(0, 256, (40, 8, 8, 3)).astype(">f4") / 255
    path = _npz(tmp_path, train=images.astype(">f4"), test=images[:10].astype(">f4"),
                train_labels=np.arange(40) % 2, test_labels=np.arange(10) % 2)  # fmt: skip
    out = tmp_path / "run"
    assert (
        main(["train", "--dataset", str(path), *TINY, "--batch-size", "8", "--out", str(out)]) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["data"]["image_shape"] == [3, 8, 8] and len(metrics["data"]["content_sha256"]) == 64
    )
