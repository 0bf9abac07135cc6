"""Datasets for the training layer: MNIST-1D (embedded), digits, CIFAR-10 (local files), synthetic.

Every loader returns a :class:`Dataset` whose inputs are standardised per feature with statistics
of the (selected) training set, the convention of Cohen et al.'s edge-of-stability code that EOS
papers compare with (docs/theory.md section 2):

    x̃_ij = (x_ij − μ_j) / s_j,   μ_j = mean_{i ∈ train} x_ij,   s_j = std_{i ∈ train} x_ij

(population std, ``ddof=0``; a feature that is constant on the training set, s_j = 0, is centred
only: s_j is replaced by 1). The same μ, s are applied to the test set. Nothing is downloaded:
MNIST-1D is generated in-process, digits ship with scikit-learn, CIFAR-10 is read from a local
copy.

Reference: Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient descent on neural networks typically
occurs at the edge of stability", ICLR 2021, arXiv:2103.00065.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import random
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from eosmodel.errors import InputError, file_error

__all__ = [
    "CIFAR10_ENV_VAR",
    "DATASETS",
    "DATA_DEFAULTS",
    "Dataset",
    "balanced_indices",
    "load_dataset",
    "standardize",
]

#: Environment variable naming the local CIFAR-10 copy when ``[data].path`` is empty.
CIFAR10_ENV_VAR = "EOSMODEL_CIFAR10"

#: Names accepted by :func:`load_dataset`.
DATASETS = ("mnist1d", "digits", "cifar10", "synthetic")

#: Defaults of the ``[data]`` table (``synthetic`` also reads ``seed``, ``num_classes`` and
#: ``input_shape``; the other datasets ignore them).
DATA_DEFAULTS: dict[str, Any] = {
    "name": "mnist1d",
    "n_train": 1000,
    "n_test": 500,
    "balanced": False,
    "path": "",
    "seed": 0,
    "num_classes": 4,
    "input_shape": [16],
}

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_LAYOUT = (
    f"a folder '{_CIFAR_DIR}/' holding data_batch_1..data_batch_5 and test_batch (the python "
    f"pickles from https://www.cs.toronto.edu/~kriz/cifar.html), or the archive '{_CIFAR_TAR}', "
    "or a folder containing either"
)

# Synthetic data sizes used when n_train / n_test is 0 ("all").
_SYNTHETIC_ALL_TRAIN = 256
_SYNTHETIC_ALL_TEST = 128


class Dataset(NamedTuple):
    """A classification data set split into train and test, inputs already standardised.

    Attributes:
      x_train: float32 inputs, shape ``(n_train, *input_shape)``; images are NHWC.
      y_train: int32 labels in ``[0, num_classes)``, shape ``(n_train,)``.
      x_test: float32 inputs, shape ``(n_test, *input_shape)``.
      y_test: int32 labels, shape ``(n_test,)``.
      num_classes: number of classes.
      name: the dataset name (``"mnist1d"``, ``"digits"``, ``"cifar10"``, ``"synthetic"``).
      meta: provenance and preprocessing: ``source`` (str), ``n_train``/``n_test`` (int),
        ``n_available_train``/``n_available_test`` (int; for CIFAR-10 first-n subsets, the
        examples in the batch files read, which stop once n are available), ``balanced`` (bool), ``input_shape``
        (list), ``class_counts_train`` (list of int), and the standardisation statistics
        ``feature_mean``/``feature_std`` (float64 numpy arrays of the flattened feature
        shape; not JSON-serialisable: drop or convert them before writing JSON).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    meta: dict


