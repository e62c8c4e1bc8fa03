"""Recurrent networks through the whole flow: the LSTM and GRU recipes trained, exported
(unrolled QONNX), lowered, simulated and generated, bit-exact against Brevitas, qonnx and the
RTL; random small cells from the QAT network (sizes, steps, bits) likewise; the lowering's
threshold derivation against brute force; bad graphs refused with one line."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from compiler.frontend.rnn import thresholds_of


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_reproduce_a_monotone_function_everywhere(seed):
    """count(acc >= T) + qmin equals the level at every accumulator in each row's range,
    levels reached or not (thresholds at lo or past hi)."""
    rng = np.random.default_rng(seed)
    rows = 6
    lo = rng.integers(-300, 0, rows)
    hi = lo + rng.integers(0, 600, rows)
    scale = rng.uniform(0.001, 0.2, rows)
    bias = rng.uniform(-3, 3, rows)
    qmin, qmax = -2, 3

    def level(r, acc):
        return np.clip(np.round(np.tanh(scale[r] * acc + bias[r]) * 2.6), qmin, qmax)

    t = thresholds_of(level, lo, hi, qmin, qmax)
    assert t.shape == (rows, qmax - qmin) and np.all(np.diff(t, axis=1) >= 0)
    for r in range(rows):
        acc = np.arange(lo[r], hi[r] + 1)
        got = (acc[:, None] >= t[r][None, :]).sum(axis=1) + qmin
        assert np.array_equal(got, level(np.full(len(acc), r), acc))


# ---------------------------------------------------------------------------- the recipes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits_lstm", "digits_gru"])
def test_rnn_recipe_bit_exact_against_qonnx_brevitas_and_rtl(tmp_path, name):
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.recipe import load_recipe
    from compiler.qat.train import train
    from compiler.verify import verify

    r = load_recipe(name)
    # exactness does not depend on accuracy: a short training keeps CI fast
    train(r, tmp_path, epochs=2, quiet=True)
    m = compile_model(
        tmp_path / "model.onnx", tmp_path / "hw", CompileOptions(recipe=name), quiet=True
    )
    cell, head = m.layers
    assert (cell.kind, cell.cell, cell.steps, cell.hidden) == ("recurrent", r.arch.cell, 8, 32)
    assert cell.weight_type.bits == r.arch.bits.weight and head.kind == "matvec"
    assert m.fps >= r.target.fps
    v = verify(tmp_path / "hw", samples=1000, against=["qonnx", "brevitas", "finn"])
    vr = verify(tmp_path / "hw", samples=200, against=["rtl"])
    assert v.references["finn"].skipped == "FINN has no recurrent layer"
    for ref in ("qonnx", "brevitas"):
        res = v.references[ref]
        assert res.skipped is None and res.mismatches == 0, (ref, res.first)
    rtl = vr.references["rtl"]
    assert rtl.skipped is None and rtl.mismatches == 0, rtl.first
    assert rtl.measured["ii_cycles"] == m.ii_cycles
    assert rtl.cycle_model_exact, rtl.cycle_model


# ---------------------------------------------------------------------------- random cells

# each example builds, exports and compiles a random network (~5 s) and verilates it (~15 s)
EXAMPLES = int(os.environ.get("TAPER_RNN_PROPERTY_EXAMPLES", "3"))


def random_rnn_network(seed: int):
    """A random untrained QAT recurrent network (cell, steps, features, stacked sizes,
    quantizer, every tensor's bits, slope), its input shape and a description."""
    import torch

    from compiler.qat.arch import build
    from compiler.qat.recipe import Recipe

    rng = np.random.default_rng(seed)
    quantizer = str(rng.choice(["hitnet", "uniform"]))
    bits = {
        "weight": 2 if quantizer == "hitnet" else int(rng.integers(2, 5)),
        "gate": int(rng.integers(1, 4)),
        "cand": int(rng.integers(2, 4)),
        "cell": int(rng.integers(3, 6)),
        "cell_act": int(rng.integers(2, 4)),
        "hidden": int(rng.integers(2, 4)),
        "head": int(rng.integers(2, 5)),
    }
    arch = {
        "type": "rnn",
        "cell": str(rng.choice(["lstm", "gru"])),
        "hidden": [int(h) for h in rng.integers(1, 7, size=int(rng.integers(1, 3)))],
        "slope": float(rng.choice([0.75, 1.0, 2.0, 3.0])),
        "quantizer": quantizer,
        "bits": bits,
    }
    recipe = Recipe.model_validate(
        {"name": "rand", "arch": arch, "input": {"bits": int(rng.integers(1, 9))},
         "dataset": {"name": "digits"}}
    )  # fmt: skip
    shape = (1, int(rng.integers(1, 7)), int(rng.integers(1, 7)))
    torch.manual_seed(seed)
    model = build(recipe, shape, int(rng.integers(2, 6)))
    with torch.no_grad():  # larger weights and biases: every gate level occurs
        for name, p in model.named_parameters():
            if name.endswith(("b", "bn", "bias")):
                p.uniform_(-1.5, 1.5)
            else:
                p.mul_(3.0)
    model.eval()
    return model, shape, f"{arch} input {recipe.input.bits} bits, shape {shape}"


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    # no shrinking: an example costs ~20 s, and the failure names the network anyway
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 10**6))
def test_random_cell_is_bit_exact_against_brevitas_qonnx_and_rtl(tmp_path_factory, seed):
    from compiler import ir
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.export_rnn import export_rnn
    from compiler.qat.train import predict
    from compiler.references.base import output_to_int
    from compiler.sim import bitexact
    from compiler.verify import make_inputs, verify

    d = tmp_path_factory.mktemp("rnn")
    model, shape, spec = random_rnn_network(seed)
    export_rnn(model, d / "rnn.onnx")
    m = compile_model(d / "rnn.onnx", d / "hw", CompileOptions(target_fps=1e5), quiet=True)
    v = verify(d / "hw", samples=200, against=["qonnx", "rtl"], quiet=True)
    for ref, res in v.references.items():
        assert res.mismatches == 0, (spec, ref, res.first)
    assert v.references["rtl"].measured["ii_cycles"] == m.ii_cycles, spec
    # Brevitas in eval mode (float32, as the brevitas reference runs it) on the same inputs
    x, _ = make_inputs(m, 200, None)
    q = bitexact.quantize_input(m.input_edge, x).reshape(len(x), -1)
    ours = bitexact.run_hardware(m, q)[m.output_tensor]
    ref = np.round(output_to_int(m, predict(model, x)))
    assert np.array_equal(ours, ref), spec
    assert ir.load(d / "hw") == m


