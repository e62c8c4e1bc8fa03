"""Generated CNN accelerators (sliding windows, convolutions as MatVecs over n_vectors output
pixels, max pooling, width converters between foldings) in Verilator, bit for bit against
the bit-accurate simulator under random input stalls and output backpressure; one of them
through Yosys.

The models are built here directly in the IR with random weights; each threshold is drawn
from the accumulators the layer really computes on the test inputs, so that every output
level occurs and a wrong window element or pixel order changes the outputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compiler.backends.rtl import cost as C
from compiler.backends.rtl import generate as G
from compiler.backends.rtl import simulate
from compiler.errors import TaperError
from compiler.frontend.lower import accumulator_type
from compiler.ir import (
    FIFO,
    InputEdge,
    IntType,
    Layer,
    MatVec,
    MaxPool,
    Model,
    OutputEdge,
    SlidingWindow,
    Thresholding,
)
from compiler.references.rtl import cycle_difference
from compiler.sim import bitexact
from compiler.sim.patterns import READY, VALID, Pattern

INT4, UINT2, BIN = IntType(4, True), IntType(2, False), IntType(1, False)
BIPOLAR = IntType(1, False, True)
FRAMES = 8


class Net:
    """Builds a chain layer by layer, keeping the activations of inputs ``q`` (frames,
    elements) so that thresholds can be drawn from the accumulators each layer computes."""

    def __init__(self, rng: np.random.Generator, in_type: IntType, q: np.ndarray):
        self.rng, self.in_type, self.q = rng, in_type, q
        self.layers: list[Layer] = []
        self.x, self.t = q, in_type

    def add(self, layer: Layer) -> Layer:
        i = len(self.layers)
        layer.name, layer.output = f"l{i}", f"l{i}_out"
        layer.input = "input" if i == 0 else self.layers[-1].output
        layer.check()
        self.x = bitexact.run_layer(layer, self.x)
        self.t = layer.out_type
        self.layers.append(layer)
        return layer

    def window(self, d: int, c: int, k: int, s: int, pad: int, simd: int, pad_value: int = 0):
        return self.add(
            SlidingWindow(
                "",
                "",
                "",
                self.t,
                self.t,
                ifm_dim=d,
                channels=c,
                kernel=k,
                stride=s,
                pad=pad,
                pad_value=pad_value,
                simd=simd,
            )  # fmt: skip
        )

    def pool(self, d: int, c: int, k: int, pe: int):
        return self.add(MaxPool("", "", "", self.t, self.t, ifm_dim=d, channels=c, kernel=k, pe=pe))

    def _thresholds(self, acc: np.ndarray, channels: int, steps: int) -> np.ndarray:
        """Per channel, ``steps`` sorted values drawn from the accumulators it computed."""
        acc = acc.reshape(-1, channels)
        picks = [self.rng.choice(acc[:, ch], size=steps) for ch in range(channels)]
        return np.sort(np.array(picks, dtype=np.int64), axis=1)

    def matvec(
        self, mw: int, mh: int, w_t: IntType, pe: int, simd: int, n_vectors: int = 1,
        steps: int = 0, out: IntType | None = None, xnor: bool = False,
    ):  # fmt: skip
        if xnor or w_t.bipolar:
            w = self.rng.integers(0, 2, size=(mh, mw))
            w = w if xnor else 2 * w - 1
        else:
            w = self.rng.integers(w_t.min, w_t.max + 1, size=(mh, mw))
        acc_t = accumulator_type(w, self.t, xnor)
        layer = MatVec(
            "", "", "", self.t, acc_t, weight_type=w_t, acc_type=acc_t, weights=w,
            xnor=xnor, pe=pe, simd=simd, n_vectors=n_vectors,
        )  # fmt: skip
        if steps:
            layer.thresholds = self._thresholds(bitexact.run_layer(layer, self.x), mh, steps)
            layer.out_type = out
            layer.out_bias = -1 if out.bipolar else 0
        return self.add(layer)

    def thresholding(self, channels: int, steps: int, out: IntType, pe: int, n_vectors: int):
        t = self._thresholds(self.x, channels, steps)
        bias = -1 if out.bipolar else 0
        return self.add(
            Thresholding(
                "",
                "",
                "",
                self.t,
                out,
                channels=channels,
                thresholds=t,
                out_bias=bias,
                pe=pe,
                n_vectors=n_vectors,
            )  # fmt: skip
        )

    def model(self, name: str, shape: tuple[int, ...]) -> Model:
        edge = InputEdge(kind="identity", in_shape=shape, shape=shape, out_type=self.in_type)
        m = Model(
            name=name,
            input_edge=edge,
            layers=self.layers,
            output_edge=OutputEdge(out_shape=()),
            fifos=[FIFO(x.input, 4, x.in_width) for x in self.layers[1:]],
        )
        m.check()
        return m


def int4_cnn() -> tuple[Model, np.ndarray]:
    """10x10x3 INT4 -> conv 3x3 pad 1 (pad value -3: a signed code) -> 8 ch UINT2 -> maxpool
    2 (drops nothing; 5x5) -> conv 3x3 stride 2 (2x2) -> 6 ch UINT2 -> FC 24 -> 4 (raw
    accumulators). Foldings put width converters on both sides of every window and pool."""
    rng = np.random.default_rng(1)
    q = rng.integers(-8, 8, size=(FRAMES, 10 * 10 * 3))
    n = Net(rng, INT4, q)
    n.window(10, 3, 3, 1, 1, simd=3, pad_value=-3)
    n.matvec(27, 8, IntType(3, True), pe=4, simd=3, n_vectors=100, steps=3, out=UINT2)
    n.pool(10, 8, 2, pe=8)  # 4 -> 8 elements per word
    n.window(5, 8, 3, 2, 0, simd=2)  # 8 -> 2
    n.matvec(72, 6, IntType(2, True), pe=3, simd=8, n_vectors=4, steps=3, out=UINT2)  # 2 -> 8
    n.matvec(24, 4, IntType(4, True), pe=2, simd=6)  # 3 -> 6
    return n.model("cnn_int4", (10, 10, 3)), q


def binary_cnn() -> tuple[Model, np.ndarray]:
    """6x6x2 bipolar -> conv 3x3 pad 1 (pad value -1: code 0) -> raw accumulators ->
    Thresholding to bipolar -> maxpool 2 on bipolar -> conv 2x2 (bipolar input, INT2 weights)
    -> binary {0, 1} -> maxpool 2 on binary -> XNOR FC 6 -> 3 (popcounts)."""
    rng = np.random.default_rng(2)
    q = 2 * rng.integers(0, 2, size=(FRAMES, 6 * 6 * 2)) - 1
    n = Net(rng, BIPOLAR, q)
    n.window(6, 2, 3, 1, 1, simd=1, pad_value=-1)
    n.matvec(18, 4, IntType(2, True), pe=2, simd=2, n_vectors=36)  # 1 -> 2
    n.thresholding(4, 1, BIPOLAR, pe=1, n_vectors=36)  # 2 -> 1
    n.pool(6, 4, 2, pe=4)  # 1 -> 4: 3x3
    n.window(3, 4, 2, 1, 0, simd=2)  # 4 -> 2: 2x2 windows
    n.matvec(16, 6, IntType(2, True), pe=3, simd=4, n_vectors=4, steps=1, out=BIN)  # 2 -> 4
    n.pool(2, 6, 2, pe=6)  # 3 -> 6
    n.matvec(6, 3, BIN, pe=1, simd=6, xnor=True)
    return n.model("cnn_bin", (6, 6, 2)), q


MODELS = {"int4": int4_cnn, "binary": binary_cnn}


def test_models_exercise_what_they_claim():
    """Width converters before windows and pools, every output level used, the pad values
    as the stream encodes them."""
    for build in MODELS.values():
        m, q = build()
        env = bitexact.run_hardware(m, q, keep=True)
        prev = m.layers[0].in_elems
        converters = 0
        for x in m.layers:
            converters += prev != x.in_elems and x.kind in ("window", "maxpool")
            prev = x.out_elems
            if x.out_type.bits <= 2 and x.kind in ("matvec", "thresholding"):
                levels = np.unique(env[x.output])
                assert len(levels) == (2 if x.out_type.bits == 1 else 4), (x.name, levels)
        assert converters >= 2
    m, _ = int4_cnn()
    assert G.window_params(m.layers[0], "")["PAD_VALUE"] == 0b1101  # -3 in 4 bits
    m, _ = binary_cnn()
    assert G.window_params(m.layers[0], "")["PAD_VALUE"] == 0  # bipolar -1
    assert G.maxpool_params(m.layers[3], "")["SIGNED"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_cnn_rtl_is_bit_exact_under_stalls(name):
    """Bit for bit and, on every handshake, at the cycle model's cycle."""
    m, q = MODELS[name]()
    want = bitexact.run_hardware(m, q)[m.output_tensor]
    patterns = [
        {},  # never stalled
        {"in_valid": Pattern.random(40, 1, VALID), "out_ready": Pattern.random(50, 2, READY)},
        {"in_valid": [1, 1, 0], "out_ready": [0, 0, 0, 1]},  # output-bound: back pressure
    ]
    for pat in patterns:
        r = simulate.run(m, q, **pat)
        np.testing.assert_array_equal(r.outputs, want, err_msg=str(pat))
        # the cycle model (sim/cycles.py) gives every handshake's cycle, as verify checks
        assert cycle_difference(m, r, **pat) is None, pat
        if not pat:
            # never stalled, the slowest stage sets the pace
            assert abs(r.ii_cycles - m.ii_cycles) <= 2, (r.ii_cycles, m.ii_cycles)
    # the compare can fail: the reference of an IR with another pad value, or one weight of
    # the first convolution changed, differs from what this RTL computes
    win, conv = m.layers[0], m.layers[1]
    other = -win.pad_value if win.input_type.bipolar else win.pad_value + 1
    w = conv.weights.copy()
    w[0, 4] += 1 if w[0, 4] < conv.weight_type.max else -1  # still of the weight type
    for i, changed in (
        (0, dataclasses.replace(win, pad_value=other)),
        (1, dataclasses.replace(conv, weights=w)),
    ):
        layers = list(m.layers)
        layers[i] = changed
        wrong = bitexact.run_hardware(dataclasses.replace(m, layers=layers), q)
        assert not np.array_equal(wrong[m.output_tensor], r.outputs), changed.name


