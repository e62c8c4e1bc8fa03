"""The IR: types, consistency checks, save/load, and the bit-accurate simulator against a
naive integer implementation written here."""

import numpy as np
import pytest

from compiler import ir
from compiler.ir import FloatStep, InputEdge, IntType, MatVec, Model, OutputEdge, Thresholding
from compiler.sim import bitexact


def test_int_types():
    assert IntType.parse("INT4") == IntType(4, True) and IntType(4, True).name == "INT4"
    assert (IntType(4, True).min, IntType(4, True).max) == (-8, 7)
    assert (IntType(3, False).min, IntType(3, False).max) == (0, 7)
    b = IntType.parse("BIPOLAR")
    assert b.bipolar and (b.min, b.max) == (-1, 1) and b.name == "BIPOLAR"
    assert IntType.parse("BINARY") == IntType(1, False)
    assert IntType.for_range(0, 255) == IntType(8, False)
    assert IntType.for_range(-128, 127) == IntType(8, True)
    assert IntType.for_range(-129, 0) == IntType(9, True)
    assert IntType.for_range(-1, 128) == IntType(9, True)
    assert IntType(2, True).contains(np.array([-2, 1])) and not IntType(2, True).contains([2])
    with pytest.raises(ValueError):
        IntType.parse("FLOAT32")


def naive_layer(layer, x):
    """Reference semantics, one sample and one channel at a time with Python ints."""
    out = []
    for v in x.tolist():
        row = []
        n_out = layer.out_features if isinstance(layer, MatVec) else layer.channels
        for o in range(n_out):
            if isinstance(layer, MatVec):
                w = layer.weights[o].tolist()
                if layer.xnor:
                    acc = sum(1 for a, b in zip(v, w, strict=True) if a == b)
                else:
                    acc = sum(a * b for a, b in zip(v, w, strict=True))
                t = layer.thresholds
            else:
                acc, t = v[o], layer.thresholds
            if t is None:
                row.append(acc)
                continue
            ts = t[0 if t.shape[0] == 1 else o].tolist()
            count = sum(1 for th in ts if acc >= th)
            row.append(2 * count - 1 if layer.out_type.bipolar else count + layer.out_bias)
        out.append(row)
    return np.array(out, dtype=np.int64)


def random_matvec(
    rng,
    *,
    xnor=False,
    thresholds=True,
    bipolar_out=False,
    wbits=3,
    ibits=4,
    signed_in=True,
    mw=12,
    mh=6,
    steps=3,
    shared=False,
):
    in_t = IntType(1, False) if xnor else IntType(ibits, signed_in)
    w_t = IntType(1, False) if xnor else IntType(wbits, True)
    w = rng.integers(w_t.min, w_t.max + 1, size=(mh, mw))
    from compiler.frontend.lower import accumulator_type

    acc = accumulator_type(w, in_t, xnor)
    t = None
    out_t, bias = acc, 0
    if thresholds:
        n = 1 if bipolar_out else steps
        t = np.sort(rng.integers(acc.min, acc.max + 1, size=(1 if shared else mh, n)), axis=1)
        out_t = IntType(1, False, True) if bipolar_out else IntType.for_range(-1, n - 1)
        bias = 0 if bipolar_out else -1
    return MatVec(
        name="mv",
        input="in",
        output="out",
        input_type=in_t,
        out_type=out_t,
        weight_type=w_t,
        acc_type=acc,
        weights=w,
        thresholds=t,
        out_bias=bias,
        xnor=xnor,
        pe=mh // 2 if mh % 2 == 0 else 1,
        simd=mw // 4 if mw % 4 == 0 else 1,
    )


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"thresholds": False},
        {"xnor": True},
        {"xnor": True, "bipolar_out": True},
        {"shared": True, "steps": 7},
        {"ibits": 8, "wbits": 8, "signed_in": False, "mw": 40},
    ],
)
def test_matvec_equals_naive(kw):
    rng = np.random.default_rng(len(kw))
    layer = random_matvec(rng, **kw)
    layer.check()
    x = rng.integers(layer.input_type.min, layer.input_type.max + 1, size=(50, layer.in_features))
    np.testing.assert_array_equal(bitexact.run_layer(layer, x), naive_layer(layer, x))


def test_thresholding_equals_naive_and_counts_at_equality():
    t = np.array([[-3, 0, 0, 5], [1, 2, 3, 4]])
    layer = Thresholding(
        name="t",
        input="a",
        output="b",
        input_type=IntType(5, True),
        out_type=IntType(4, True),
        channels=2,
        thresholds=t,
        out_bias=-2,
    )
    layer.check()
    x = np.array([[-4, 0], [0, 4], [5, 1], [-3, 5]])
    got = bitexact.run_layer(layer, x)
    np.testing.assert_array_equal(got, naive_layer(layer, x))
    # x >= T counts: 0 reaches the two thresholds at 0, 5 all four
    assert got[1, 0] == 3 - 2 and got[2, 0] == 4 - 2


