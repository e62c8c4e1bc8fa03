"""`taper compile` + `taper verify`: zoo models and recipes bit-exact; bad input rejected."""

import json
import shutil

import numpy as np
import pytest

from compiler import ir
from compiler.errors import TaperError
from compiler.frontend.compile import CompileOptions, compile_model
from compiler.qat.recipe import load_recipe
from compiler.qat.train import train
from compiler.verify import verify

from conftest import ZOO

# Verilator runs these designs at ~30k cycles/s (a TFC frame at 100k FPS: ~900 cycles): the
# RTL gets fewer frames than the float references, whose runs cost next to nothing
RTL_SAMPLES = 250

ZOO_CASES = {
    # model: (compile options, verify data, expected input edge)
    "TFC_1W1A": ({}, "mnist", "thresholds"),
    "TFC_2W2A": ({}, "mnist", "quant"),
    "unsw_nb15-mlp-w2a2": ({}, None, "identity"),
    "qkeras_jettagging": ({"input_type": "fixed<16,6>"}, None, "quant"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO_CASES))
def test_zoo_model_bit_exact_against_qonnx_and_finn(tmp_path, name):
    opts, data, edge = ZOO_CASES[name]
    m = compile_model(
        ZOO / f"{name}.onnx", tmp_path / "hw", CompileOptions(target_fps=1e5, **opts), quiet=True
    )
    assert m.input_edge.kind == edge
    assert len(m.layers) == 4 and all(layer.kind == "matvec" for layer in m.layers)
    v = verify(tmp_path / "hw", samples=1000, against=["qonnx", "finn"], data=data)
    vr = verify(tmp_path / "hw", samples=RTL_SAMPLES, against=["rtl"], data=data)
    assert v.samples == 1000 and vr.samples == RTL_SAMPLES
    for ref, r in [*v.references.items(), *vr.references.items()]:
        assert r.skipped is None and r.mismatches == 0, (ref, r.first)
    assert v.ok and vr.ok
    # the RTL runs at the IR's predicted initiation interval (the slowest layer), and the
    # cycle model put every handshake at Verilator's cycle
    assert abs(vr.references["rtl"].measured["ii_cycles"] - m.ii_cycles) <= 2
    assert vr.references["rtl"].cycle_model_exact, vr.references["rtl"].cycle_model
    # the IR file is what every later stage reads: it round-trips
    assert ir.load(tmp_path / "hw") == m


def test_float_input_is_refused_without_input_type(tmp_path):
    out = tmp_path / "hw"
    with pytest.raises(
        TaperError, match=r"node MatMul_0 \(MatMul\): its input is a float.*--input-type"
    ):
        compile_model(ZOO / "qkeras_jettagging.onnx", out, CompileOptions(), quiet=True)
    assert not out.exists() and not list(tmp_path.iterdir())


