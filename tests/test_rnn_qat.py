"""HitNet recurrent QAT (issue 16): quantizers, recipes, and the unrolled QONNX export against
the Brevitas model in eval mode, exact in every quantized intermediate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from qonnx.core.modelwrapper import ModelWrapper

from compiler.errors import TaperError
from compiler.qat.arch import build
from compiler.qat.export_rnn import export_rnn
from compiler.qat.hitnet import ActQuant, cell_spec, gate_spec, tanh_spec, ttq, uniform_weights
from compiler.qat.recipe import RECIPE_DIR, Recipe, load_recipe
from compiler.references.qonnx import execute

# the trace keys of arch/rnn.py and the export's per-step tensor names
LSTM_KEYS = ("i", "f", "o", "g", "c", "tc", "h")
GRU_KEYS = ("r", "z", "rh", "n", "h")


def _recipe(cell: str, hidden: list[int], **arch) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "t",
            "arch": {"type": "rnn", "cell": cell, "hidden": hidden, **arch},
            "dataset": {"name": "digits"},
        }
    )


def _compare(model, x: np.ndarray, path: Path) -> None:
    """Brevitas eval == qonnx (float64) in every quantized step tensor; logits close with
    the same argmax."""
    model.eval()
    export_rnn(model, path)
    mw = ModelWrapper(str(path))
    produced = {o for n in mw.graph.node for o in n.output}
    trace: list[dict] = []
    with torch.no_grad():
        y = model(torch.from_numpy(x).double(), trace).numpy()
    keys = LSTM_KEYS if model.arch.cell == "lstm" else GRU_KEYS
    names = ["xq", "y"]
    for li in range(len(trace)):
        for k in keys:
            names += [
                f"rnn{li}.t{s}.{k}" for s in range(model.steps) if f"rnn{li}.t{s}.{k}" in produced
            ]
    got = execute(mw, x, names)
    assert np.array_equal(got["xq"], trace[0]["xq"].reshape(len(x), -1).numpy())
    checked = 0
    for li, t in enumerate(trace):
        for k in keys:
            for s in range(model.steps):
                name = f"rnn{li}.t{s}.{k}"
                if name in got:
                    want = t[k][s].numpy()
                    assert np.array_equal(got[name], want), (name, got[name], want)
                    checked += 1
    assert checked >= len(trace) * model.steps * 4
    np.testing.assert_allclose(got["y"], y, rtol=1e-6, atol=1e-9)
    assert np.array_equal(got["y"].argmax(1), y.argmax(1))
    meta = json.loads({p.key: p.value for p in mw.model.metadata_props}["taper.rnn"])
    assert meta == {
        "version": 1,
        "cell": model.arch.cell,
        "steps": model.steps,
        "features": model.features,
        "hidden": list(model.arch.hidden),
        "classes": model.n_classes,
    }


def _random_case(rng: np.random.Generator, cell: str) -> tuple[Recipe, tuple[int, ...]]:
    quantizer = str(rng.choice(["hitnet", "uniform"]))
    bits = {
        "weight": 2 if quantizer == "hitnet" else int(rng.integers(2, 5)),
        "gate": int(rng.integers(1, 5)),
        "cand": int(rng.integers(2, 5)),
        "cell": int(rng.integers(3, 7)),
        "cell_act": int(rng.integers(2, 5)),
        "hidden": int(rng.integers(2, 5)),
        "head": int(rng.integers(2, 5)),
    }
    hidden = [int(h) for h in rng.integers(1, 10, size=int(rng.integers(1, 3)))]
    r = Recipe.model_validate(
        {
            "name": "rand",
            "arch": {
                "type": "rnn",
                "cell": cell,
                "hidden": hidden,
                "slope": float(rng.choice([0.5, 1.0, 2.0, 3.7])),
                "quantizer": quantizer,
                "bits": bits,
            },
            "input": {"bits": int(rng.integers(1, 9))},
            "dataset": {"name": "digits"},
        }
    )
    return r, (1, int(rng.integers(1, 7)), int(rng.integers(1, 8)))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("case", range(6))
def test_random_cells_export_exact(tmp_path, cell, case):
    rng = np.random.default_rng(1000 * case + (cell == "gru"))
    recipe, shape = _random_case(rng, cell)
    torch.manual_seed(case)
    model = build(recipe, shape, int(rng.integers(2, 6)))
    with torch.no_grad():  # biases away from 0 so that every gate level occurs
        for name, p in model.named_parameters():
            if name.endswith(("b", "bn", "bias")):
                p.uniform_(-1.5, 1.5)
            else:
                p.mul_(3.0)
    x = (rng.integers(0, 256, size=(40, *shape)) / 256.0).astype(np.float32)
    _compare(model, x, tmp_path / "m.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits_lstm", "digits_gru"])
def test_trained_digits_recipe_exports_exact(tmp_path, name):
    from compiler.qat.train import TrainSettings, export_checkpoint, train_checkpoint

    recipe = load_recipe(name)
    m = train_checkpoint(recipe, tmp_path, TrainSettings.resolve(recipe), quiet=True)
    assert m["accuracy"] > 0.8, m["accuracy"]
    assert m["weight_memory_bits"] == recipe.weight_memory_bits((1, 8, 8), 10)
    onnx_path = export_checkpoint(tmp_path, tmp_path / "export")
    from compiler.qat.data import load
    from compiler.qat.train import trained_model

    model, _, _ = trained_model(tmp_path)
    data = load("digits", seed=recipe.seed, holdout=recipe.dataset.holdout)
    _compare(model, data.x_holdout[:200], onnx_path)


# ---------------------------------------------------------------------------- quantizers


def test_ttq_one_alpha_per_gate_block_straight_through():
    torch.manual_seed(0)
    w = torch.randn(6, 8) * torch.tensor([1.0, 1, 3, 3, 0.1, 0.1, 2, 2])
    w.requires_grad_(True)
    wq, scale = ttq(w, n_blocks=4)
    for blk in range(4):
        cols = slice(2 * blk, 2 * blk + 2)
        a = w[:, cols].detach().abs()
        delta = 0.7 * a.mean()
        alpha = a[a > delta].mean()
        tern = torch.sign(w[:, cols].detach()) * (a > delta)
        # exactly ternary times the block's one alpha (alpha itself up to summation order)
        assert torch.equal(wq[:, cols].detach(), scale[cols] * tern)
        assert torch.all(scale[cols] == scale[2 * blk])
        torch.testing.assert_close(scale[2 * blk], alpha)
    wq.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_uniform_ternary_zeroes_below_half_the_max():
    w = torch.tensor([[0.9, -0.2], [-1.0, 0.51], [0.49, 0.3]])
    wq, scale = uniform_weights(w, 2, n_blocks=1)
    assert torch.equal(wq, torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]]))
    assert torch.all(scale == 1.0)


def test_btq_deterministic_in_eval_stochastic_with_the_right_mean_in_training():
    q = ActQuant(tanh_spec(2), "btq")
    x = torch.tensor([0.3, 0.5, -0.5, 1.5, -2.0, 0.7], dtype=torch.float64)
    q.eval()
    want = torch.tensor([0.0, 0.0, -0.0, 1.0, -1.0, 1.0], dtype=torch.float64)  # half to even
    assert torch.equal(q(x), want) and torch.equal(q(x), want)
    q.train()
    torch.manual_seed(0)
    xs = torch.full((200_000,), 0.3)
    out = q(xs)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert abs(out.mean().item() - 0.3) < 0.01
    # the round baseline has no noise in training either
    r = ActQuant(tanh_spec(2), "round").train()
    assert torch.equal(r(xs), torch.zeros_like(xs))


@pytest.mark.parametrize(
    "spec,scale,levels",
    [
        (gate_spec(1), 1.0, (0, 1)),
        (gate_spec(2), 0.5, (0, 3)),
        (tanh_spec(2), 1.0, (-1, 1)),
        (tanh_spec(4), 0.25, (-7, 7)),
        (cell_spec(3), 1.0, (-4, 3)),
        (cell_spec(5), 0.25, (-16, 15)),
    ],
)
def test_activation_scales_are_the_contracts_powers_of_two(spec, scale, levels):
    q = ActQuant(spec, "round").eval()
    x = torch.linspace(-9, 9, 1001, dtype=torch.float64)
    out = q(x)
    assert float(q.quant.act_quant.scale()) == scale == spec.scale
    assert spec.int_range == levels
    assert out.min().item() == levels[0] * scale and out.max().item() == levels[1] * scale


# ---------------------------------------------------------------------------- recipes


def test_rnn_recipes_validate_and_report_bits():
    for name in ("digits_lstm", "digits_gru", "mnist_lstm", "mnist_gru"):
        r = load_recipe(name)
        assert r.arch.type == "rnn" and r.quant is None
        assert r.weight_bits == [r.arch.bits.weight] * len(r.arch.hidden) + [r.arch.bits.head]
        assert r.act_bits == [r.arch.bits.hidden] * len(r.arch.hidden)


def _write(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load((RECIPE_DIR / "digits_lstm.yaml").read_text())
    edit(doc)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


BAD = [
    (
        lambda d: d["arch"]["bits"].update(cell=2),
        "field 'arch.bits.cell': Input should be greater than or equal to 3, got 2",
    ),
    (
        lambda d: d["arch"]["bits"].update(hidden=1),
        "field 'arch.bits.hidden': Input should be greater than or equal to 2, got 1",
    ),
    (
        lambda d: d["arch"]["bits"].update(weight=4),
        "arch.bits.weight: HitNet's weight quantizer is ternary (2 bits), got 4",
    ),
    (lambda d: d["arch"].update(cell="rnn"), "field 'arch.cell': Input should be 'lstm' or 'gru'"),
    (lambda d: d["arch"].update(hidden=[]), "field 'arch.hidden': List should have at least 1"),
    (lambda d: d["arch"].update(slope=0), "field 'arch.slope': Input should be greater than 0"),
    (lambda d: d["arch"]["bits"].update(hiden=2), "unknown field 'arch.bits.hiden'"),
    (
        lambda d: d.update(
            quant={
                "weights": {"policy": "uniform", "bits": 2},
                "activations": {"policy": "uniform", "bits": 2},
            }
        ),
        "quant: not used by arch.type rnn (its bits are in arch.bits)",
    ),
    (lambda d: d["arch"].update(type="lstm"), "field 'arch.type': expected 'fc', 'cnn' or 'rnn'"),
]


@pytest.mark.parametrize("edit,message", BAD)
def test_bad_rnn_recipe_is_one_line(tmp_path, edit, message):
    with pytest.raises(TaperError) as e:
        load_recipe(_write(tmp_path, edit))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_fc_recipe_still_needs_quant(tmp_path):
    doc = yaml.safe_load((RECIPE_DIR / "digits_mlp.yaml").read_text())
    del doc["quant"]
    p = tmp_path / "noquant.yaml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(TaperError, match="field 'quant': Field required"):
        load_recipe(p)


def test_float_baseline_trains_but_does_not_export(tmp_path):
    r = _recipe("gru", [4], quantizer="float")
    model = build(r, (1, 3, 4), 3)
    assert model(torch.rand(2, 1, 3, 4)).shape == (2, 3)
    with pytest.raises(TaperError) as e:
        export_rnn(model, tmp_path / "m.onnx")
    assert "\n" not in str(e.value) and "float" in str(e.value)
    assert not (tmp_path / "m.onnx").exists()
