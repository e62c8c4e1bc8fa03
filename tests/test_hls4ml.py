"""hls4ml back end: exactness rules, the project, and its C-simulation against the IR."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from compiler import ir
from compiler.backends.hls4ml import convert, rules
from compiler.frontend.input_type import insert_input_quant, parse_input_type
from compiler.frontend.load import load_qonnx
from compiler.qat.recipe import recipe_path

from conftest import ROOT, ZOO

JET = ZOO / "qkeras_jettagging.onnx"


def jet(input_type: str | None = "fixed<16,6>"):
    m = load_qonnx(JET)
    return insert_input_quant(m, parse_input_type(input_type)) if input_type else m


def rule_of(model) -> tuple[str, str] | None:
    try:
        rules.check(model, "m.onnx")
    except rules.RuleError as e:
        return e.rule, e.node
    return None


# ---------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    "name,rule,node",
    [
        ("TFC_1W1A.onnx", "no 1-bit activations", "BipolarQuant_4"),
        ("TFC_2W2A.onnx", "no float arithmetic between quantizers", "BatchNormalization_0"),
        ("unsw_nb15-mlp-w2a2.onnx", "power-of-two scales", "Quant_0"),
        ("qkeras_jettagging.onnx", "quantized inputs", "MatMul_0"),
    ],
)
def test_zoo_models_that_break_a_rule_name_it(name, rule, node):
    assert rule_of(load_qonnx(ZOO / name)) == (rule, node)


def test_jettagging_with_an_input_type_meets_every_rule():
    assert rule_of(jet()) is None


def _node(m, name):
    return next(n for n in m.graph.node if n.name == name)


def _set_attr(node, name, value):
    for a in node.attribute:
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def _acts(m):
    inits = {t.name for t in m.graph.initializer}
    return [n for n in m.graph.node if n.op_type == "Quant" and n.input[0] not in inits]


def test_each_rule_is_enforced():
    m = jet()
    _set_attr(_node(m, "Quant_8"), "rounding_mode", "ROUND_TO_ZERO")
    assert rule_of(m) == ("ROUND or FLOOR rounding", "Quant_8")

    m = jet()
    m.set_initializer(_node(m, "Quant_8").input[2], np.asarray(1.0, np.float32))
    assert rule_of(m) == ("zero point 0", "Quant_8")

    m = jet()
    m.set_initializer(_node(m, "Quant_8").input[1], np.asarray(0.1, np.float32))
    assert rule_of(m) == ("power-of-two scales", "Quant_8")

    # a Mul by 3 and a float bias between two layers
    for op, value, rule in [
        ("Mul", 3.0, "no float arithmetic between quantizers"),
        ("Add", 0.1, "integer biases"),
    ]:
        m = jet()
        q = _acts(m)[1]
        c = m.make_new_valueinfo_name()
        m.set_initializer(c, np.asarray(value, np.float32))
        t = m.make_new_valueinfo_name()
        m.graph.node.insert(
            list(m.graph.node).index(q), helper.make_node(op, [q.input[0], c], [t], name="X")
        )
        q.input[0] = t
        assert rule_of(m) == (rule, "X")
    # a power-of-two Mul and a dyadic constant are exact
    m = jet()
    q = _acts(m)[1]
    c = m.make_new_valueinfo_name()
    m.set_initializer(c, np.asarray(0.25, np.float32))
    t = m.make_new_valueinfo_name()
    m.graph.node.insert(
        list(m.graph.node).index(q), helper.make_node("Mul", [q.input[0], c], [t], name="X")
    )
    q.input[0] = t
    assert rule_of(m) is None

    m = jet()
    q = _acts(m)[1]
    t = m.make_new_valueinfo_name()
    m.graph.node.insert(
        list(m.graph.node).index(q), helper.make_node("Sigmoid", [q.input[0]], [t], name="S")
    )
    q.input[0] = t
    assert rule_of(m) == ("supported ops", "S")


def test_bipolar_quant_needs_scale_one():
    m = load_qonnx(ZOO / "TFC_1W1A.onnx")
    q = next(n for n in m.graph.node if n.op_type == "BipolarQuant")  # a weight quantizer
    assert m.get_initializer(q.input[0]) is not None
    m.set_initializer(q.input[1], np.asarray(2.0, np.float32))
    assert rule_of(m) == ("bipolar layers only with scale 1", q.name)


def test_compile_backend_hls4ml_refuses_a_model_that_breaks_a_rule(taper, tmp_path):
    out = tmp_path / "b"
    r = taper("compile", ZOO / "TFC_2W2A.onnx", "--backend", "hls4ml", "--out", out)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "node BatchNormalization_0" in lines[0]
    assert "(hls4ml rule: no float arithmetic between quantizers)" in lines[0]
    assert "arch.batchnorm: fold" in lines[0]  # says which rewrite meets the rule
    assert not out.exists()


# ---------------------------------------------------------------------------- workarounds


def _gemm_model(bias: bool) -> ModelWrapper:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [3, 4], w.ravel())]
    ins = ["x", "w"]
    if bias:
        inits.append(helper.make_tensor("b", TensorProto.FLOAT, [3], [0.5, -1, 2]))
        ins.append("b")
    node = helper.make_node("Gemm", ins, ["y"], name="G", transB=1, alpha=0.5)
    g = helper.make_graph([node], "g", [x], [y], initializer=inits)
    return ModelWrapper(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def test_qonnx_gemm_to_matmul_still_crashes_on_biasless_gemm():
    """Fails when qonnx fixes GemmToMatMul: then drop convert.biasless_gemm_to_matmul."""
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    with pytest.raises(IndexError):
        _gemm_model(bias=False).transform(GemmToMatMul())


def test_biasless_gemm_rewrite_computes_the_same():
    from qonnx.core.onnx_exec import execute_onnx

    x = np.array([[-2.0, -0.5, 0.25, 1.5]], dtype=np.float32)  # dyadic: exact either way
    want = execute_onnx(_gemm_model(bias=False), {"x": x})["y"]
    from qonnx.transformation.infer_shapes import InferShapes

    m = convert.biasless_gemm_to_matmul(_gemm_model(bias=False))
    assert [n.op_type for n in m.graph.node] == ["Transpose", "MatMul", "Mul"]
    onnx.checker.check_model(m.model)
    m = m.transform(InferShapes())
    np.testing.assert_array_equal(execute_onnx(m, {"x": x})["y"], want)


@pytest.fixture(scope="module")
def binary_mlp(tmp_path_factory):
    """Binary weights after a bipolar activation: hls4ml's XNOR path."""
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.recipe import Recipe
    from compiler.qat.train import train

    d = tmp_path_factory.mktemp("bin")
    spec = {
        "name": "bin",
        "arch": {"hidden": [4], "batchnorm": False},
        "input": {"bits": 2},
        "quant": {
            "weights": {"policy": "explicit", "bits": [1, 1]},
            "activations": {"policy": "explicit", "bits": [1]},
        },
        "dataset": {"name": "digits", "holdout": 360},
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.02},
    }
    train(Recipe.model_validate(spec), d, quiet=True)
    compile_model(d / "model.onnx", d / "hw", CompileOptions(target_fps=1e6), quiet=True)
    return d / "hw"


