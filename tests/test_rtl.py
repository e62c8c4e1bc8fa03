"""RTL generator: determinism, identifiers, limits; simulation of folding corner cases."""

import numpy as np
import pytest
from test_ir import random_matvec

from compiler.backends.rtl import generate as G
from compiler.backends.rtl import simulate
from compiler.errors import TaperError
from compiler.ir import FIFO, InputEdge, IntType, MatVec, Model, OutputEdge
from compiler.sim import bitexact
from compiler.sim.patterns import READY, Pattern


def chain(rng, specs) -> Model:
    """A model of MatVec layers from (kwargs, pe, simd) specs, types chained."""
    layers, prev_out = [], None
    for i, (kw, pe, simd) in enumerate(specs):
        kw = dict(kw)
        binary_out = kw.pop("binary_out", False)
        layer = random_matvec(rng, **kw)
        if prev_out is not None:
            if layer.xnor:
                assert prev_out == IntType(1, False)
            layer.input_type = prev_out
            from compiler.frontend.lower import accumulator_type

            layer.acc_type = accumulator_type(layer.weights, layer.input_type, layer.xnor)
            if layer.thresholds is None:
                layer.out_type = layer.acc_type
            else:
                t = rng.integers(
                    layer.acc_type.min, layer.acc_type.max + 1, size=layer.thresholds.shape
                )
                layer.thresholds = np.sort(t, axis=1)
        if binary_out:  # one threshold, output {0, 1}: what FINN gives between XNOR layers
            layer.thresholds = layer.thresholds[:, :1]
            layer.out_type, layer.out_bias = IntType(1, False), 0
        layer.name, layer.input, layer.output = (
            f"l{i}",
            "input" if i == 0 else f"l{i - 1}_out",
            f"l{i}_out",
        )
        layer.pe, layer.simd = pe, simd
        layer.check()
        layers.append(layer)
        prev_out = layer.out_type
    first = layers[0]
    edge = InputEdge(
        kind="identity",
        in_shape=(first.in_features,),
        shape=(first.in_features,),
        out_type=first.input_type,
    )
    return Model(
        name="t",
        input_edge=edge,
        layers=layers,
        output_edge=OutputEdge(out_shape=()),
        fifos=[FIFO(layers[1].input, 4, 1)] if len(layers) > 1 else [],
    )


CASES = {
    # upsizing and downsizing width converters, PE = MH, SIMD = MW, single folds
    "dwc": [
        ({"mw": 12, "mh": 6}, 2, 3),
        ({"mw": 6, "mh": 4, "ibits": 2}, 4, 6),
        ({"mw": 4, "mh": 3, "thresholds": False}, 1, 1),
    ],
    "xnor": [
        ({"xnor": True, "mw": 16, "mh": 8, "binary_out": True}, 8, 4),
        ({"xnor": True, "mw": 8, "mh": 4, "binary_out": True}, 2, 8),
        ({"xnor": True, "mw": 4, "mh": 2, "thresholds": False}, 2, 2),
    ],
    "bipolar_out": [
        ({"mw": 8, "mh": 4, "bipolar_out": True}, 1, 8),
        ({"mw": 4, "mh": 4, "wbits": 8, "thresholds": False}, 4, 1),
    ],
}


@pytest.mark.parametrize("name", list(CASES))
def test_rtl_equals_simulator_under_backpressure(name):
    rng = np.random.default_rng(len(name))
    m = chain(rng, CASES[name])
    m.check()
    t = m.layers[0].input_type
    lo, hi = (0, 1) if t.bits == 1 and not t.signed else (t.min, t.max)
    q = rng.integers(lo, hi + 1, size=(40, m.layers[0].in_features))
    if t.bipolar:
        q = np.where(q > 0, 1, -1)
    want = bitexact.run_hardware(m, q)[m.output_tensor]
    for stall in (0, 50):
        r = simulate.run(m, q, stall_percent=stall, seed=stall)
        np.testing.assert_array_equal(r.outputs, want)
    r = simulate.run(m, q, stall_percent=0)
    assert abs(r.ii_cycles - m.ii_cycles) <= 2