def test_wide_accumulators_use_exact_int64():
    w = np.array([[2**30, -(2**30), 3]])
    layer = MatVec(
        name="w",
        input="i",
        output="o",
        input_type=IntType(16, True),
        out_type=IntType(64, True),
        weight_type=IntType(32, True),
        acc_type=IntType(64, True),
        weights=w,
    )
    x = np.array([[32767, -32768, 1]])
    assert bitexact.run_layer(layer, x)[0, 0] == 2**30 * 32767 + 2**30 * 32768 + 3


def test_check_names_layer_and_limit():
    rng = np.random.default_rng(0)
    layer = random_matvec(rng)
    layer.pe = 4
    with pytest.raises(ValueError, match="layer mv: PE=4 does not divide 6"):
        layer.check()
    layer = random_matvec(rng)
    layer.simd = 5
    with pytest.raises(ValueError, match="layer mv: SIMD=5 does not divide 12"):
        layer.check()
    layer = random_matvec(rng, steps=9)
    layer.out_type = IntType(2, True)
    with pytest.raises(ValueError, match="overflow INT2"):
        layer.check()


def small_model(rng) -> Model:
    l0 = random_matvec(rng, ibits=4, signed_in=False)
    l0.name, l0.input, l0.output = "l0", "input", "l0_out"
    l1 = random_matvec(rng, thresholds=False, wbits=2, mw=6, mh=3)
    l1.input_type = l0.out_type
    from compiler.frontend.lower import accumulator_type

    l1.acc_type = l1.out_type = accumulator_type(l1.weights, l1.input_type, False)
    l1.name, l1.input, l1.output = "l1", "l0_out", "l1_out"
    edge = InputEdge(
        kind="quant",
        in_shape=(12,),
        shape=(12,),
        out_type=IntType(4, False),
        scale=0.0625,
        pre=[FloatStep("mul", np.array([2.0], np.float32))],
    )
    out = OutputEdge(
        steps=[
            FloatStep("mul", np.array([0.5], np.float32)),
            FloatStep("add", np.array([1, 2, 3], np.float32)),
            FloatStep("softmax"),
        ],
        out_shape=(3,),
    )
    return Model(
        name="small",
        input_edge=edge,
        layers=[l0, l1],
        output_edge=out,
        fifos=[ir.FIFO("input", 2, 4)],
        estimates={"l0": {"LUT": 10.0}},
    )


def test_save_load_round_trip(tmp_path):
    m = small_model(np.random.default_rng(1))
    m.check()
    ir.save(m, tmp_path)
    back = ir.load(tmp_path)
    assert back == m
    assert back.layers[0].weights.dtype == np.int64
    x = np.random.default_rng(2).uniform(0, 0.5, size=(20, 12)).astype(np.float32)
    np.testing.assert_array_equal(bitexact.run(back, x), bitexact.run(m, x))
    back.layers[0].weights[0, 0] += 1
    assert back != m


def test_model_timing_properties():
    m = small_model(np.random.default_rng(1))
    l0, l1 = m.layers
    assert l0.cycles == (12 // l0.simd) * (6 // l0.pe)
    assert m.ii_cycles == max(l0.cycles, l1.cycles)
    assert m.latency_cycles == l0.cycles + l1.cycles
    assert m.fps == pytest.approx(100e6 / m.ii_cycles)


def test_input_quant_edge_rounds_half_even_and_clips():
    e = InputEdge(
        kind="quant", in_shape=(4,), shape=(4,), out_type=IntType(3, True), scale=0.5, narrow=True
    )
    x = np.array([[0.25, 0.75, -10.0, 10.0]], np.float32)  # 0.5 -> 0, 1.5 -> 2
    np.testing.assert_array_equal(bitexact.quantize_input(e, x), [[0, 2, -3, 3]])
    e.rounding = "FLOOR"
    np.testing.assert_array_equal(bitexact.quantize_input(e, x), [[0, 1, -3, 3]])


def test_identity_edge_rejects_non_integers():
    e = InputEdge(kind="identity", in_shape=(2,), shape=(2,), out_type=IntType(1, False, True))
    np.testing.assert_array_equal(bitexact.quantize_input(e, np.array([[1.0, -1.0]])), [[1, -1]])
    with pytest.raises(ValueError, match="not all BIPOLAR"):
        bitexact.quantize_input(e, np.array([[0.0, 1.0]]))