@pytest.mark.xdist_group("hls4ml_binary_mlp")  # shares the module fixture binary_mlp
def test_binary_activations_are_refused(binary_mlp):
    from compiler.build import REFERENCE_ONNX

    rule, node = rule_of(ModelWrapper(str(binary_mlp / REFERENCE_ONNX)))
    assert rule == "no 1-bit activations"


@pytest.mark.xdist_group("hls4ml_binary_mlp")  # shares the module fixture binary_mlp
@pytest.mark.slow
def test_hls4ml_binary_activations_are_still_inexact(binary_mlp, tmp_path):
    """Fails when hls4ml's binary-activation path becomes exact: then lift the rule.

    (hls4ml 1.3 stores the +-1 weights of an XNOR Dense in one unsigned bit, so every weight
    becomes +1; with wider inputs its thresholds land in a type the C++ does not accept.)"""
    from compiler.backends.hls4ml import csim
    from compiler.build import REFERENCE_ONNX
    from compiler.sim import bitexact
    from compiler.verify import _output_to_int, make_inputs

    m = ir.load(binary_mlp)
    model = convert.prepare(ModelWrapper(str(binary_mlp / REFERENCE_ONNX)), "bin")
    hm, _ = convert._convert(model, tmp_path / "hls4ml", "p", m.part, m.clock_mhz)
    hm.write()
    meta = {"project": "p", "in_size": 64, "out_size": 10}
    (tmp_path / "hls4ml" / convert.META).write_text(json.dumps(meta))
    x, _ = make_inputs(m, 200, "digits")
    q = bitexact.quantize_input(m.input_edge, x).reshape(len(x), -1)
    y = csim.run(tmp_path, q * m.input_edge.scale, cache=tmp_path / "cache")
    want = bitexact.run_hardware(m, q)[m.output_tensor]
    assert (_output_to_int(m, y) != want).any(axis=1).sum() > 0


# ---------------------------------------------------------------------------- project