# ---------------------------------------------------------------------------- bad input


def _edited_export(tmp_path, edit):
    """A small random network's export, then ``edit(onnx ModelProto)`` applied."""
    import onnx
    from onnx import numpy_helper

    from compiler.qat.export_rnn import export_rnn

    model, _, _ = random_rnn_network(7)
    path = tmp_path / "rnn.onnx"
    export_rnn(model, path)
    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    edit(proto, inits, numpy_helper)
    onnx.save(proto, str(path))
    return path


def _set(name, value):
    def edit(proto, inits, nh):
        inits[name].CopyFrom(nh.from_array(np.asarray(value, dtype=np.float32), name))

    return edit


def _meta(value):
    def edit(proto, inits, nh):
        next(p for p in proto.metadata_props if p.key == "taper.rnn").value = value

    return edit


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            _set("rnn0.hidden.scale", 0.3),
            "rnn0.hidden: scale [0.30000001192092896] is not one power of two",
        ),
        (_set("rnn0.slope", -1.0), "layer rnn0: slope -1.0, expected a positive number"),
        (_meta("[1, 2]"), "metadata taper.rnn: not a JSON object"),
        (_meta('{"cell": "rnn"}'), "metadata taper.rnn: expected cell, steps, features"),
    ],
)
def test_a_bad_rnn_graph_is_one_line_exit_2_nothing_written(tmp_path, taper, edit, message):
    path = _edited_export(tmp_path, edit)
    r = taper("compile", path, "--out", tmp_path / "hw")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "hw" / "ir.json").exists()


def test_hls4ml_refuses_a_recurrent_model_in_one_line(tmp_path, taper):
    path = _edited_export(tmp_path, lambda *a: None)
    r = taper("compile", path, "--out", tmp_path / "hw", "--backend", "hls4ml")
    assert r.returncode == 2, r.stderr
    assert "a recurrent network: hls4ml's LSTM/GRU take float Keras/PyTorch layers" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
