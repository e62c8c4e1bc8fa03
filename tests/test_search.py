"""taper search: exact allocation, budgets, and the whole search on a small model."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from compiler.errors import TaperError
from compiler.qat import search as S
from compiler.qat.recipe import Recipe, recipe_path

from conftest import ROOT


@pytest.mark.parametrize("seed", range(20))
def test_allocation_is_exact(seed):
    """Dynamic programming finds what brute force over every allocation finds."""
    rng = np.random.default_rng(seed)
    n_layers, n_cands = rng.integers(1, 5), rng.integers(1, 5)
    sens = rng.random((n_layers, n_cands)).round(3)
    costs = rng.integers(1, 20, size=(n_layers, n_cands)).astype(float)
    budget = float(rng.integers(1, 20 * n_layers))
    best = None
    for choice in itertools.product(range(n_cands), repeat=n_layers):
        c = sum(costs[i, k] for i, k in enumerate(choice))
        s = sum(sens[i, k] for i, k in enumerate(choice))
        if c <= budget and (best is None or s < best[0] - 1e-12):
            best = (s, choice)
    got = S.allocate(sens, costs, budget)
    if best is None:
        assert got is None
    else:
        s = sum(sens[i, k] for i, k in enumerate(got))
        assert sum(costs[i, k] for i, k in enumerate(got)) <= budget
        assert s == pytest.approx(best[0])


@pytest.mark.parametrize("text", ["weight_bits", "lut=-3", "flops=10", "weight_bits=x"])
def test_bad_budget(text):
    with pytest.raises(TaperError, match="--budget"):
        S.parse_budget(text)


def short_digits_mlp(tmp_path, epochs: int) -> Path:
    """models/digits_mlp.yaml with fewer epochs (a search or a prune trains it many times)."""
    doc = yaml.safe_load(recipe_path("digits_mlp").read_text())
    doc["train"]["epochs"] = epochs
    path = tmp_path / "digits_mlp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_search_writes_a_recipe_within_budget_and_its_pareto_plot(tmp_path, taper, monkeypatch):
    # the search trains the recipe about ten times (sensitivity, trials, baselines, retraining):
    # one epoch each; what is checked is the allocation, the budget and the artifacts
    out = tmp_path / "s"
    r = taper("search", short_digits_mlp(tmp_path, 1), "--out", out,
              "--budget", "weight_bits=12000", "--trials", "4", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    recipe = Recipe.model_validate(yaml.safe_load((out / "recipe.yaml").read_text()))
    assert recipe.weight_bits == m["bits"]
    widths = [64, 32, 32, 10]
    assert sum(widths[i] * widths[i + 1] * b for i, b in enumerate(m["bits"])) == m["cost"]
    assert m["cost"] <= 12000
    assert set(m["baselines"]) == {"uniform", "progressive"}
    assert m["baselines"]["uniform"]["bits"] == [3, 3, 3]  # 4 bits would be 13,568
    assert len(m["trials"]) >= 4
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # a QONNX file builds into ./build/<stem>: here, not in the repo where others collide
    # (PYTHONPATH: the repo's code, run from another directory)
    monkeypatch.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)
    v = taper(
        "verify", out / "model.onnx", "--data", "digits", "--samples", "200", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["references"]["qonnx"]["mismatches"] == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["search", "digits_mlp", "--budget", "flops=3"],
            "--budget 'flops=3': expected KIND=VALUE",
        ),
        (
            ["prune", "digits_mlp", "--storage", "nosuch://db"],
            "--storage nosuch://db: cannot open",
        ),
        (["prune", "nosuch_recipe"], "unknown recipe 'nosuch_recipe'"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, taper, args, message):
    out = tmp_path / "out"
    r = taper(*args, "--out", out, "-q")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists()
