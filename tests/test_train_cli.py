"""`taper train` end to end: accuracy, artifacts, resuming, a user's MNIST data directory."""

import json
import re

import numpy as np
import onnx
import pytest

from test_data import make_mnist_dir


@pytest.fixture
def one_thread(monkeypatch):
    """The trainer's subprocess uses one torch thread: these MLPs are too small for
    intra-op threads to pay, and with two test workers on two cores they oversubscribe."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow
def test_train_digits_mlp_reaches_94_percent_and_resumes(tmp_path, taper, one_thread):
    # digits_mlp reaches 96-98% on the holdout in its 15 epochs (seeds 0-3); an untrained or
    # broken trainer is near 10%
    out = tmp_path / "digits_mlp"
    r = taper("train", "digits_mlp", "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["accuracy"] >= 0.94, m["accuracy"]
    assert (m["train_samples"], m["holdout_samples"], m["epochs"]) == (1437, 360, 15)
    assert m["weight_bits"] == [4, 3, 2] and m["act_bits"] == [3, 2]
    assert m["weight_memory_bits"] == 4 * 64 * 32 + 3 * 32 * 32 + 2 * 32 * 10
    model = onnx.load(out / "model.onnx")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 8, 8]
    assert f"holdout accuracy {m['accuracy']:.2%}" in r.stdout
    assert "torch.onnx" not in r.stdout  # exporter chatter is kept out of the log
    ckpt = (out / "checkpoint.pt").read_bytes()

    # same settings: the checkpoint is reused, nothing retrained
    r = taper("train", "digits_mlp", "--out", out)
    assert r.returncode == 0 and re.search(r"train +up to date", r.stdout), r.stdout
    assert (out / "checkpoint.pt").read_bytes() == ckpt
    # a lost QONNX file is re-exported from the checkpoint, identically
    onnx_bytes = (out / "model.onnx").read_bytes()
    (out / "model.onnx").unlink()
    r = taper("train", "digits_mlp", "--out", out)
    assert r.returncode == 0 and re.search(r"train +up to date", r.stdout), r.stdout
    assert re.search(r"export +running", r.stdout), r.stdout
    assert (out / "model.onnx").read_bytes() == onnx_bytes
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_train_from_a_user_mnist_directory(tmp_path, taper, one_thread):
    make_mnist_dir(tmp_path / "mnist", n_train=400, n_test=120)
    out = tmp_path / "o"
    r = taper(
        "train",
        "tfc_w1a2",
        "--out",
        out,
        "--data-dir",
        tmp_path / "mnist",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    m = json.loads((out / "metrics.json").read_text())
    assert (m["train_samples"], m["holdout_samples"], m["epochs"], m["seed"]) == (400, 120, 2, 3)
    assert str(tmp_path / "mnist") in m["data"]
    assert 0.0 <= m["accuracy"] <= 1.0 and np.isfinite(m["accuracy"])
    # different epochs: the old checkpoint does not match, so it retrains
    r = taper(
        "train",
        "tfc_w1a2",
        "--out",
        out,
        "--data-dir",
        tmp_path / "mnist",
        "--epochs",
        "1",
        "--seed",
        "3",
    )
    assert r.returncode == 0 and re.search(r"train +running", r.stdout), r.stdout
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