def standardize(
    x_train: np.ndarray, x_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre and scale each feature with training-set statistics.

    x̃ = (x − μ)/s with μ = mean over training examples of each feature and s its population
    standard deviation (s = 0 replaced by 1, so constant features are only centred). Features are
    the flattened trailing axes; the input shapes are preserved.

    Args:
      x_train: training inputs, shape ``(n_train, ...)``, n_train ≥ 1.
      x_test: test inputs with the same trailing shape (may have 0 rows).

    Returns:
      ``(x_train_std, x_test_std, mean, std)``: float32 arrays in the input shapes, and the
      float64 statistics of shape ``(num_features,)``.

    Raises:
      ValueError: if ``x_train`` is empty or the trailing shapes differ.
    """
    if x_train.shape[0] == 0:
        raise ValueError("x_train has no rows; standardisation needs at least one training example.")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"x_train features {x_train.shape[1:]} and x_test features {x_test.shape[1:]} differ; "
            "pass train and test inputs of the same shape."
        )
    flat_train = x_train.reshape(x_train.shape[0], -1).astype(np.float64)
    flat_test = x_test.reshape(x_test.shape[0], -1).astype(np.float64)
    mean = flat_train.mean(axis=0)
    std = flat_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    out_train = ((flat_train - mean) / std).astype(np.float32).reshape(x_train.shape)
    out_test = ((flat_test - mean) / std).astype(np.float32).reshape(x_test.shape)
    return out_train, out_test, mean, std


def balanced_indices(labels: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    """Indices of a class-balanced subset of size n, in the original order.

    Class c contributes its first ⌊n/K⌋ examples, plus one more for the first n mod K classes
    (K = num_classes), so class counts differ by at most one.

    Args:
      labels: int labels, shape ``(N,)``.
      n: subset size, 1 ≤ n ≤ N.
      num_classes: K.

    Returns:
      Sorted int64 indices into ``labels``.

    Raises:
      ValueError: if some class has fewer examples than its share.
    """
    labels = np.asarray(labels)
    base, extra = divmod(n, num_classes)
    chosen = []
    for c in range(num_classes):
        want = base + (1 if c < extra else 0)
        idx = np.flatnonzero(labels == c)
        if idx.size < want:
            raise InputError(
                f"class {c} has only {idx.size} examples but a balanced subset of n={n} needs "
                f"{want}; lower n or set balanced = false."
            )
        chosen.append(idx[:want])
    return np.sort(np.concatenate(chosen))


def _select(labels: np.ndarray, n: int, balanced: bool, num_classes: int, what: str) -> np.ndarray:
    """Indices of the first n examples (or a balanced subset); n = 0 means all."""
    available = labels.shape[0]
    if n == 0:
        return np.arange(available)
    if n > available:
        raise InputError(
            f"data.{what} = {n} exceeds the {available} available examples; use 0 < {what} ≤ "
            f"{available} (or 0 for all)."
        )
    if balanced:
        return balanced_indices(labels, n, num_classes)
    return np.arange(n)


def _check_int(cfg: dict, key: str) -> int:
    value = cfg.get(key, DATA_DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(
            f"data.{key} must be an integer ≥ 0 (0 = all examples), got {value!r}; fix the "
            "[data] table."
        )
    return int(value)


def load_dataset(cfg: dict) -> Dataset:
    """Load and standardise a dataset described by the ``[data]`` table of a run config.

    Steps: read the raw split, keep the first ``n_train``/``n_test`` examples (or a class-balanced
    subset of that size when ``balanced``; 0 keeps all), then standardise every feature with the
    kept training examples' mean and std (see :func:`standardize`; the same statistics map the
    test set). Cohen et al. compute the statistics on all 50k CIFAR-10 images before taking the
    first 5k; here they come from the training examples actually used, so the training inputs
    have exactly mean 0 and std 1 per feature.

    Datasets:
      * ``"mnist1d"``: MNIST-1D generated offline with ``mnist1d.data.make_dataset`` and its
        default arguments (4000 train / 1000 test, 40 features, 10 classes). That function
        reseeds numpy's and Python's global RNGs; their states are saved and restored, so loading
        leaves global randomness untouched. Inputs shape ``(n, 40)``.
      * ``"digits"``: scikit-learn's bundled 8×8 digits (1797 images, 10 classes); the first 1297
        form the training split and the last 500 the test split. Pixels / 16, then standardised.
        Inputs NHWC ``(n, 8, 8, 1)``.
      * ``"cifar10"``: a local copy in the python format (``cifar-10-batches-py/`` or
        ``cifar-10-python.tar.gz``), located by ``path`` or else the environment variable
        ``EOSMODEL_CIFAR10``. Pixels / 255, then standardised over the 3072 features. Inputs NHWC
        ``(n, 32, 32, 3)``; MLPs flatten them.
      * ``"synthetic"``: a Gaussian mixture drawn from ``seed``: ``num_classes`` class means
        μ_c ~ N(0, I), x = μ_y + 0.5·ε, ε ~ N(0, I), y uniform; inputs of shape ``input_shape``;
        ``n_train``/``n_test`` = 0 mean 256/128. For tests and demos.

    Args:
      cfg: the ``[data]`` table: ``name`` (one of :data:`DATASETS`), ``n_train`` (int ≥ 0,
        default 1000), ``n_test`` (int ≥ 0, default 500), ``balanced`` (bool, default False),
        ``path`` (str, cifar10 only), and for synthetic ``seed`` (int, 0), ``num_classes``
        (int ≥ 2, 4), ``input_shape`` (list of positive ints, [16]). Missing keys take
        :data:`DATA_DEFAULTS`.

    Returns:
      A :class:`Dataset` (float32 inputs, int32 labels).

    Raises:
      InputError (a ``ValueError``): unknown name, negative or too large sizes, a class too small
        for a balanced subset, or CIFAR-10 files that are not what they should be (an unreadable
        archive or pickle, a batch of the wrong shape, labels outside 0..9; the message names the
        file).
      FileNotFoundError: CIFAR-10 requested but not found at ``path`` / ``$EOSMODEL_CIFAR10``; the
        message names the expected layout.

    Example:
      >>> ds = load_dataset({"name": "synthetic", "n_train": 40, "n_test": 8, "num_classes": 2,
      ...                    "input_shape": [3]})
      >>> ds.x_train.shape, ds.y_train.dtype.name, ds.num_classes
      ((40, 3), 'int32', 2)
      >>> bool(abs(ds.x_train.mean(0)).max() < 1e-6)
      True
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"cfg must be the [data] table as a dict, got {type(cfg).__name__}.")
    name = cfg.get("name", DATA_DEFAULTS["name"])
    if name not in DATASETS:
        raise InputError(f"data.name = {name!r} is unknown; use one of {', '.join(DATASETS)}.")
    n_train = _check_int(cfg, "n_train")
    n_test = _check_int(cfg, "n_test")
    balanced = bool(cfg.get("balanced", DATA_DEFAULTS["balanced"]))

    if name == "mnist1d":
        x_tr, y_tr, x_te, y_te, num_classes, source = _raw_mnist1d()
    elif name == "digits":
        x_tr, y_tr, x_te, y_te, num_classes, source = _raw_digits()
    elif name == "cifar10":
        root = _resolve_cifar_path(cfg.get("path", "") or "")
        x_tr, y_tr, x_te, y_te, source = _raw_cifar10(root, n_train if not balanced else 0)
        num_classes = 10
    else:
        x_tr, y_tr, x_te, y_te, num_classes, source = _raw_synthetic(
            cfg, n_train or _SYNTHETIC_ALL_TRAIN, n_test or _SYNTHETIC_ALL_TEST
        )

    n_available_train, n_available_test = int(y_tr.shape[0]), int(y_te.shape[0])
    i_tr = _select(y_tr, n_train, balanced, num_classes, "n_train")
    i_te = _select(y_te, n_test, balanced, num_classes, "n_test")
    x_tr, y_tr = x_tr[i_tr], y_tr[i_tr]
    x_te, y_te = x_te[i_te], y_te[i_te]

    x_tr, x_te, mean, std = standardize(x_tr, x_te)
    meta = {
        "source": source,
        "n_train": int(y_tr.shape[0]),
        "n_test": int(y_te.shape[0]),
        "n_available_train": n_available_train,
        "n_available_test": n_available_test,
        "balanced": balanced,
        "input_shape": list(x_tr.shape[1:]),
        "class_counts_train": np.bincount(y_tr, minlength=num_classes).tolist(),
        "standardization": "per-feature, training-set mean and std (std 0 -> 1)",
        "feature_mean": mean,
        "feature_std": std,
    }
    return Dataset(
        x_train=x_tr,
        y_train=y_tr.astype(np.int32),
        x_test=x_te,
        y_test=y_te.astype(np.int32),
        num_classes=int(num_classes),
        name=name,
        meta=meta,
    )


