"""The cycle model (`sim/cycles.py`) against Verilator, handshake by handshake: folding corner
cases, FIFO depths 1 and 2, port patterns, random designs, CNN pipelines (sliding windows,
convolutions over n_vectors, max pools); FIFO sizing; bad input."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rtl import chain

from compiler.backends.rtl import simulate
from compiler.errors import TaperError
from compiler.frontend.lower import accumulator_type
from compiler.ir import (
    FIFO,
    InputEdge,
    IntType,
    MatVec,
    MaxPool,
    Model,
    OutputEdge,
    SlidingWindow,
    Thresholding,
)
from compiler.references.rtl import cycle_difference
from compiler.sim import bitexact, cycles
from compiler.sim.fifo_sizing import read_depths, size_fifos, with_depths
from compiler.sim.patterns import READY, VALID, Pattern, as_bits

PATTERNS = {
    "free": {},
    "stalls": {
        "in_valid": Pattern.random(30, 1, VALID),
        "out_ready": Pattern.random(30, 1, READY),
    },
    "cyclic": {"in_valid": [1, 0, 1, 1, 0], "out_ready": [0, 1, 1], "frame_period": 37},
    "backpressure": {"out_ready": Pattern.random(85, 2, READY)},
}


def _xnor_model():
    """XNOR layers with PE = MH, SIMD = MW, a single fold and width up/down conversion."""
    return chain(
        np.random.default_rng(5),
        [
            ({"xnor": True, "mw": 16, "mh": 8, "binary_out": True}, 8, 4),
            ({"xnor": True, "mw": 8, "mh": 8, "binary_out": True}, 2, 8),
            ({"xnor": True, "mw": 8, "mh": 4, "thresholds": False}, 4, 1),
        ],
    )


def _mixed_model():
    """Integer MVUs (SIMD = MW, PE = MH, NF > 1 and SF > 1, no thresholds) and a standalone
    thresholding unit at the end (its ready follows the output port combinationally)."""
    rng = np.random.default_rng(6)
    m = chain(
        rng,
        [
            ({"mw": 12, "mh": 6}, 2, 3),
            ({"mw": 6, "mh": 4, "ibits": 2}, 4, 6),
            ({"mw": 4, "mh": 6, "thresholds": False}, 1, 2),
        ],
    )
    mv = m.layers[-1]
    t = np.sort(rng.integers(mv.acc_type.min, mv.acc_type.max + 1, size=(6, 3)), axis=1)
    m.layers.append(
        Thresholding(
            name="thr",
            input=mv.output,
            output="thr_out",
            input_type=mv.out_type,
            out_type=IntType(3, True),
            channels=6,
            thresholds=t,
            out_bias=-1,
            pe=3,
        )
    )
    m.check()
    return m


def _inputs(m, frames, seed=0):
    t = m.layers[0].input_type
    rng = np.random.default_rng(seed)
    lo, hi = (0, 1) if t.bits == 1 and not t.signed else (t.min, t.max)
    q = rng.integers(lo, hi + 1, size=(frames, m.layers[0].in_frame))
    return np.where(q > 0, 1, -1) if t.bipolar else q


def _assert_same_handshakes(m, frames=24):
    q = _inputs(m, frames)
    want = bitexact.run_hardware(m, q)[m.output_tensor]
    runs = {}
    for name, p in PATTERNS.items():
        rtl = runs[name] = simulate.run(m, q, **p)
        np.testing.assert_array_equal(rtl.outputs, want)
        assert cycle_difference(m, rtl, **p) is None, name
        c = cycles.run(m, frames, **p)
        assert c.latency_cycles == rtl.latency_cycles
        assert c.ii_cycles == rtl.ii_cycles or (np.isnan(c.ii_cycles) and np.isnan(rtl.ii_cycles))
    return runs


@pytest.mark.parametrize(
    "make, depths",
    [(_xnor_model, [1, 2, 1]), (_mixed_model, [2, 1, 1, 2])],
    ids=["xnor", "mixed"],
)
def test_every_handshake_is_at_verilators_cycle(make, depths):
    """FIFO depths 1 and 2 in one design (each Verilator build costs ~20 s)."""
    m = make()
    with_depths(m, {layer.input: d for layer, d in zip(m.layers, depths, strict=True)})
    _assert_same_handshakes(m)


@st.composite
def designs(draw):
    """Random chains: sizes with divisors, folding, bits, thresholds, FIFO depths."""
    n = draw(st.integers(1, 3))
    sizes = [draw(st.sampled_from([2, 4, 6, 8, 12])) for _ in range(n + 1)]
    specs = []
    for i in range(n):
        mw, mh = sizes[i], sizes[i + 1]
        pe = draw(st.sampled_from([d for d in range(1, mh + 1) if mh % d == 0]))
        simd = draw(st.sampled_from([d for d in range(1, mw + 1) if mw % d == 0]))
        kw = {"mw": mw, "mh": mh, "ibits": draw(st.integers(2, 4))}
        if i == n - 1:
            kw["thresholds"] = draw(st.booleans())
        specs.append((kw, pe, simd))
    depths = [draw(st.integers(1, 4)) for _ in range(n)]
    stall = draw(st.sampled_from([0, 20, 50]))
    return specs, depths, stall, draw(st.integers(0, 2**16))


@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(designs())
def test_random_designs_match_verilator(design):
    """Each example builds one Verilator model (~20 s): the count is bounded for CI."""
    specs, depths, stall, seed = design
    m = chain(np.random.default_rng(seed), specs)
    with_depths(m, {layer.input: d for layer, d in zip(m.layers, depths, strict=True)})
    q = _inputs(m, 16, seed)
    p = {
        "in_valid": Pattern.random(stall, seed, VALID),
        "out_ready": Pattern.random(stall, seed, READY),
    }
    rtl = simulate.run(m, q, **p)
    np.testing.assert_array_equal(rtl.outputs, bitexact.run_hardware(m, q)[m.output_tensor])
    assert cycle_difference(m, rtl, **p) is None


@settings(max_examples=40, deadline=None, derandomize=True)
@given(designs(), st.integers(1, 40))
def test_the_steady_state_fill_equals_simulating_every_frame(design, period):
    specs, depths, _, seed = design
    m = chain(np.random.default_rng(seed), specs)
    with_depths(m, {layer.input: d for layer, d in zip(m.layers, depths, strict=True)})
    for p in ({}, {"out_ready": [1] * period + [0]}, {"frame_period": period}):
        fast = cycles.run(m, 80, **p)
        full = cycles.run(m, 80, steady_state=False, **p)
        np.testing.assert_array_equal(fast.input_cycles, full.input_cycles)
        np.testing.assert_array_equal(fast.output_cycles, full.output_cycles)
        assert fast.stages == full.stages and fast.fifos == full.fifos
        if fast.period is not None:
            assert fast.simulated_frames < 80


def test_patterns_are_the_testbenchs_bits():
    """The random bits come from a stateless hash: spot values pin the function the C++
    testbench implements too (a change on one side only breaks the cycle comparisons)."""
    p = Pattern.random(40, 3, READY)
    bits = as_bits(p, 50_000)
    assert 0.57 < bits.mean() < 0.63
    assert [p.at(t) for t in range(50_000)] == bits.tolist()
    c = Pattern.of([0, 0, 1, 0, 1], "x")
    assert [c.first(t, 100) for t in range(8)] == [2, 2, 2, 4, 4, 7, 7, 7]


def test_fifo_sizing_keeps_the_ii_and_each_depth_is_minimal():
    m = _mixed_model()
    s = size_fifos(m)
    assert s.bits(s.after) <= s.bits(s.before)
    sized = with_depths(_mixed_model(), s.after)
    r = cycles.run(sized, 32)
    assert r.steady_ii_cycles == s.ii_cycles
    for k, d in s.after.items():
        if d > 1:
            worse = cycles.run(sized, 32, fifo_depths={k: d - 1})
            assert worse.steady_ii_cycles > s.ii_cycles, k
    rtl = simulate.run(sized, _inputs(sized, 16))  # Verilator confirms II and no deadlock
    assert rtl.ii_cycles == s.ii_cycles and cycle_difference(sized, rtl) is None


def test_a_stuck_output_is_reported_as_a_deadlock_naming_the_stage():
    m = _mixed_model()
    with pytest.raises(cycles.Deadlock, match=r"deadlock: output took no word from thr for 500 "):
        cycles.run(m, 4, out_ready=[1] * 3 + [0] * 5000, deadlock_cycles=500)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"frames": 0}, "frames: expected at least 1 frame, got 0"),
        (
            {"out_ready": []},
            "out_ready: expected a 0/1 pattern of 1..16777216 cycles, got 0 cycles",
        ),
        ({"in_valid": [1, 2, 0]}, "in_valid: pattern values are 0 or 1, got 2"),
        ({"in_valid": [0, 0]}, "in_valid: the pattern is all 0"),
        ({"out_ready": 100}, "out_ready: a stall percentage is 0..99, got 100"),
        ({"fifo_depths": {"input": 0}}, "fifo_depths: 'input': expected a depth >= 1, got 0"),
        ({"fifo_depths": {"nope": 2}}, "fifo_depths: no FIFO before a layer reading 'nope'"),
        ({"frame_period": -1}, "frame_period: expected cycles >= 0, got -1"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(kw, message):
    m = _mixed_model()
    kw = {"frames": 3, **kw}
    with pytest.raises(TaperError) as e:
        cycles.run(m, **kw)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_fifo_file_names_the_layer_and_field(tmp_path):
    m = _mixed_model()
    f = tmp_path / "fifo.json"
    f.write_text(json.dumps({"l1": 0}))
    with pytest.raises(TaperError, match=r"fifo.json: 'l1': expected a FIFO depth 1\.\.\d+, got 0"):
        read_depths(f, m)
    f.write_text(json.dumps({"l9": 3}))
    with pytest.raises(TaperError, match=r"'l9': no such layer \(layers: l0, l1, l2, thr\)"):
        read_depths(f, m)
    f.write_text(json.dumps({"thr": 3}))
    assert read_depths(f, m) == {"l2_out": 3}


# ---------------------------------------------------------------------------- CNN pipelines

UINT2 = IntType(2, False)


def cnn(rng, d: int, c: int, steps: list[tuple], depths: list[int] | None = None) -> Model:
    """A chain on a d x d x c INT4 image: ("window", k, s, pad, simd), ("conv", out, pe,
    simd) (a MatVec per output pixel: n_vectors of them), ("fc", out, pe, simd) (the whole
    frame one vector), ("thr", pe) (a thresholding unit per pixel), ("pool", k, pe). Every
    MatVec but the last thresholds to UINT2; weights and thresholds are random (timing does
    not depend on them)."""
    t = IntType(4, True)
    nv, feat = d * d, c  # the frame: nv vectors of feat elements
    layers = []
    for i, (kind, *a) in enumerate(steps):
        last = i == len(steps) - 1
        if kind == "window":
            k, s, pad, simd = a
            layer = SlidingWindow("", "", "", t, t, d, feat, k, s, pad, simd=simd)
            d = layer.ofm_dim
            nv, feat = d * d, k * k * feat
        elif kind == "pool":
            k, pe = a
            layer = MaxPool("", "", "", t, t, d, feat, k, pe=pe)
            d = layer.ofm_dim
            nv = d * d
        elif kind == "thr":
            (pe,) = a
            th = np.sort(rng.integers(t.min, t.max + 1, size=(feat, 3)), axis=1)
            layer = Thresholding("", "", "", t, UINT2, feat, th, pe=pe, n_vectors=nv)
            t = UINT2
        else:
            out, pe, simd = a
            if kind == "fc":
                nv, feat = 1, nv * feat
            w = rng.integers(-2, 2, size=(out, feat))
            acc = accumulator_type(w, t, False)
            layer = MatVec(
                "", "", "", t, acc, weight_type=IntType(2, True), acc_type=acc, weights=w,
                pe=pe, simd=simd, n_vectors=nv,
            )  # fmt: skip
            if not last:
                layer.thresholds = np.sort(rng.integers(acc.min, acc.max + 1, size=(out, 3)), 1)
                layer.out_type = UINT2
            t, feat = layer.out_type, out
        layer.name, layer.output = f"l{i}", f"l{i}_out"
        layer.input = "input" if i == 0 else layers[-1].output
        layers.append(layer)
    shape = (layers[0].in_frame,)
    m = Model(
        name="cnn",
        input_edge=InputEdge(
            kind="identity", in_shape=shape, shape=shape, out_type=IntType(4, True)
        ),
        layers=layers,
        output_edge=OutputEdge(out_shape=()),
        fifos=[
            FIFO(x.input, dep, x.in_width) for x, dep in zip(layers, depths or [], strict=False)
        ],
    )
    m.check()
    return m


# window -> conv -> pool -> window -> conv -> fc, the foldings matching (no converter)
PLAIN = [
    ("window", 3, 1, 1, 2),
    ("conv", 4, 2, 2),
    ("pool", 2, 2),
    ("window", 2, 1, 0, 2),
    ("conv", 4, 4, 2),
    ("fc", 3, 1, 4),
]
# the same chain with other foldings: width converters before every layer but the first
CONVERTED = [
    ("window", 3, 1, 1, 1),
    ("conv", 4, 2, 3),
    ("pool", 2, 4),
    ("window", 2, 1, 0, 1),
    ("conv", 4, 2, 8),
    ("fc", 3, 3, 2),
]


def test_n_vectors_are_frames_to_the_mvu_and_thresholding_units():
    """The RTL knows vectors only: n_vectors per frame times F frames has every handshake
    of n_vectors * F frames of one vector."""
    rng = np.random.default_rng(7)
    steps = [("conv", 4, 2, 1), ("thr", 2), ("conv", 6, 3, 4), ("conv", 2, 1, 3)]
    per_pixel = cnn(rng, 3, 2, steps)  # 9 vectors per frame
    one = cnn(np.random.default_rng(7), 1, 2, steps)
    assert [x.n_vectors for x in per_pixel.layers] == [9] * 4
    for p in PATTERNS.values():
        p = {k: v for k, v in p.items() if k != "frame_period"}  # per frame: not the same
        a, b = cycles.run(per_pixel, 4, **p), cycles.run(one, 36, **p)
        for k, (valid, times) in a.links.items():
            np.testing.assert_array_equal(valid, b.links[k][0])
            np.testing.assert_array_equal(times, b.links[k][1])
        assert a.stages == b.stages


@st.composite
def cnn_designs(draw):
    """Random CNN chains: image size, kernels, strides, padding, pools, foldings, depths."""
    d, c = draw(st.integers(3, 6)), draw(st.sampled_from([1, 2, 4]))
    steps, dim, ch = [], d, c
    for _ in range(draw(st.integers(1, 2))):
        k = draw(st.integers(1, min(3, dim)))
        s, pad = draw(st.integers(1, 2)), draw(st.integers(0, min(2, k)))
        steps.append(
            ("window", k, s, pad, draw(st.sampled_from([x for x in (1, 2, 4) if ch % x == 0])))
        )
        dim = (dim + 2 * pad - k) // s + 1
        ch = draw(st.sampled_from([2, 4]))
        steps.append(("conv", ch, draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, k * k]))))
        if dim >= 2 and draw(st.booleans()):
            steps.append(("pool", 2, draw(st.sampled_from([1, 2]))))
            dim //= 2
    steps.append(("fc", 2, 1, draw(st.sampled_from([1, 2]))))
    depths = [draw(st.integers(1, 4)) for _ in steps]
    return d, c, steps, depths, draw(st.integers(0, 2**16))


@settings(max_examples=20, deadline=None, derandomize=True)
@given(cnn_designs(), st.integers(1, 40))
def test_cnn_steady_state_fill_equals_simulating_every_frame(design, period):
    """Windows and pools leave input rows unread after a frame's last output (those lag the
    output) and a window's writer waits on rows LINES back: the steady state still fills in
    exactly. Every stage's busy + starved + blocked is the run's cycles, none negative."""
    d, c, steps, depths, seed = design
    m = cnn(np.random.default_rng(seed), d, c, steps, depths)
    for p in (
        {},
        {"out_ready": [1] * period + [0]},
        {"frame_period": 3 * period},
        PATTERNS["stalls"],
    ):
        fast = cycles.run(m, 40, **p)
        full = cycles.run(m, 40, steady_state=False, **p)
        for k, (valid, times) in full.links.items():
            np.testing.assert_array_equal(fast.links[k][0], valid)
            np.testing.assert_array_equal(fast.links[k][1], times)
        assert fast.stages == full.stages and fast.fifos == full.fifos
        assert len(full.input_cycles) == 40 * full.in_words  # unread rows are taken too
        end = max(int(t[-1]) for _, t in full.links.values()) + 1
        for st_ in full.stages.values():
            assert min(st_.busy, st_.starved, st_.blocked) >= 0
            assert st_.busy + st_.starved + st_.blocked == end
        if not p:  # never stalled, a steady state comes
            assert fast.period is not None and fast.simulated_frames < 40


# a window's bursts (a row of windows at a time) into a conv and a pool: three FIFOs of 2
# words hold the II, with 1 word it grows (to 288 or 512 cycles)
BURSTY = [
    ("window", 2, 1, 2, 1),
    ("conv", 4, 4, 1),
    ("pool", 2, 1),
    ("window", 1, 1, 1, 2),
    ("conv", 2, 2, 1),
    ("pool", 2, 2),
    ("fc", 2, 1, 2),
]


def test_fifo_sizing_on_a_cnn_keeps_the_ii_and_each_depth_is_minimal():
    m = cnn(np.random.default_rng(0), 5, 1, BURSTY)
    s = size_fifos(m)
    assert s.ii_cycles == s.ii_before == 256 == m.ii_cycles
    assert s.after == {k: 2 if k in ("l0_out", "l1_out", "l3_out") else 1 for k in s.before}
    sized = with_depths(m, s.after)
    assert cycles.run(sized, 32).steady_ii_cycles == 256
    shallower = {k: cycles.run(sized, 32, fifo_depths={k: 1}).steady_ii_cycles for k in s.after}
    assert shallower == {**{k: 256 for k in s.after}, "l0_out": 512, "l1_out": 512, "l3_out": 288}


def test_a_fifo_deeper_than_it_fills_changes_no_handshake():
    """FIFO sizing starts each FIFO at one word more than it held with deep ones."""
    m = cnn(np.random.default_rng(0), 5, 1, BURSTY)
    deep = cycles.run(m, 32, fifo_depths={x.input: 1000 for x in m.layers})
    peaks = {x.input: deep.fifos[f"{x.name}_fifo"].peak + 1 for x in m.layers}
    assert max(peaks.values()) < 1000
    tight = cycles.run(m, 32, fifo_depths=peaks)
    for k, (valid, times) in deep.links.items():
        np.testing.assert_array_equal(tight.links[k][0], valid)
        np.testing.assert_array_equal(tight.links[k][1], times)
    one_less = cycles.run(m, 32, fifo_depths={k: v - 1 for k, v in peaks.items()})
    assert not np.array_equal(one_less.links["l0"][1], deep.links["l0"][1])


# Verilator builds of ~3-10 s each: four small designs
CNN_DESIGNS = {
    # no width converter; FIFOs of 1 and 2 words
    "plain": (6, 2, PLAIN, [1, 2, 1, 2, 1, 2]),
    # converters, a thresholding unit, odd sizes: the pool drops a row and a column
    "converted": (
        7,
        2,
        [
            ("window", 3, 1, 0, 1),
            ("conv", 4, 2, 3),
            ("thr", 4),
            ("pool", 2, 2),
            ("window", 2, 1, 1, 1),
            ("conv", 4, 2, 8),
            ("fc", 3, 3, 2),
        ],
        [2, 1, 2, 1, 1, 2, 1],
    ),
    # the sized depths but one (II 288, not 256: the cycle model's number, confirmed)
    "bursty": (5, 1, BURSTY, [1, 2, 2, 1, 1, 1, 1]),
    # the pool's last row is never read: its words are taken after the last output word
    "unread": (5, 1, [("pool", 2, 1), ("thr", 1)], [1, 1]),
    # converters of 2 -> 9 and 6 -> 9 elements: neither size a multiple of the other
    "ratios": (5, 2, [("window", 3, 1, 0, 2), ("conv", 6, 6, 9), ("fc", 3, 1, 9)], [2, 2, 2]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CNN_DESIGNS))
def test_cnn_every_handshake_is_at_verilators_cycle(name):
    d, c, steps, depths = CNN_DESIGNS[name]
    m = cnn(np.random.default_rng(0), d, c, steps, depths)
    converters = sum(
        a.out_elems != b.in_elems for a, b in zip(m.layers[:-1], m.layers[1:], strict=True)
    )
    assert converters == {"plain": 0, "converted": 5}.get(name, converters)
    runs = _assert_same_handshakes(m, frames=8)
    free = runs["free"]
    if name == "bursty":
        assert free.ii_cycles == 288
    if name == "ratios":  # the converters keep the pace at any ratio: the slowest layer's II
        assert free.ii_cycles == m.ii_cycles
    if name == "unread":  # the testbench stops at the last output: 4 input words unrecorded
        assert len(free.input_word_cycles) == 8 * 25 - 4
