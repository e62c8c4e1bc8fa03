"""The RTL cost model (compiler/backends/rtl/cost.py) against Yosys, and the folding search
that uses it: the fastest folding that fits, the cheapest that reaches a target, widths
with few divisors, unreachable targets."""

import dataclasses

import numpy as np
import pytest

from compiler.backends.rtl import cost as C
from compiler.ir import IntType, MatVec

# a board small enough that the random chains below do not fit fully parallel
LUT, BRAM = 4_000, 8


def _chain(seed: int, layers: int = 4, lanes: int = 96):
    return C.random_chain(np.random.default_rng([seed, 0]), layers, lanes=lanes)


@pytest.mark.slow
@pytest.mark.xdist_group("yowasp")
def test_estimate_against_yosys_on_random_layers():
    """Three random layers the calibration never saw (another seed: 784x48 4-bit x 4-bit,
    48x8 binary x 4-bit, 8x24 binary x 2-bit), one Yosys run (~30 s on an idle machine, 80 s
    under load). Measured: LUT +5 %, -5 %, +4 % (calibration, cost_coeffs.json "fit": 36
    layers, mean |error| 12 %, worst 41 %), FF within 8 %, BRAM36 5.0/1.5/1.5 against Yosys'
    5.5/1.5/1.5. Bounds: each layer's LUT within 30 % and their mean within 15 %, FF within
    30 %, block RAMs within 20 % (at least one BRAM36) of Yosys' per layer."""
    m = _chain(7, layers=3, lanes=64)
    got = C.measure(m)
    est = C.estimate(m)["layers"]
    lut = [est[x.name]["lut"] / got[x.name]["lut"] - 1 for x in m.layers]
    ff = [est[x.name]["ff"] / got[x.name]["ff"] - 1 for x in m.layers]
    detail = {x.name: (round(est[x.name]["lut"]), got[x.name]["lut"]) for x in m.layers}
    assert max(abs(e) for e in lut) < 0.30, detail
    assert np.mean(np.abs(lut)) < 0.15, detail
    assert max(abs(e) for e in ff) < 0.30, (ff, detail)
    for x in m.layers:
        b_est, b_got = est[x.name]["bram36"], got[x.name]["bram36"]
        assert abs(b_est - b_got) <= max(1.0, 0.2 * b_got), (x.name, b_est, b_got)


def test_coefficients_are_calibrated():
    c = C.coefficients()
    assert c["calibrated"] and c["fit"]["layers"] >= 30 and c["fit"]["lut_mean_abs_rel_error"] < 0.2
    assert set(c["lut"]) == set(C.LUT_TERMS) and set(c["ff"]) == set(C.FF_TERMS)


def test_max_is_the_fastest_folding_that_fits():
    m = _chain(3)
    f = C.choose_folding(m, LUT, BRAM, None)
    assert f.fits and f.estimate["lut"] <= C.LUT_MARGIN * LUT
    assert f.ii == max(x.cycles for x in f.layers)
    # every faster II: even the cheapest folding reaching it does not fit
    opts = [C.choices(x, LUT, BRAM) for x in m.layers]
    faster = sorted({c.cycles for o in opts for c in o if c.cycles < f.ii})
    floor = max(o[0].cycles for o in opts)
    checked = 0
    for ii in faster:
        if ii < floor:
            continue
        g = C._fold_model(m, C.plan(m, ii, LUT, BRAM), BRAM)
        assert not C.fits(g.estimate, LUT, BRAM), ii
        checked += 1
    assert checked > 0  # the board binds: the fully parallel chain does not fit


def _share(layers, lut, bram):
    """The search's objective: each layer's share of the board (its memories in the styles
    taking the least of it) and the share of the width converter in front of it."""
    c = C.coefficients()
    total, prev = 0.0, None
    for x in layers:
        e = C._cheapest_styles(x, lut, bram, c)
        total += e["lut"] / lut + e["bram36"] / bram
        total += C._dwc_share(x, prev, c, lut) if prev is not None else 0.0
        prev = x.out_elems
    return total