def test_accumulators_are_widened_to_the_exact_worst_case(tmp_path):
    from hls4ml.model.types import FixedPrecisionType

    model = convert.prepare(jet(), "jet")
    hm, widened = convert._convert(model, tmp_path / "p", "p", "xc7z020clg400-1", 100.0)
    assert widened == []  # hls4ml's own inference was exact here
    dense = [layer for layer in hm.get_layers() if layer.class_name == "Dense"]
    good = dense[1].get_attr("accum_t").precision
    dense[1].get_attr("accum_t").precision = FixedPrecisionType(8, 4, True)
    assert convert.exact_accumulators(hm) == [dense[1].name]
    fixed = dense[1].get_attr("accum_t").precision
    assert fixed.width - fixed.integer == good.width - good.integer  # products' fraction bits
    # enough integer bits for the largest |sum| any input of the layer's type can produce
    w = np.asarray(dense[1].weights["weight"].data, np.float64)
    b = np.asarray(dense[1].weights["bias"].data, np.float64)
    xp = dense[1].get_input_variable().type.precision
    xmax = (2.0**xp.width - 1) * 2.0 ** (xp.integer - xp.width)
    assert not xp.signed
    worst = max(np.maximum(w, 0).sum(0).max() * xmax, -(np.minimum(w, 0).sum(0).min() * xmax))
    worst += np.abs(b).max()
    assert 2.0 ** (fixed.integer - 1) > worst


# the jet project these two tests write is the same: on one worker, its g++ C-simulation is
# built once (cached by content)
@pytest.mark.xdist_group("hls4ml_jet")
def test_bitstream_without_vitis_writes_the_project_and_says_what_to_run(taper, tmp_path):
    d = tmp_path / "jet"
    r = taper("compile", JET, "--input-type", "fixed<16,6>", "--backend", "hls4ml", "--out", d)
    assert r.returncode == 0, r.stderr
    meta = json.loads((d / "hls4ml" / "taper.json").read_text())
    assert meta["input_precision"].startswith("fixed<16,6")
    assert (meta["in_size"], meta["out_size"]) == (16, 5)
    tcl = (d / "hls4ml" / "project.tcl").read_text()
    assert 'set part "xc7z020clg400-1"' in tcl and "set clock_period 10.0" in tcl
    r = taper("bitstream", d, "--backend", "hls4ml")
    assert r.returncode == 0, r.stderr
    assert "Vitis HLS not found" in r.stdout
    assert f"cd {d / 'hls4ml'} && vitis-run --tcl build_prj.tcl --mode hls" in r.stdout
    opts = (d / "hls4ml" / "build_opt.tcl").read_text()
    assert re.search(r"synth\s+1", opts) and re.search(r"csim\s+0", opts)


# ---------------------------------------------------------------------------- C-simulation


def _verify_json(taper, *args, cwd=None) -> dict:
    r = taper("verify", *args, "--json", cwd=cwd)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["digits_mlp_hls", "tfc_w2a2_hls"])
def test_hls_recipes_are_bit_exact_against_hls4ml(taper, model, tmp_path, monkeypatch):
    # exactness does not depend on accuracy: the recipe trained 2 epochs (one torch thread),
    # built into tmp_path/build/<name>, not the repo's build/
    doc = yaml.safe_load(recipe_path(model).read_text())
    doc["train"]["epochs"] = 2
    recipe = tmp_path / f"{model}.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # (PYTHONPATH: the repo's code, run from another directory)
    monkeypatch.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)
    against = ("--against", "hls4ml,qonnx,brevitas", "--samples", "1000")
    v = _verify_json(taper, recipe, *against, cwd=tmp_path)
    assert v["samples"] == 1000
    for ref in ("hls4ml", "qonnx", "brevitas"):
        assert v["references"][ref]["mismatches"] == 0, (ref, v)


@pytest.mark.slow
@pytest.mark.xdist_group("hls4ml_jet")  # see above
def test_jettagging_is_bit_exact_against_hls4ml_and_a_broken_project_is_caught(taper, tmp_path):
    d = tmp_path / "jet"
    r = taper("compile", JET, "--input-type", "fixed<16,6>", "--backend", "hls4ml", "--out", d)
    assert r.returncode == 0, r.stderr
    v = _verify_json(taper, d, "--against", "hls4ml", "--samples", "1000")
    assert v["references"]["hls4ml"]["mismatches"] == 0
    # The comparison is live: one changed weight of the C-simulation (which reads its weights
    # from firmware/weights/*.txt) is found.
    wfile = sorted((d / "hls4ml" / "firmware" / "weights").glob("w*.txt"))[0]
    vals = wfile.read_text().strip().split(",")
    vals[0] = "0.5" if float(vals[0]) != 0.5 else "-0.5"
    wfile.write_text(",".join(vals) + "\n")
    v = _verify_json(taper, d, "--against", "hls4ml", "--samples", "1000")
    assert v["references"]["hls4ml"]["mismatches"] > 0
    assert v["references"]["hls4ml"]["first"]["layer"]


def test_readme_documents_the_hls4ml_backend():
    readme = (ROOT / "README.md").read_text()
    assert "--backend hls4ml" in readme and "--against hls4ml" in readme
