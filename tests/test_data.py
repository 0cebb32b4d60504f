"""Dataset constructors, the IDX reader and the pairwise-distance helpers."""

import gzip
import os
import struct

import numpy as np
import pytest

import repalign_jax as rj
from repalign_jax._data import (
    Dataset,
    digits,
    first_of_class,
    gaussian_blobs,
    load_mnist,
    pair_indices,
    pairwise_distances,
    read_idx,
    two_point,
    xor,
)

# --------------------------------------------------------------------------------------
# Two points, XOR
# --------------------------------------------------------------------------------------


def test_two_point_default_values():
    data = two_point()
    assert isinstance(data, Dataset)
    assert data.x.dtype == np.float32 and data.targets.dtype == np.float32
    assert not hasattr(data, "y")  # renamed `targets`: `y` is the squared output distance elsewhere
    np.testing.assert_allclose(data.x, [[-1.0], [0.0]], rtol=0, atol=1e-7)
    np.testing.assert_allclose(data.targets, [[0.6], [0.6 + np.sqrt(0.5)]], rtol=1e-7)
    assert data.meta == {"dx2": 1.0, "dy2": 0.5}


@pytest.mark.parametrize("d_in,d_out", [(1, 1), (2, 3), (5, 1), (7, 10), (64, 2)])
@pytest.mark.parametrize("dx2,dy2", [(1.0, 0.5), (0.25, 0.0), (2.25, 1.0)])
def test_two_point_distances_any_dimension(dx2, dy2, d_in, d_out):
    data = two_point(dx2=dx2, dy2=dy2, d_in=d_in, d_out=d_out)
    assert data.x.shape == (2, d_in) and data.targets.shape == (2, d_out)
    x, y = data.x.astype(np.float64), data.targets.astype(np.float64)
    np.testing.assert_allclose(np.sum((x[1] - x[0]) ** 2), dx2, rtol=1e-6)
    np.testing.assert_allclose(np.sum((y[1] - y[0]) ** 2), dy2, rtol=1e-6, atol=1e-12)
    # Every coordinate is the 1-d value divided by sqrt(d).
    x1 = np.broadcast_to([[-1.0], [-1.0 + np.sqrt(dx2)]], x.shape)
    y1 = np.broadcast_to([[0.6], [0.6 + np.sqrt(dy2)]], y.shape)
    np.testing.assert_allclose(x * np.sqrt(d_in), x1, atol=1e-6)
    np.testing.assert_allclose(y * np.sqrt(d_out), y1, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dx2=0.0), "dx2"),
        (dict(dx2=-1.0), "dx2"),
        (dict(dx2=float("nan")), "dx2"),
        (dict(dy2=-0.1), "dy2"),
        (dict(dy2=float("inf")), "dy2"),
        (dict(d_in=0), "d_in"),
        (dict(d_out=0), "d_out"),
        (dict(d_in=1.5), "d_in"),
        (dict(d_out=True), "d_out"),
    ],
)
def test_two_point_validation(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        two_point(**kwargs)
    assert "\n" not in str(info.value)


def test_xor():
    data = xor()
    assert data.x.shape == (4, 2) and data.targets.shape == (4, 1)
    assert data.x.dtype == np.float32 and data.targets.dtype == np.float32
    np.testing.assert_array_equal(data.x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(data.targets[:, 0], np.logical_xor(data.x[:, 0], data.x[:, 1]))
    np.testing.assert_array_equal(data.targets[:, 0], [0, 1, 1, 0])


# --------------------------------------------------------------------------------------
# Gaussian blobs
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs():
    return gaussian_blobs()


def test_blobs_shapes_and_normalisation(blobs):
    assert blobs.x.shape == (1800, 27) and blobs.targets.shape == (1800, 1)
    assert blobs.x.dtype == np.float32 and blobs.targets.dtype == np.float32
    images = blobs.x[:, :25].astype(np.float64)
    np.testing.assert_allclose(images.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(images > 0)
    for key in ("context", "mu_x", "mu_y"):
        assert blobs.meta[key].shape == (1800,)


def test_blobs_context_onehot_and_targets(blobs):
    c, mu_x, mu_y = blobs.meta["context"], blobs.meta["mu_x"], blobs.meta["mu_y"]
    np.testing.assert_array_equal(np.bincount(c), [900, 900])
    np.testing.assert_array_equal(blobs.x[:, 25:], np.eye(2)[c])
    np.testing.assert_array_equal(blobs.targets[c == 0, 0], mu_x[c == 0])
    np.testing.assert_array_equal(blobs.targets[c == 1, 0], mu_y[c == 1])
    # The two contexts show the same images.
    np.testing.assert_array_equal(blobs.x[:900, :25], blobs.x[900:, :25])


def test_blobs_order_and_centres(blobs):
    m = np.linspace(-1, 1, 30)
    c, mu_x, mu_y = blobs.meta["context"], blobs.meta["mu_x"], blobs.meta["mu_y"]
    k = np.arange(1800)
    np.testing.assert_array_equal(c, k // 900)
    np.testing.assert_allclose(mu_x, m[(k // 30) % 30], atol=1e-7)
    np.testing.assert_allclose(mu_y, m[k % 30], atol=1e-7)


def test_blobs_image_formula_and_peak(blobs):
    g = np.linspace(-1, 1, 5)
    u, v = np.meshgrid(g, g, indexing="ij")
    mu_x, mu_y = blobs.meta["mu_x"], blobs.meta["mu_y"]
    for k in [0, 17, 450, 899, 931, 1799]:
        img = np.exp(-((u - mu_x[k]) ** 2 + (v - mu_y[k]) ** 2) / 2)
        np.testing.assert_allclose(blobs.x[k, :25], (img / img.sum()).ravel(), rtol=1e-6)
    # The brightest pixel is the grid point nearest to the centre, in both axes.
    peak = np.argmax(blobs.x[:, :25], axis=1)
    iu, iv = peak // 5, peak % 5
    np.testing.assert_array_equal(iu, np.argmin(np.abs(g[None] - mu_x[:, None]), axis=1))
    np.testing.assert_array_equal(iv, np.argmin(np.abs(g[None] - mu_y[:, None]), axis=1))
    # ...so it moves across the whole image as mu sweeps its range.
    assert set(iu.tolist()) == set(range(5)) and set(iv.tolist()) == set(range(5))


def test_blobs_small_and_validation():
    data = gaussian_blobs(n=3, grid=4)
    assert data.x.shape == (18, 18) and data.targets.shape == (18, 1)
    with pytest.raises(ValueError, match="n must be"):
        gaussian_blobs(n=0)
    with pytest.raises(ValueError, match="grid"):
        gaussian_blobs(grid=0)


# --------------------------------------------------------------------------------------
# IDX files and MNIST
# --------------------------------------------------------------------------------------

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr):
    """The IDX encoding of `arr`, written out independently of the package."""
    arr = np.asarray(arr)
    code = _CODES[arr.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr, gz=False):
    data = idx_bytes(arr)
    if gz:
        data = gzip.compress(data)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_ubyte_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(3,), dtype=np.uint8)
    suffix = ".gz" if gz else ""
    got_images = read_idx(write_idx(tmp_path / f"im{suffix}", images, gz))
    got_labels = read_idx(str(write_idx(tmp_path / f"lab{suffix}", labels, gz)))
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 4, 5)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_other_dtypes(tmp_path, dtype):
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=(2, 3), dtype=dtype, endpoint=True)
    else:
        arr = (rng.standard_normal((2, 3)) * 1e3).astype(dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", arr))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


def test_read_idx_bad_magic(tmp_path):
    good = idx_bytes(np.zeros((2, 2), np.uint8))
    for bad in [b"\x01" + good[1:], good[:2] + b"\x07" + good[3:], b"PK\x03\x04" + good[4:]]:
        path = tmp_path / "bad"
        path.write_bytes(bad)
        with pytest.raises(ValueError, match="magic"):
            read_idx(path)


def test_read_idx_truncated(tmp_path):
    good = idx_bytes(np.arange(24, dtype=np.int32).reshape(2, 3, 4))
    for cut in [2, 6, len(good) - 1, len(good) - 5]:
        path = tmp_path / "short"
        path.write_bytes(good[:cut])
        with pytest.raises(ValueError, match="truncated"):
            read_idx(path)
    # A truncated gzip stream, too.
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(ValueError):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match="missing-file"):
        read_idx(tmp_path / "missing-file")


def make_fake_mnist(directory, n=7, gz=True, prefix="train", seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = np.array([3, 1, 0, 1, 9, 0, 4, 7, 2, 5][:n], dtype=np.uint8)
    suffix = ".gz" if gz else ""
    os.makedirs(directory, exist_ok=True)
    write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{suffix}"), images, gz)
    write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{suffix}"), labels, gz)
    return images, labels


def test_load_mnist(tmp_path):
    images, labels = make_fake_mnist(tmp_path, gz=True)
    test_images, test_labels = make_fake_mnist(tmp_path, n=5, gz=False, prefix="t10k", seed=1)
    x, lab = load_mnist(tmp_path)
    assert x.shape == (7, 784) and x.dtype == np.float32
    np.testing.assert_allclose(x, images.reshape(7, 784) / 255.0, rtol=1e-6)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(lab, labels)
    assert np.issubdtype(lab.dtype, np.integer)
    x_test, lab_test = load_mnist(str(tmp_path), split="test")
    assert x_test.shape == (5, 784)
    np.testing.assert_allclose(x_test, test_images.reshape(5, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(lab_test, test_labels)
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, split="validation")


def test_load_mnist_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    make_fake_mnist(tmp_path)
    os.remove(tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_load_mnist_mismatched_labels(tmp_path):
    make_fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(6, np.uint8))
    with pytest.raises(ValueError, match="labels"):
        load_mnist(tmp_path)


def test_digits_from_mnist_folder(tmp_path):
    images, labels = make_fake_mnist(tmp_path)
    data = digits(mnist_dir=tmp_path)
    assert data.name == "mnist"
    assert data.meta["source"] == f"mnist-idx:{os.path.abspath(tmp_path)}"
    assert data.x.shape == (7, 784) and data.targets.shape == (7, 10)
    np.testing.assert_array_equal(data.targets, np.eye(10)[labels])
    np.testing.assert_array_equal(data.meta["labels"], labels)

    sub = digits(mnist_dir=tmp_path, n=5, sort=True)
    # First 5 labels are 3 1 0 1 9 -> sorted stably: 0(2) 1(1) 1(3) 3(0) 9(4).
    np.testing.assert_array_equal(sub.meta["labels"], [0, 1, 1, 3, 9])
    np.testing.assert_array_equal(sub.meta["index"], [2, 1, 3, 0, 4])
    np.testing.assert_allclose(sub.x, images[[2, 1, 3, 0, 4]].reshape(5, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(sub.targets.argmax(axis=1), sub.meta["labels"])
    with pytest.raises(ValueError, match="n=8"):
        digits(mnist_dir=tmp_path, n=8)
    with pytest.raises(ValueError, match="n must be"):
        digits(mnist_dir=tmp_path, n=0)
    with pytest.raises(FileNotFoundError, match="absent"):
        digits(mnist_dir=tmp_path / "absent")


def test_digits_sklearn_fallback():
    datasets = pytest.importorskip("sklearn.datasets")
    ref = datasets.load_digits()
    data = digits()
    assert data.meta["source"] == "sklearn-digits"
    assert data.x.shape == (len(ref.target), 64) and data.targets.shape == (len(ref.target), 10)
    assert data.x.dtype == np.float32 and data.targets.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    np.testing.assert_allclose(data.x, ref.data / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(data.targets, np.eye(10)[ref.target])
    np.testing.assert_array_equal(data.targets.sum(axis=1), 1.0)

    sub = digits(n=100, sort=True)
    assert sub.x.shape == (100, 64)
    labels = sub.meta["labels"]
    assert np.all(np.diff(labels) >= 0)
    np.testing.assert_array_equal(np.sort(ref.target[:100]), labels)
    np.testing.assert_array_equal(ref.target[sub.meta["index"]], labels)
    assert np.all(sub.meta["index"] < 100)
    # Stable: within a digit the original order is kept.
    for c in range(10):
        idx = sub.meta["index"][labels == c]
        assert np.all(np.diff(idx) > 0)
    np.testing.assert_allclose(sub.x, ref.data[sub.meta["index"]] / 16.0, rtol=1e-6)

    unsorted = digits(n=10)
    np.testing.assert_array_equal(unsorted.meta["labels"], ref.target[:10])


def test_digits_without_sklearn(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("no sklearn here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        digits()


def test_first_of_class():
    labels = np.array([3, 1, 0, 1, 9, 0, 4])
    np.testing.assert_array_equal(first_of_class(labels, (0, 1)), [2, 1])
    np.testing.assert_array_equal(first_of_class(labels, [9, 3, 4]), [4, 0, 6])
    out = first_of_class(labels.tolist(), (1,))
    assert out.dtype == np.int64 and out.shape == (1,)
    with pytest.raises(ValueError, match="5"):
        first_of_class(labels, (0, 5))


# --------------------------------------------------------------------------------------
# Pairwise distances
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 5, 10])
def test_pair_indices(n):
    i, j = pair_indices(n)
    expected = [(a, b) for a in range(n) for b in range(a + 1, n)]
    assert len(i) == len(j) == n * (n - 1) // 2
    assert list(zip(i.tolist(), j.tolist())) == expected
    assert np.issubdtype(i.dtype, np.integer)


def test_pairwise_distances_against_loop():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((13, 4, 3)).astype(np.float32)
    z[5] = z[2]  # a duplicated point: distance exactly 0
    d = pairwise_distances(z, block_elems=50)  # several blocks
    assert d.shape == (13, 13) and d.dtype == np.float64
    flat = z.reshape(13, -1).astype(np.float64)
    ref = np.array(
        [[np.sqrt(sum((flat[a, k] - flat[b, k]) ** 2 for k in range(12))) for b in range(13)] for a in range(13)]
    )
    np.testing.assert_allclose(d, ref, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    np.testing.assert_array_equal(d, d.T)
    assert d[2, 5] == 0.0
    np.testing.assert_array_equal(pairwise_distances(z), d)
    i, j = pair_indices(13)
    np.testing.assert_allclose(d[i, j], np.linalg.norm(flat[i] - flat[j], axis=1), rtol=1e-13)


def test_pairwise_distances_accuracy_close_points():
    # Nearby points far from the origin: a Gram-matrix formula would lose these digits.
    z = np.array([[1e4, 1e4], [1e4 + 1e-3, 1e4]])
    d = pairwise_distances(z)
    np.testing.assert_allclose(d[0, 1], 1e-3, rtol=1e-8)
    # 1-d input = N scalars.
    np.testing.assert_array_equal(pairwise_distances(np.array([0.0, 3.0, -1.0])), [[0, 3, 1], [3, 0, 4], [1, 4, 0]])


def test_mnist_5k_is_real_mnist_interleaved_by_digit():
    x, labels = rj.mnist_5k()
    assert x.shape == (5000, 784) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
    assert np.bincount(labels).tolist() == [500] * 10
    assert labels[:20].tolist() == list(range(10)) * 2  # the k-th of each digit in turn
    sub = rj.digits(n=100, sort=True, dataset="mnist-5k")
    assert np.bincount(sub.meta["labels"]).tolist() == [10] * 10 and sub.meta["source"].startswith("mnist")
    with pytest.raises(ValueError, match="dataset"):
        rj.digits(dataset="emnist")


def test_load_mnist_reads_keras_npz_and_torchvision_folders(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=images, y_train=labels, x_test=images[:2], y_test=labels[:2])
    for where in (tmp_path, tmp_path / "mnist.npz"):
        x, y = rj.load_mnist(where)
        np.testing.assert_array_equal(x, images.reshape(5, -1) / np.float32(255))
        assert y.tolist() == [3, 1, 4, 1, 5]
    assert rj.load_mnist(tmp_path, split="test")[0].shape == (2, 784)
    raw = tmp_path / "torch" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    x, y = rj.load_mnist(tmp_path / "torch")
    assert x.shape == (5, 784) and y.tolist() == [3, 1, 4, 1, 5]