def test_target_takes_the_cheapest_folding_reaching_it():
    """Against every combination of foldings reaching the target (brute force): none is
    cheaper, width converters included."""
    import itertools

    m = _chain(5, layers=3)
    target = 4 * max(x.in_features * x.out_features for x in m.layers) // 96
    lut, bram = LUT * 100, BRAM * 100
    f = C.choose_folding(m, lut, bram, target)
    assert f.ii <= target < m.ii_cycles
    got = _share(f.layers, lut, bram)
    options = [[C.refold(x, pe, simd) for pe, simd in C.foldings(x)] for x in m.layers]
    options = [[y for y in o if y.cycles <= target] for o in options]
    best = min(_share(c, lut, bram) for c in itertools.product(*options))
    assert got == pytest.approx(best, rel=1e-9), (got, best)


def _xnor_layer(rng, i: int, mw: int, mh: int, last: bool = False) -> MatVec:
    b = IntType(1, False)
    return MatVec(
        name=f"l{i}", input="input" if i == 0 else f"l{i - 1}_out", output=f"l{i}_out",
        input_type=b, out_type=IntType(11, False) if last else b, weight_type=b,
        acc_type=IntType(11, False), weights=rng.integers(0, 2, size=(mh, mw)),
        thresholds=None if last else np.sort(rng.integers(0, mw, size=(mh, 1)), axis=1),
        xnor=True,
    )  # fmt: skip


def test_folding_weighs_the_width_converters_between_layers():
    """Binary 256-256-256-10 at 32 cycles on the pynq-z2: folded layer by layer, each
    layer's cheapest folding (PE 8, SIMD 256 twice) needs converters from 8 to 256 elements;
    the search, weighing them, is cheaper by the estimate, converters included."""
    rng = np.random.default_rng(0)
    layers = [_xnor_layer(rng, 0, 256, 256), _xnor_layer(rng, 1, 256, 256)]
    layers.append(_xnor_layer(rng, 2, 256, 10, last=True))
    m = dataclasses.replace(_chain(3, layers=1), layers=layers, fifos=[])
    lut, bram = 53_200, 140
    alone = [C.cheapest(C.choices(x, lut, bram), 32, lut, bram) for x in layers]
    alone = [C.refold(x, c.pe, c.simd) for x, c in zip(layers, alone, strict=True)]
    assert [(x.pe, x.simd) for x in alone[:2]] == [(8, 256), (8, 256)]
    f = C.choose_folding(m, lut, bram, 32)
    assert f.ii <= 32
    assert _share(f.layers, lut, bram) < 0.9 * _share(alone, lut, bram)


def test_divisor_poor_width_folds_by_its_divisors():
    """A pruned layer of 35 neurons over 49 inputs: PE from 1, 5, 7, 35; SIMD from 1, 7, 49."""
    rng = np.random.default_rng(0)
    w = rng.integers(-2, 2, size=(35, 49))
    layer = MatVec(
        name="l0", input="input", output="l0_out", input_type=IntType(2, False),
        out_type=IntType(8, True), weight_type=IntType(2, True), acc_type=IntType(8, True),
        weights=w,
    )  # fmt: skip
    assert sorted({p for p, _ in C.foldings(layer)}) == [1, 5, 7, 35]
    assert sorted({s for _, s in C.foldings(layer)}) == [1, 7, 49]
    m = _chain(3, layers=1)
    m = dataclasses.replace(m, layers=[layer], fifos=[])
    m.input_edge.shape = m.input_edge.in_shape = (49,)
    m.input_edge.out_type = IntType(2, False)
    for target in (35 * 49, 245, 49, 35, 7, 5, 1):
        f = C.choose_folding(m, 1e9, 1e3, target)
        (got,) = f.layers
        assert got.cycles <= target and 35 % got.pe == 0 and 49 % got.simd == 0
    assert C.choose_folding(m, 1e9, 1e3, None).ii == 1  # unlimited board: fully parallel


def test_unreachable_target_names_the_layer():
    m = _chain(3, layers=2)
    slow = dataclasses.replace(m.layers[1], n_vectors=6)  # at least 6 cycles per frame
    m = dataclasses.replace(m, layers=[m.layers[0], slow])
    with pytest.raises(C.Unreachable) as e:
        C.choose_folding(m, 1e9, 1e3, 5)
    assert (e.value.layer, e.value.ii) == (slow.name, 6)
    assert C.choose_folding(m, 1e9, 1e3, 6).ii == 6