def test_folding_search_folds_windows_and_pools():
    """A window folds by SIMD and a pool by PE (divisors of the channels); the search reaches
    a target II over the chain, takes the fastest folding that fits a board, and on an
    unlimited board reaches the chain's floor (the windows' max(in, out) elements / C)."""
    m, _ = int4_cnn()
    w0 = m.layers[0]
    assert C.foldings(w0) == [(1, 1), (1, 3)]
    assert C.foldings(m.layers[2]) == [(p, 1) for p in (1, 2, 4, 8)]
    assert C.refold(w0, 1, 1).cycles == 2700 and C.refold(m.layers[2], 2, 1).cycles == 400
    for target in (3000, 1000, 900):
        f = C.choose_folding(m, 53_200, 140, target)
        assert f.ii <= target and f.fits
        dataclasses.replace(m, layers=f.layers).check()
    with pytest.raises(C.Unreachable) as e:
        C.choose_folding(m, 53_200, 140, 899)  # the first window: 900 cycles at SIMD 3
    assert (e.value.layer, e.value.ii) == ("l0", 900)
    f = C.choose_folding(m, 1e9, 1e4, None)
    # the floor; every other stage at its cheapest folding within it (the second window:
    # 288 cycles at SIMD 1)
    assert f.ii == 900 and [x.simd for x in f.layers if x.kind == "window"] == [3, 1]
    small = C.choose_folding(m, 1_500, 10, None)  # II 900 is estimated at ~1,300 LUT
    assert small.fits and small.ii > f.ii
    assert small.estimate["lut"] <= C.LUT_MARGIN * 1_500