def test_rtl_follows_handshake_patterns_and_records_every_handshake():
    rng = np.random.default_rng(11)
    m = chain(rng, [({"mw": 8, "mh": 4}, 2, 4), ({"mw": 4, "mh": 2, "thresholds": False}, 1, 2)])
    m.check()
    t = m.layers[0].input_type
    q = rng.integers(t.min, t.max + 1, size=(12, m.layers[0].in_features))
    in_valid, ready, period = [1, 0, 0], Pattern.random(40, 3, READY), 50
    r = simulate.run(m, q, in_valid=in_valid, out_ready=ready, frame_period=period)
    np.testing.assert_array_equal(r.outputs, bitexact.run_hardware(m, q)[m.output_tensor])
    first, last = m.layers[0], m.layers[-1]
    words_in = first.in_features // G.in_elems(first)
    words_out = last.out_features // last.pe
    assert len(r.input_word_cycles) == len(q) * words_in
    assert len(r.output_word_cycles) == len(q) * words_out
    assert r.input_cycles == r.input_word_cycles[::words_in]
    assert r.last_cycles == r.output_word_cycles[words_out - 1 :: words_out]
    assert all(ready.at(c) for c in r.output_word_cycles)
    # each word is offered at the first valid cycle after the previous handshake (a frame's
    # first word not before f * period) and is accepted then or later
    prev = -1
    for i, c in enumerate(r.input_word_cycles):
        offer = prev + 1
        if i % words_in == 0:
            offer = max(offer, i // words_in * period)
        while not in_valid[offer % 3]:
            offer += 1
        assert c >= offer, (i, c, offer)
        prev = c
    assert all(c >= f * period for f, c in enumerate(r.input_cycles))
    assert r.input_cycles[-1] >= (len(q) - 1) * period


def test_standalone_thresholding_layer_in_rtl():
    from compiler.ir import Thresholding

    rng = np.random.default_rng(7)
    m = chain(rng, [({"mw": 8, "mh": 6, "thresholds": False}, 3, 4)])
    mv = m.layers[0]
    t = np.sort(rng.integers(mv.acc_type.min, mv.acc_type.max + 1, size=(6, 5)), axis=1)
    th = Thresholding(
        name="thr",
        input=mv.output,
        output="thr_out",
        input_type=mv.out_type,
        out_type=IntType(3, True),
        channels=6,
        thresholds=t,
        out_bias=-2,
        pe=2,
    )
    m.layers.append(th)
    m.check()
    q = rng.integers(mv.input_type.min, mv.input_type.max + 1, size=(30, 8))
    want = bitexact.run_hardware(m, q)[m.output_tensor]
    for stall in (0, 40):
        np.testing.assert_array_equal(simulate.run(m, q, stall_percent=stall, seed=3).outputs, want)


def test_generation_is_deterministic(tmp_path):
    m = chain(np.random.default_rng(3), CASES["dwc"])
    G.generate(m, tmp_path / "a")
    G.generate(m, tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "t_top.sv" in files and "filelist.f" in files and "l0_weights.mem" in files
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_weight_words_layout():
    w = np.array([[1, -1, 2, 0], [3, 1, -2, -1]])  # (MH=2, MW=4), INT3
    layer = MatVec(
        name="x",
        input="i",
        output="o",
        input_type=IntType(4, True),
        out_type=IntType(8, True),
        weight_type=IntType(3, True),
        acc_type=IntType(8, True),
        weights=w,
        pe=2,
        simd=2,
    )
    words = G.weight_words(layer)

    # word (nf=0, sf): lanes (pe0: w[0, 2sf], w[0, 2sf+1], pe1: w[1, 2sf], w[1, 2sf+1]), lane 0 low
    def lanes(word):
        v = int(word, 16)
        return [((v >> (3 * k)) & 7) for k in range(4)]

    assert lanes(words[0]) == [1, 7, 3, 1]  # 1, -1, 3, 1
    assert lanes(words[1]) == [2, 0, 6, 7]  # 2, 0, -2, -1


def test_limits_name_layer_and_bound():
    rng = np.random.default_rng(0)
    m = chain(rng, [({"mw": 8, "mh": 4}, 1, 1)])
    m.layers[0].weight_type = IntType(9, True)
    with pytest.raises(
        TaperError, match="layer l0: 9-bit weights, the RTL library takes at most 8"
    ):
        G.generate(m, "/tmp/unused-taper-test")
    m.layers[0].weight_type = IntType(3, True)
    m.layers[0].name = "bad name"
    with pytest.raises(TaperError, match="'bad name' is not a safe Verilog identifier"):
        G.generate(m, "/tmp/unused-taper-test")


@pytest.mark.slow
@pytest.mark.xdist_group("yowasp")  # as test_ecp5's bitstream: YoWASP's Yosys compiled once
def test_synth_reports_layers_and_device(tmp_path, taper):
    import json

    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.recipe import load_recipe
    from compiler.qat.train import train

    train(load_recipe("digits_mlp"), tmp_path, epochs=1, quiet=True)
    # 100k FPS: a few multipliers per layer (PE x SIMD 4, 2, 1); at the recipe's 1M FPS the
    # design is ten times larger for Yosys and the report has the same shape
    m = compile_model(
        tmp_path / "model.onnx", tmp_path / "hw", CompileOptions(target_fps=1e5), quiet=True
    )
    assert any(layer.pe * layer.simd > 1 for layer in m.layers)
    r = taper("synth", tmp_path / "hw", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"lut", "ff", "bram36", "dsp", "layers"}
    assert list(doc["layers"]) == [layer.name for layer in m.layers]
    assert doc["dsp"] == 0  # -nodsp: small multipliers in LUTs
    assert doc["lut"] >= sum(c["lut"] for c in doc["layers"].values()) > 0
    assert (tmp_path / "hw" / "rtl" / f"{m.name}_top.sv").is_file()
    r = taper("synth", tmp_path)
    assert r.returncode == 2 and "not a compiled build directory" in r.stderr


def test_does_not_fit_names_resource_and_limit():
    from compiler.backends.rtl.synth import check_fits

    result = {
        "lut": 60_000,
        "ff": 10,
        "bram36": 1.0,
        "dsp": 0,
        "device": {
            "part": "xc7z020clg400-1",
            "lut": 53_200,
            "ff": 106_400,
            "bram36": 140,
            "dsp": 220,
        },
        "utilization": {"lut": 60_000 / 53_200, "ff": 0.0, "bram36": 0.01, "dsp": 0.0},
    }
    with pytest.raises(
        TaperError, match="does not fit the xc7z020clg400-1: 60,000 LUT needed, 53,200 available"
    ):
        check_fits(result)