# --------------------------------------------------------------------------- raw loaders


@functools.lru_cache(maxsize=1)
def _mnist1d_cached() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import make_dataset  # local import: only needed for this dataset

    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        data = make_dataset()  # default args, seed 42; no download (unlike get_dataset)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    out = (
        np.asarray(data["x"], np.float32),
        np.asarray(data["y"], np.int32),
        np.asarray(data["x_test"], np.float32),
        np.asarray(data["y_test"], np.int32),
    )
    for a in out:
        a.setflags(write=False)
    return out


def _raw_mnist1d():
    x_tr, y_tr, x_te, y_te = _mnist1d_cached()
    return x_tr, y_tr, x_te, y_te, 10, "mnist1d.data.make_dataset (default args, seed 42)"


def _raw_digits():
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    bunch = load_digits()
    x = (np.asarray(bunch.images, np.float32) / 16.0)[..., None]  # (1797, 8, 8, 1) NHWC
    y = np.asarray(bunch.target, np.int32)
    n_train = x.shape[0] - 500
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10, "sklearn.datasets.load_digits"


def _raw_synthetic(cfg: dict, n_train: int, n_test: int):
    seed = cfg.get("seed", DATA_DEFAULTS["seed"])
    num_classes = cfg.get("num_classes", DATA_DEFAULTS["num_classes"])
    shape = cfg.get("input_shape", DATA_DEFAULTS["input_shape"])
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InputError(
            f"data.num_classes must be an integer ≥ 2 for synthetic data, got {num_classes!r}."
        )
    if isinstance(shape, int):
        shape = [shape]
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise InputError(
            f"data.input_shape must be a non-empty list of positive integers, got {shape!r}; "
            "e.g. [16] or [8, 8, 3]."
        )
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, *shape))

    def draw(n):
        y = rng.integers(0, num_classes, size=n)
        x = means[y] + 0.5 * rng.standard_normal((n, *shape))
        return x.astype(np.float32), y.astype(np.int32)

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return x_tr, y_tr, x_te, y_te, num_classes, f"synthetic gaussian mixture (seed {seed})"