def test_cnn_estimate_counts_line_buffers_and_pools():
    """The window's line buffer in LUT RAM or block RAM as the generator puts it (a deep one
    in block RAM, in LUTs when the board has none left); the pools cost LUTs only."""
    m, _ = int4_cnn()
    big = dataclasses.replace(m.layers[0], ifm_dim=64, channels=64, simd=8, input_type=INT4)
    assert G.memory_shapes(big, G.window_params(big, "")) == {"RAM_STYLE": (4 * 64 * 8, 32)}
    one = dataclasses.replace(m, layers=[big], fifos=[])
    free, none = C.estimate(one), C.estimate(one, bram36_limit=0)
    assert free["bram36"] == 2.0 and none["bram36"] == 0  # 64 Kbit: 4 x (512 x 36) BRAM18
    assert none["lut"] >= free["lut"] + G.lutram_cells(2048, 32)
    p = G.window_params(big, "")
    G.assign_styles(one, [p], 0)
    assert p["RAM_STYLE"] == '"distributed"'  # Yosys' "logic" would be flip-flops
    est = C.estimate(m)["layers"]
    assert est["l2"]["bram36"] == 0 and 50 < est["l2"]["lut"] < 200


def test_bipolar_times_bipolar_is_refused():
    """taper_mvu reads one bipolar operand; with both it would compute another product."""
    rng = np.random.default_rng(3)
    n = Net(rng, BIPOLAR, 2 * rng.integers(0, 2, size=(2, 16)) - 1)
    n.matvec(16, 4, BIPOLAR, pe=2, simd=4)
    with pytest.raises(TaperError, match="layer l0: bipolar inputs times bipolar weights"):
        G.mvu_params(n.layers[0], "")


@pytest.mark.slow
@pytest.mark.xdist_group("yowasp")  # as the other synth tests: YoWASP's Yosys compiled once
def test_binary_cnn_synthesizes():
    """The bipolar/XNOR CNN through the synth step's Yosys run (``cost.measure``: every layer
    with the FIFO and width converter in front of it): every layer has cells, the line
    buffers and the rows of maxima are in distributed RAM as the generator chose, the CNN
    units' estimates are within 35 % of Yosys' LUTs and FFs, the whole within 25 %."""
    m, _ = binary_cnn()
    got = C.measure(m)
    est = C.estimate(m, 140)
    for x in m.layers:
        g, e = got[x.name], est["layers"][x.name]
        assert g["lut"] > 0 and g["ff"] > 0 and g["bram36"] == e["bram36"], (x.name, g, e)
        if x.kind in ("window", "maxpool"):
            assert any(c.startswith("RAM") for c in g["cells"]), (x.name, g["cells"])
            assert abs(e["lut"] / g["lut"] - 1) < 0.35, (x.name, e["lut"], g["lut"])
            assert abs(e["ff"] / g["ff"] - 1) < 0.35, (x.name, e["ff"], g["ff"])
    total = {k: sum(got[x.name][k] for x in m.layers) for k in ("lut", "ff", "bram36")}
    assert abs(est["lut"] / total["lut"] - 1) < 0.25, (est["lut"], total)
    print(f"binary CNN, Yosys: {total['lut']} LUT, {total['ff']} FF, {total['bram36']} BRAM36")
