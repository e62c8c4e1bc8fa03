"""FINN work-arounds (compiler/frontend/finn_passes.py): each test shows the upstream
behaviour a work-around exists for, and fails when upstream changes it."""

import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.cleanup import cleanup_model

from compiler.frontend import finn_passes as F
from compiler.frontend.load import load_qonnx

from conftest import ZOO


def test_builder_steps_need_vivado():
    env = {k: v for k, v in os.environ.items() if k != "XILINX_VIVADO"}
    r = subprocess.run(
        [sys.executable, "-c", "import finn.builder.build_dataflow_steps"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode != 0, "FINN's builder imports without Vivado now: use its steps"


def test_apply_config_does_not_check_divisibility(tmp_path):
    from finn.transformation.general import ApplyConfig

    with F.finn_environment(tmp_path):
        m = F.streamline(load_qonnx(ZOO / "unsw_nb15-mlp-w2a2.onnx"))
        m = F.specialize(F.to_hw(m), "xc7z020clg400-1")
        name = m.graph.node[0].name
        m = m.transform(ApplyConfig({"Defaults": {}, name: {"PE": 3}}))  # 3 does not divide 64
        assert F.fold_attrs(m.graph.node[0])["PE"] == 3, "FINN rejects it now: drop our check"


def quant_model(integer_input: bool):
    """x -> Mul(0.5) -> Quant(scale 1, UINT4, ROUND) -> y: ties at every odd x."""
    nodes = [
        helper.make_node("Mul", ["x", "half"], ["h"]),
        helper.make_node(
            "Quant",
            ["h", "s", "z", "b"],
            ["y"],
            domain="qonnx.custom_op.general",
            signed=0,
            narrow=0,
            rounding_mode="ROUND",
        ),
    ]
    inits = [
        helper.make_tensor(n, TensorProto.FLOAT, [], [v])
        for n, v in (("half", 0.5), ("s", 1.0), ("z", 0.0), ("b", 4.0))
    ]
    g = helper.make_graph(
        nodes,
        "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        inits,
    )
    m = cleanup_model(
        ModelWrapper(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    )
    if integer_input:
        m.set_tensor_datatype(m.graph.input[0].name, DataType["UINT8"])
    return m


X = np.arange(8, dtype=np.float32).reshape(1, 8)  # h = 0, .5, 1, 1.5, ...


def run(m, x):
    return execute_onnx(m, {m.graph.input[0].name: x})[m.graph.output[0].name]


def test_finn_thresholds_round_ties_half_up(tmp_path):
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN

    ref = run(quant_model(False), X)
    np.testing.assert_array_equal(ref, [[0, 0, 1, 2, 2, 2, 3, 4]])  # half to even
    with F.finn_environment(tmp_path):
        finn = quant_model(False).transform(ConvertQONNXtoFINN())
        got = run(finn, X)
    assert not np.array_equal(got, ref), "FINN rounds ties half to even now: drop HalfEvenTies"
    np.testing.assert_array_equal(got, [[0, 1, 1, 2, 2, 3, 3, 4]])


def test_streamline_rounds_ties_half_to_even(tmp_path):
    ref = run(quant_model(True), X)
    with F.finn_environment(tmp_path):
        m = F.streamline(quant_model(True))
        assert [n.op_type for n in m.graph.node] == ["MultiThreshold"]
        x = np.arange(256, dtype=np.float32).reshape(32, 8)
        for xi in x:
            got = run(m, xi[None])
            want = run(quant_model(True), xi[None])
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, [[0, 0, 1, 2, 2, 2, 3, 4]])


def _biased_cnn(tmp_path):
    """digits_cnn without BatchNorm: its convolutions have quantized biases (untrained)."""
    import torch
    import yaml

    from compiler.qat.arch import build
    from compiler.qat.export import export_qonnx
    from compiler.qat.recipe import RECIPE_DIR, Recipe

    spec = yaml.safe_load((RECIPE_DIR / "digits_cnn.yaml").read_text())
    spec["arch"]["batchnorm"] = False
    torch.manual_seed(0)
    model = build(Recipe.model_validate({**spec, "name": "nobn"}), (1, 8, 8), 10).eval()
    return export_qonnx(model, (1, 8, 8), tmp_path / "nobn.onnx")


def test_qonnx_cannot_extract_a_conv_bias_with_a_scalar_zero_point(tmp_path):
    """Why conv_bias_params exists: fails when qonnx's ExtractBiasFromConv takes the shape ()
    zero point Brevitas exports (then drop the work-around)."""
    from qonnx.transformation.extract_conv_bias import ExtractBiasFromConv

    model = load_qonnx(_biased_cnn(tmp_path))
    with pytest.raises(ValueError, match="cannot reshape array of size 1"):
        model.transform(ExtractBiasFromConv())
    model.transform(F.conv_bias_params()).transform(ExtractBiasFromConv())


@pytest.mark.slow
def test_a_cnn_with_conv_biases_compiles_bit_exact(tmp_path):
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.verify import verify

    path = _biased_cnn(tmp_path)
    compile_model(path, tmp_path / "hw", CompileOptions(target_fps=1e5), quiet=True)
    v = verify(tmp_path / "hw", samples=200, against=["qonnx", "finn"], data="digits")
    for ref, res in v.references.items():
        assert res.mismatches == 0, (ref, res.first)