def test_block_rams_over_the_board_move_to_luts():
    """A deep weight memory (512 x 256 4-bit weights, fully folded) goes to block RAM; with
    no block RAM left on the board, to LUTs, as the generator does."""
    m = _chain(3, layers=1)
    w = np.random.default_rng(1).integers(-8, 8, size=(256, 512))
    layer = dataclasses.replace(
        m.layers[0], input_type=IntType(4, False), weight_type=IntType(4, True),
        acc_type=IntType(16, True), out_type=IntType(16, True), weights=w, thresholds=None,
        xnor=False, pe=1, simd=1,
    )  # fmt: skip
    if hasattr(layer, "channels"):
        pytest.skip("chain starts with a Thresholding")
    m = dataclasses.replace(m, layers=[layer], fifos=[])
    free = C.estimate(m)
    assert free["bram36"] >= 8
    tight = C.estimate(m, bram36_limit=0)
    assert tight["bram36"] == 0 and tight["lut"] > free["lut"] + 4_000


ZOO_DEFAULTS = {
    "TFC_1W1A": {},
    "TFC_2W2A": {},
    "unsw_nb15-mlp-w2a2": {},
    "qkeras_jettagging": {"input_type": "fixed<16,6>"},
}


def _default_compile(name: str, d):
    from compiler.frontend.compile import CompileOptions, compile_model

    from conftest import ZOO

    return compile_model(ZOO / f"{name}.onnx", d, CompileOptions(**ZOO_DEFAULTS[name]), quiet=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO_DEFAULTS))
def test_default_compile_of_zoo_models_fits_the_pynq_z2(tmp_path, name):
    """No target, no folding: the fastest folding whose estimate fits the xc7z020 (80 % of
    53,200 LUT, 90 % of 140 BRAM36); a faster II of the same search would not fit."""
    from compiler.boards import board

    m = _default_compile(name, tmp_path / "hw")
    b = board("pynq-z2")
    est = C.estimate(m, C.BRAM_MARGIN * b.bram36)
    assert C.fits(est, b.lut, b.bram36), est
    f = C.choose_folding(m, b.lut, b.bram36, None)
    assert [(x.pe, x.simd) for x in f.layers] == [(x.pe, x.simd) for x in m.layers]
    assert m.ii_cycles == f.ii
    fully_parallel = max(x.n_vectors for x in m.layers)
    if m.ii_cycles > fully_parallel:  # the board binds: one step faster does not fit
        assert not C.choose_folding(m, b.lut, b.bram36, m.ii_cycles - 1).fits


@pytest.mark.slow
def test_target_the_board_cannot_take_is_one_line(tmp_path, taper):
    """UNSW-NB15 at 50 M frames/s needs nearly every layer fully parallel: far more LUTs
    than the xc7z020 has. One line naming the estimate and the fastest rate that fits; and
    'max' reaches that rate."""
    from conftest import ZOO

    src = ZOO / "unsw_nb15-mlp-w2a2.onnx"
    r = taper("compile", src, "--out", tmp_path / "a", "--target-fps", "5e7")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "target 50,000,000 FPS: its cheapest folding is estimated at" in r.stderr
    assert "over the pynq-z2's 53,200 LUT" in r.stderr and "(--target-fps max)" in r.stderr
    fastest = r.stderr.split("the fastest folding that fits reaches ")[1].split(" FPS")[0]
    r = taper("compile", src, "--out", tmp_path / "b", "--target-fps", "max")
    assert r.returncode == 0, r.stderr
    assert f"{fastest} FPS; fastest folding that fits the pynq-z2" in r.stderr + r.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("yowasp")
def test_a_default_compile_fits_the_board_in_yosys(tmp_path):
    """TFC_1W1A compiled with no folding options (the fastest folding that fits by the
    estimate), synthesized by Yosys as the synth step does: it fits the xc7z020, and the
    estimate is within 35 % of Yosys' LUTs and its block RAMs within 10 % + 1."""
    from compiler.backends.rtl import generate as G
    from compiler.backends.rtl.synth import check_fits, synthesize
    from compiler.boards import board

    m = _default_compile("TFC_1W1A", tmp_path / "hw")
    G.generate(m, tmp_path / "rtl")
    r = synthesize(m, tmp_path / "rtl", tmp_path / "synth")
    check_fits(r)  # raises naming the resource when it does not fit
    est = C.estimate(m, board(m.board).bram36)
    assert abs(est["lut"] / r["lut"] - 1) < 0.35, (est["lut"], r["lut"])
    assert abs(est["bram36"] - r["bram36"]) <= 0.1 * r["bram36"] + 1, (est["bram36"], r["bram36"])
