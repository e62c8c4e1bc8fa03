"""taper prune: the pruning criterion, weight transfer, the study and its workers."""

from __future__ import annotations

import json
import os

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from test_search import short_digits_mlp

from compiler.qat import prune as P
from compiler.qat.data import load
from compiler.qat.recipe import load_recipe
from compiler.qat.train import build_model, fit, predict

from conftest import ROOT


def test_keep_indices_drop_the_least_important_neurons_first():
    scores = [np.array([5.0, 0.0, 3.0, 0.0, 9.0]), np.array([1.0, 2.0])]
    keep = P.keep_indices(scores, [0.4, 0.5])
    assert [k.tolist() for k in keep] == [[0, 2, 4], [1]]


def test_transfer_keeps_what_the_surviving_neurons_compute():
    """A neuron whose quantized weights are all zero contributes nothing: removing it and
    copying the rest leaves the network's output unchanged."""
    r = load_recipe("digits_mlp")
    data = load("digits", seed=0, holdout=360)
    base = build_model(r, data, 0)
    fit(r, base, data, 1, 0)  # brevitas creates its learned activation scales in training
    lin0, lin1 = P._weight_layers(base)[:2]
    with torch.no_grad():  # make hidden neurons 3 and 7 of layer 0 dead (zero outgoing weights)
        lin1.weight[:, [3, 7]] = 0.0
    scores = P.importance(base)
    assert scores[0][3] == 0 and scores[0][7] == 0
    keep = P.keep_indices(scores, [2 / 32, 0.0])
    assert 3 not in keep[0] and 7 not in keep[0] and len(keep[1]) == 32
    small = build_model(P.pruned_recipe(r, keep, "small"), data, 0)
    P.transfer(base, small, keep)
    x = data.x_holdout[:100]
    np.testing.assert_array_equal(predict(small, x), predict(base, x))


@pytest.mark.slow
def test_two_workers_share_one_storage_disjoint_and_complete(tmp_path, taper, monkeypatch):
    # what is tested is the sharing, not the accuracy: a short training (2 epochs, 1 epoch of
    # fine-tuning), a loose accuracy bound (every trial is feasible), 4 trials for 2 workers
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    r = taper(
        "prune", short_digits_mlp(tmp_path, 2), "--out", tmp_path / "out", "--trials", "4",
        "--workers", "2", "--storage", url, "--max-accuracy-drop", "0.5",
        "--finetune-epochs", "1", "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (summary,) = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    trials = study.get_trials()
    assert [t.number for t in sorted(trials, key=lambda t: t.number)] == list(range(len(trials)))
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) >= 4 and all(t.state != TrialState.FAIL for t in trials)
    pids = {t.user_attrs["worker_pid"] for t in trials}
    assert 1 <= len(pids) <= 2  # recorded by the workers
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["weight_memory_bits"] < m["base_weight_memory_bits"]
    assert sum(m["hidden"]) < sum(m["base_hidden"])
    # the pruned model compiles and verifies like any other
    # a QONNX file builds into ./build/<stem>: here, not in the repo where others collide
    # (PYTHONPATH: the repo's code, run from another directory)
    monkeypatch.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)
    v = taper(
        "verify", tmp_path / "out" / "model.onnx", "--data", "digits", "--samples", "200",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert v.returncode == 0, v.stderr
    refs = json.loads(v.stdout)["references"]
    assert refs["qonnx"]["mismatches"] == 0 and refs["rtl"]["mismatches"] == 0


@pytest.mark.slow
def test_prune_resumes_from_its_storage(tmp_path, taper):
    recipe = short_digits_mlp(tmp_path, 1)
    args = ["prune", recipe, "--out", tmp_path / "out", "--max-accuracy-drop", "0.5"]
    args += ["--finetune-epochs", "1", "-q"]
    assert taper(*args, "--trials", "2").returncode == 0
    assert taper(*args, "--trials", "3").returncode == 0
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'out' / 'optuna.db'}")
    assert summary.n_trials == 3  # 2 kept, 1 more run
