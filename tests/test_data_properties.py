"""Property tests of the data loaders on generated files: ``.npz`` contents (element types,
byte orders, shapes, sizes, label values) and image files (modes, bit depths, sizes,
truncations). Each file either loads, with every value in its declared range and equal to what
was written, or is refused with the project's error type; never another exception. A few of
the files that load are then trained on, with the same contract."""

import io

import numpy as np
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from pyro_vae.config import TrainConfig
from pyro_vae.core.errors import PyroVAEError
from pyro_vae.data import load_dataset
from pyro_vae.training import train

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

#: Element types a user's arrays may come in, numbers and not, both byte orders.
VALUE_DTYPES = [
    "|u1", "|b1", "<f2", "<f4", ">f4", "<f8", ">f8", "<u2", ">u2", "<i2", "<i8", "<c8",
    "<U2", "|S2", "<M8[s]", "<m8[s]", "|V4", "|O",
]  # fmt: skip
LABEL_DTYPES = ["<i8", ">i4", "|u1", "<u8", "<f8", "|b1", "|O"]


def _values(draw, dtype: np.dtype, shape: tuple[int, ...], odd: bool) -> np.ndarray:
    """An array of ``dtype`` and ``shape``, numbers in their usual range; with ``odd``, one
    value outside it (NaN, an infinity, a negative or a huge number)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        values = rng.random(shape)
        if odd and values.size:
            bad = draw(st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 1e30]))
            values.flat[rng.integers(values.size)] = bad
        with np.errstate(over="ignore"):
            return values.astype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -5), min(info.max, 300) + 1, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "O":
        return np.full(shape, None, dtype=object)
    return np.zeros(shape, dtype=dtype)


#: Numbers pyro-vae reads as data (the rest of VALUE_DTYPES it refuses by name).
NUMERIC = ["|u1", "<f4", ">f4", "<f8", ">f8", "<f2", "|b1"]
#: What a generated file gets wrong, if anything (``None`` most often: a valid file).
FLAWS = [None] * 5 + [
    "dtype", "shape", "rows", "test shape", "values", "label dtype", "label value", "label count",
]  # fmt: skip


def _labels(draw, rows: int, test_rows: int, flaw: str | None) -> dict[str, np.ndarray]:
    train, test = np.arange(rows) % 2, np.arange(test_rows) % 2
    if flaw == "label dtype":
        dtype = draw(st.sampled_from(LABEL_DTYPES))
        train = train.astype(object) if dtype == "|O" else train.astype(dtype)
    elif flaw == "label value" and rows:
        train[draw(st.integers(0, rows - 1))] = draw(st.sampled_from([-1, 3, 2**31, 2**40, 2**62]))
    elif flaw == "label count":
        test = np.append(test, 0) if draw(st.booleans()) else test[:-1]
    return {"train_labels": train, "test_labels": test}


@st.composite
def npz_files(draw):
    """Arrays of a ``.npz`` data set: mostly valid, else with one flaw of :data:`FLAWS`."""
    flaw = draw(st.sampled_from(FLAWS))
    dtype = np.dtype(draw(st.sampled_from(VALUE_DTYPES if flaw == "dtype" else NUMERIC)))
    item = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rows, test_rows = draw(st.integers(2, 6)), draw(st.integers(1, 3))
    if flaw == "shape":
        item = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    if flaw == "rows":
        rows, test_rows = draw(st.integers(0, 1)), draw(st.integers(0, 3))
    test_item = (
        tuple(draw(st.lists(st.integers(0, 4), max_size=3))) if flaw == "test shape" else item
    )
    arrays = {
        "train": _values(draw, dtype, (rows, *item), odd=flaw == "values"),
        "test": _values(draw, dtype, (test_rows, *test_item), odd=False),
    }
    if draw(st.booleans()) or (flaw or "").startswith("label"):
        arrays.update(_labels(draw, rows, test_rows, flaw))
    event(f"flaw: {flaw}")
    return arrays


def _flat_expected(array: np.ndarray) -> np.ndarray | None:
    """What the loader must make of numeric data that has no channel-layout ambiguity."""
    if array.ndim > 3:
        return None
    values = array.astype(np.float64).reshape(len(array), -1)
    return values / 255 if array.dtype == np.uint8 else values


def _check_loaded(data, arrays):
    for x, array in ((data.train_x, arrays["train"]), (data.test_x, arrays["test"])):
        assert x.dtype == torch.float32 and x.dim() == 2 and x.shape[1] > 0
        assert torch.isfinite(x).all()
        if array.dtype == np.uint8:
            assert ((x >= 0) & (x <= 1)).all()
        expected = _flat_expected(array)
        if expected is not None:
            assert np.allclose(x.numpy(), expected, rtol=1e-6, atol=1e-7)
    if data.train_labels is not None:
        for y in (data.train_labels, data.test_labels):
            assert y.dtype == torch.long and int(y.min()) >= 0
            assert int(y.max()) < data.num_classes <= len(data.train_labels)


@PROPERTY
@given(arrays=npz_files())
def test_generated_npz_files_load_faithfully_or_are_refused(arrays, tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    np.savez(path, **arrays)
    try:
        data = load_dataset(str(path))
    except PyroVAEError:
        event("refused")
        return
    event("loaded")
    _check_loaded(data, arrays)


# ----------------------------------------------------------------------------- images

MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK"]
FORMATS = ["PNG", "TIFF", "BMP", "GIF", "JPEG"]


@st.composite
def image_files(draw):
    """The bytes of one image file, and the largest value its pixels declare (``None``: floats
    in [0, 1]), or ``None`` for bytes that cannot be written in that format."""
    from PIL import Image

    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    side = st.one_of(st.just(4), st.integers(1, 6))  # 4 x 4: the size of the folder's others
    width, height = draw(side), draw(side)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if mode == "F":
        image = Image.fromarray(rng.random((height, width)).astype(np.float32), mode="F")
    elif mode in ("I;16", "I"):
        image = Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16))
        image = image if mode == "I;16" else image.convert("I")
    else:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3)).astype(np.uint8)).convert(
            mode
        )
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):  # Pillow cannot write this mode in this format
        fmt, buffer = "TIFF", io.BytesIO()
        try:
            image.save(buffer, format=fmt)
        except (OSError, ValueError, KeyError):
            return None
    data = buffer.getvalue()
    cut = draw(st.sampled_from([0, 0, 0, 0, 1, len(data) // 2, len(data) - 8]))
    return data[: len(data) - cut], fmt


@PROPERTY
@given(odd=image_files(), size=st.sampled_from([None, None, 3]))
def test_generated_images_load_into_the_unit_interval_or_are_refused(odd, size, tmp_path_factory):
    from PIL import Image

    assume(odd is not None)
    content, fmt = odd
    root = tmp_path_factory.mktemp("images")
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((4, 4), 40 * i, dtype=np.uint8)).save(root / label / f"{i}.png")
    suffix = {"JPEG": ".jpg", "TIFF": ".tif"}.get(fmt, "." + fmt.lower())
    (root / "a" / f"odd{suffix}").write_bytes(content)
    options = {"image_size": size} if size else {}
    try:
        data = load_dataset(str(root), **options)
    except PyroVAEError:
        event("refused")
        return
    event("loaded")
    for x in (data.train_x, data.test_x):
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
        assert ((x >= 0) & (x <= 1)).all()  # 8-bit / 255, 16-bit / 65535, floats as written
    if size:
        assert data.image_shape in ((3, 3), (3, 3, 3))


# ----------------------------------------------------------------------------- and train


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(arrays=npz_files())
def test_generated_npz_files_train_or_are_refused(arrays, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    np.savez(folder / "data.npz", **arrays)
    try:
        data = load_dataset(str(folder / "data.npz"))
    except PyroVAEError:
        event("refused by the loader")
        return
    binarization = "dynamic" if bool(((data.train_x >= 0) & (data.train_x <= 1)).all()) else "none"
    likelihood = "bernoulli" if binarization == "dynamic" else "normal"
    config = TrainConfig(
        dataset=str(folder / "data.npz"),
        binarization=binarization,
        likelihood=likelihood,
        epochs=1,
        hidden=(4,),
        latent_dim=2,
        batch_size=len(data.train_x),
        is_samples=2,
    )
    try:
        metrics = train(config, folder / "run", progress=False)
    except PyroVAEError:
        event("refused by train")
        assert not (folder / "run").exists()
        return
    event("trained")
    assert np.isfinite(metrics["test"]["elbo"])