# One recipe per feature, at digits or TFC size (a wider network proves no more exactness and
# costs minutes): tfc_w1a1 covers XNOR-popcount after an 8-bit-input first layer (as lfc_w1a1),
# tfc_w1a1_bin XNOR-popcount from the binarized input on (as lfc_w1a1_bin),
# tfc_w1a2_quantnet binary weights with 2-bit activations (its export is tfc_w1a2's graph),
# tfc_w2a2 uniform 2 bits (as sfc_w2a2), digits_mlp_hls BatchNorm folded in QAT (as
# tfc_w2a2_hls), digits_mixed_progressive progressive mixed bits (lfc_mixed_progressive's: step
# 8, 4, 2, 2 / 8, 5, 2 after an 8-bit input; as tfc_mixed_progressive's linear 8, 6, 4, 2),
# digits_cnn a mixed-precision CNN (padded convolutions, max pooling; as mnist_cnn_mixed).
RECIPES = [
    "digits_mlp",
    "digits_mlp_hls",
    "digits_mixed_progressive",
    "tfc_w1a1",
    "tfc_w1a1_bin",
    "tfc_w1a2_quantnet",
    "tfc_w2a2",
    "digits_cnn",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_bit_exact_against_qonnx_finn_and_brevitas(tmp_path, name):
    r = load_recipe(name)
    # exactness does not depend on accuracy: a short training keeps CI fast
    train(r, tmp_path, epochs=2, quiet=True)
    # nor on the folding (the property and compute-unit tests vary it): at most 100k FPS keeps
    # the Verilator build of the digits recipes (1M FPS: wide heaps) short
    m = compile_model(
        tmp_path / "model.onnx",
        tmp_path / "hw",
        CompileOptions(target_fps=min(r.target.fps, 1e5), recipe=name),
        quiet=True,
    )
    matvecs = [layer for layer in m.layers if layer.kind == "matvec"]
    assert [layer.weight_type.bits for layer in matvecs] == r.weight_bits
    # a binarized input makes every 1-bit-weight layer XNOR, the first one included
    assert matvecs[0].xnor == (r.input.mode == "bipolar")
    v = verify(tmp_path / "hw", samples=1000, against=["qonnx", "finn", "brevitas"])
    vr = verify(tmp_path / "hw", samples=RTL_SAMPLES, against=["rtl"])
    for ref, res in [*v.references.items(), *vr.references.items()]:
        assert res.skipped is None and res.mismatches == 0, (ref, res.first)
    assert abs(vr.references["rtl"].measured["ii_cycles"] - m.ii_cycles) <= 2
    assert vr.references["rtl"].cycle_model_exact, vr.references["rtl"].cycle_model


@pytest.fixture(scope="module")
def tfc(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfc")
    m = compile_model(ZOO / "TFC_2W2A.onnx", d / "hw", CompileOptions(), quiet=True)
    return d / "hw", m


@pytest.mark.xdist_group("compile_tfc")  # shares the module fixture tfc
def test_default_is_the_fastest_folding_that_fits_and_report_written(tfc):
    """No target and no folding file: the fastest folding whose taper estimate (in ir.json's
    estimates) fits the pynq-z2 with the margins, far faster than fully folded (II 50,176)."""
    from compiler.backends.rtl import cost
    from compiler.boards import board

    d, m = tfc
    b = board("pynq-z2")
    assert cost.fits(cost.estimate(m, cost.BRAM_MARGIN * b.bram36), b.lut, b.bram36)
    est = cost.estimate(m, b.bram36)  # as the generator will place the memories
    assert sum(m.estimates[x.name]["taper_lut"] for x in m.layers) == pytest.approx(
        est["lut"], abs=4
    )
    assert m.ii_cycles <= 784 * 64 // 100
    report = (d / "report.md").read_text()
    assert f"{m.ii_cycles:,} cycles per frame" in report
    assert "| MVAU_hls_0 | MatVec | 784 -> 64 | - | 1 | INT2 | INT2 |" in report
    png = (d / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.xdist_group("compile_tfc")  # shares the module fixture tfc
def test_folding_file(tmp_path, tfc):
    _, m = tfc
    names = [layer.name for layer in m.layers]
    fold = {
        names[0]: {"PE": 16, "SIMD": 49},
        names[1]: {"PE": 8, "SIMD": 8},
        names[2]: {"PE": 8, "SIMD": 8},
        names[3]: {"PE": 10, "SIMD": 8},
    }
    f = tmp_path / "fold.json"
    f.write_text(json.dumps(fold))
    m2 = compile_model(
        ZOO / "TFC_2W2A.onnx", tmp_path / "hw", CompileOptions(folding=str(f)), quiet=True
    )
    assert [(layer.pe, layer.simd) for layer in m2.layers] == [(16, 49), (8, 8), (8, 8), (10, 8)]
    assert [layer.cycles for layer in m2.layers] == [64, 64, 64, 8]
    assert m2.ii_cycles == 64
    # folding changes timing, never values
    x = np.random.default_rng(0).uniform(0, 1, (64, 1, 28, 28)).astype(np.float32)
    from compiler.sim import bitexact

    np.testing.assert_array_equal(bitexact.run(m2, x), bitexact.run(tfc[1], x))


@pytest.mark.parametrize(
    "fold,message",
    [
        ({"MVAU_hls_0": {"PE": 3}}, "layer 'MVAU_hls_0': PE=3 does not divide MH=64"),
        ({"MVAU_hls_1": {"SIMD": 5}}, "layer 'MVAU_hls_1': SIMD=5 does not divide MW=64"),
        ({"nosuch": {"PE": 1}}, "layer 'nosuch' not in the model"),
        ({"MVAU_hls_0": {"PE": 0}}, "layer 'MVAU_hls_0': PE must be a positive integer"),
        (
            {"MVAU_hls_0": {"ram_style": "block"}},
            "layer 'MVAU_hls_0': unknown folding field 'ram_style'",
        ),
    ],
)
def test_bad_folding_file(tmp_path, fold, message):
    f = tmp_path / "fold.json"
    f.write_text(json.dumps(fold))
    out = tmp_path / "hw"
    with pytest.raises(TaperError) as e:
        compile_model(ZOO / "TFC_2W2A.onnx", out, CompileOptions(folding=str(f)), quiet=True)
    assert str(e.value).startswith(f"{f}: {message}")
    assert not out.exists()


def test_recompile_is_skipped_when_up_to_date(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    shutil.copy(ZOO / "unsw_nb15-mlp-w2a2.onnx", src)
    compile_model(src, tmp_path / "hw", CompileOptions())
    mtime = (tmp_path / "hw" / "ir.json").stat().st_mtime_ns
    compile_model(src, tmp_path / "hw", CompileOptions())
    assert "up to date" in capsys.readouterr().out
    assert (tmp_path / "hw" / "ir.json").stat().st_mtime_ns == mtime
    compile_model(src, tmp_path / "hw", CompileOptions(target_fps=1e6), quiet=True)
    assert ir.load(tmp_path / "hw").ii_cycles < 38400
