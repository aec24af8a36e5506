"""Data sets and binarization."""

import pytest
import torch
from common import write_fake_mnist

from pyro_vae.core.errors import DataError, UnknownNameError
from pyro_vae.data import BINARIZATIONS, DATASETS, load_dataset


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def test_mnist5k_is_a_stratified_deterministic_split(mnist5k):
    assert mnist5k.train_x.shape == (4000, 784) and mnist5k.test_x.shape == (1000, 784)
    assert mnist5k.image_shape == (28, 28)
    assert mnist5k.train_x.dtype == torch.float32
    assert 0 <= mnist5k.train_x.min() and mnist5k.train_x.max() <= 1
    assert mnist5k.train_x.max() == 1 and ((mnist5k.train_x > 0) & (mnist5k.train_x < 1)).any()
    assert torch.equal(mnist5k.train_labels.bincount(), torch.full((10,), 400))
    assert torch.equal(mnist5k.test_labels.bincount(), torch.full((10,), 100))
    again = load_dataset("mnist5k")
    assert torch.equal(again.test_x, mnist5k.test_x) and torch.equal(
        again.train_labels, mnist5k.train_labels
    )
    # no test image is also a training image
    train_rows = {tuple(row.tolist()) for row in (mnist5k.train_x * 255).round().to(torch.uint8)}
    assert not any(
        tuple(r.tolist()) in train_rows for r in (mnist5k.test_x[:50] * 255).round().to(torch.uint8)
    )


def test_dynamic_binarization_resamples_but_the_test_binarization_is_fixed(mnist5k):
    dynamic = BINARIZATIONS["dynamic"]
    x = mnist5k.test_x[:200]
    first, second = dynamic.fixed(x), dynamic.fixed(x)
    assert torch.equal(first, second)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    gen = torch.Generator().manual_seed(1)
    epoch1, epoch2 = dynamic.apply(x, gen), dynamic.apply(x, gen)
    assert not torch.equal(epoch1, epoch2)
    # Bernoulli(pixel): the mean of many draws approaches the grey values
    draws = torch.stack([dynamic.apply(x, gen) for _ in range(400)]).mean(0)
    assert (draws - x).abs().max() < 0.12
    assert dynamic.resample and not BINARIZATIONS["threshold"].resample


def test_threshold_and_none(mnist5k):
    x = mnist5k.test_x[:10]
    assert torch.equal(BINARIZATIONS["threshold"].fixed(x), (x > 0.5).float())
    assert torch.equal(BINARIZATIONS["none"].fixed(x), x)


def test_binarization_refuses_real_valued_data():
    with pytest.raises(DataError, match="--binarization none"):
        BINARIZATIONS["dynamic"].fixed(torch.tensor([[2.0, -1.0]]))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="fashion-mnist, mnist, mnist5k, ppca"):
        load_dataset("cifar")
    with pytest.raises(UnknownNameError, match="dynamic, none, threshold"):
        BINARIZATIONS["stochastic"]


def test_missing_data_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist5k", data_dir=tmp_path / "nope")


@pytest.mark.parametrize("layout", ["torchvision-raw", "flat-gz", "debian"])
def test_fashion_mnist_loads_idx_files_from_each_place(tmp_path, layout):
    data_dir, system_dir = tmp_path / "data", tmp_path / "system"
    data_dir.mkdir()
    target = {
        "torchvision-raw": data_dir / "FashionMNIST" / "raw",
        "flat-gz": data_dir,
        "debian": system_dir,
    }[layout]
    write_fake_mnist(target, compress=layout != "torchvision-raw")
    data = load_dataset("fashion-mnist", data_dir=data_dir, system_dir=system_dir, download=False)
    assert data.train_x.shape == (30, 784) and data.test_x.shape == (10, 784)
    assert data.image_shape == (28, 28)
    assert torch.equal(data.train_labels, torch.arange(30) % 10)
    assert 0 <= data.train_x.min() and data.train_x.max() <= 1
    assert (data_dir / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_mnist_loads_a_local_copy(tmp_path):
    write_fake_mnist(tmp_path / "MNIST" / "raw", compress=True, n_train=20, n_test=5)
    data = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert data.train_x.shape == (20, 784) and data.test_labels.tolist() == [0, 1, 2, 3, 4]


def test_fashion_mnist_not_found_names_all_three_ways(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(
            "fashion-mnist", data_dir=tmp_path, system_dir=tmp_path / "none", download=False
        )
    message = str(err.value)
    assert str(tmp_path) in message and "dataset-fashion-mnist" in message
    assert "download" in message


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_fake_mnist(raw, compress=False)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


def test_corrupt_gz_is_a_clear_error(tmp_path):
    write_fake_mnist(tmp_path, compress=True)
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:200])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("fashion-mnist", data_dir=tmp_path, system_dir=tmp_path / "x", download=False)


def test_ppca_data_match_their_recorded_truth():
    data = load_dataset("ppca", num_train=20000, num_test=10, seed=3)
    weight = torch.tensor(data.info["truth"]["W"])
    mu = torch.tensor(data.info["truth"]["mu"])
    sigma = data.info["truth"]["sigma"]
    cov = torch.cov(data.train_x.T.double()).float()
    expected = weight @ weight.T + sigma**2 * torch.eye(8)
    assert (cov - expected).abs().max() < 0.25
    assert (data.train_x.mean(0) - mu).abs().max() < 0.1
    assert not data.has_labels


def test_every_data_set_is_registered_with_a_docstring():
    assert set(DATASETS) == {"mnist5k", "fashion-mnist", "mnist", "ppca", "cifar10"}
    assert all(factory.__doc__ for factory in DATASETS.values())