def _resolve_cifar_path(path: str) -> Path:
    """The CIFAR-10 folder or archive from ``path`` or ``$EOSMODEL_CIFAR10``."""
    given = path or os.environ.get(CIFAR10_ENV_VAR, "")
    if not given:
        raise FileNotFoundError(
            f"CIFAR-10 location not given: set data.path or the environment variable "
            f"{CIFAR10_ENV_VAR} to {_CIFAR_LAYOUT}."
        )
    p = Path(given).expanduser()
    candidates = [p, p / _CIFAR_DIR, p / _CIFAR_TAR]
    for c in candidates:
        if c.is_dir() and all((c / b).is_file() for b in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH)):
            return c
        if c.is_file() and c.name.endswith((".tar.gz", ".tgz", ".tar")):
            return c
    raise FileNotFoundError(
        f"no CIFAR-10 found at {str(p)!r} (from {'data.path' if path else CIFAR10_ENV_VAR}); "
        f"expected {_CIFAR_LAYOUT}."
    )


_CIFAR_FIX = "replace it with the file from a fresh copy of cifar-10-python.tar.gz"


def _decode_batch(blob: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (NHWC float in [0, 1]) and labels of one CIFAR-10 python batch (a pickled dict).

    Raises:
      InputError: not a pickle, not a CIFAR-10 batch, or labels outside 0..9 (names ``where``).
    """
    try:
        d = pickle.load(blob, encoding="bytes")
    except Exception as err:  # noqa: BLE001 - a corrupt pickle raises almost anything
        raise file_error(where, "a readable CIFAR-10 batch, a python pickle,", err, _CIFAR_FIX) from None
    try:
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError, OverflowError, IndexError):
        raise InputError(
            f"{where} is not a CIFAR-10 batch (it needs b'data', N x 3072 uint8 pixels, and b'labels', N "
            f"integers); {_CIFAR_FIX}."
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or data.shape[0] != labels.shape[0]:
        raise InputError(
            f"{where} has data of shape {data.shape} and labels of shape {labels.shape}; a CIFAR-10 batch "
            f"has N x 3072 uint8 rows and N labels, so {_CIFAR_FIX}."
        )
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise InputError(
            f"{where} has {bad.size} label(s) outside 0..9 (e.g. {int(labels[bad[0]])} at row {int(bad[0])}); "
            f"CIFAR-10 has 10 classes, so {_CIFAR_FIX}."
        )
    labels = labels.astype(np.int32)
    # Rows are channel-major (1024 R, 1024 G, 1024 B, each row-major 32x32): to NHWC.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    return x, labels


def _raw_cifar10(root: Path, n_needed: int):
    """Training batches (only as many as the first n_needed require; 0 = all) and test batch."""
    if root.is_dir():
        def read(name):
            with open(root / name, "rb") as fh:
                return _decode_batch(fh, str(root / name))
        tar = None
    else:
        try:
            tar = tarfile.open(root, "r:*")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise file_error(root, "a readable tar archive", err, f"replace it; expected {_CIFAR_LAYOUT}") from None

        def read(name):
            member = f"{_CIFAR_DIR}/{name}"
            try:
                fh = tar.extractfile(member)
            except KeyError:
                fh = None
            except (tarfile.TarError, OSError, EOFError) as err:
                raise file_error(root, "a readable tar archive", err, f"replace it; expected {_CIFAR_LAYOUT}") from None
            if fh is None:
                raise FileNotFoundError(
                    f"archive {str(root)!r} lacks {member!r}; expected {_CIFAR_LAYOUT}."
                )
            try:
                blob = fh.read()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
                raise file_error(f"{root}:{member}", "readable (truncated archive?)", err,
                                 f"replace {root}") from None
            return _decode_batch(io.BytesIO(blob), f"{root}:{member}")

    try:
        xs, ys, total = [], [], 0
        for name in _CIFAR_TRAIN_BATCHES:
            x, y = read(name)
            xs.append(x)
            ys.append(y)
            total += y.shape[0]
            if n_needed and total >= n_needed:
                break
        x_te, y_te = read(_CIFAR_TEST_BATCH)
    finally:
        if tar is not None:
            tar.close()
    return np.concatenate(xs), np.concatenate(ys), x_te, y_te, str(root)
