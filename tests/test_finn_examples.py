"""FINN models as FINN users have them: FINN's own ``build_dataflow`` example, read from the
installed ``finn-plus-tests`` wheel (never copied into this repository). Its TFC-W1A1
FINN-ONNX ends in TopK, its ``folding_config.json`` names FINN's nodes and has a stray
``MVA_hls_3`` entry; the labels taper's build gives for ``input.npy`` must equal FINN's
``expected_output.npy``, in the bit-accurate simulator and in the RTL under Verilator."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
from pathlib import Path

import numpy as np
import pytest

from compiler import ir
from compiler.sim import bitexact, host_edges

EXAMPLE = "tests/example_data/build_dataflow/"
GROUP = pytest.mark.xdist_group("finn_example")  # one worker compiles the example once


def example_file(name: str) -> Path:
    """A file of FINN's build_dataflow example, where the finn-plus-tests wheel installed it."""
    for f in importlib.metadata.files("finn-plus-tests") or []:
        if str(f) == EXAMPLE + name:
            return Path(str(f.locate()))
    raise FileNotFoundError(f"finn-plus-tests has no {EXAMPLE}{name}")


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, str]:
    """The example compiled with FINN's folding file: the build directory and stderr."""
    from compiler.frontend.compile import CompileOptions, compile_model

    d = tmp_path_factory.mktemp("finn_example") / "hw"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        compile_model(
            example_file("model.onnx"),
            d,
            CompileOptions(folding=str(example_file("folding_config.json"))),
            quiet=True,
        )
    return d, err.getvalue()


@GROUP
def test_finn_folding_config_applies_and_warns_once_about_the_stray_entry(example):
    d, err = example
    m = ir.load(d)
    # Thresholding_rtl_0 PE 49, MVAU_hls_0..2 as the file says; MVAU_hls_3 has no entry
    # (the file's MVA_hls_3 is a typo FINN ignores), so it stays unfolded: II 640 cycles
    assert [(layer.name, layer.pe, getattr(layer, "simd", None)) for layer in m.layers] == [
        ("Thresholding_rtl_0", 49, None),
        ("MVAU_hls_0", 16, 49),
        ("MVAU_hls_1", 8, 8),
        ("MVAU_hls_2", 8, 8),
        ("MVAU_hls_3", 1, 1),
    ]
    assert m.ii_cycles == 640
    warnings = [line for line in err.splitlines() if line.startswith("[taper] warning:")]
    assert len(warnings) == 1 and "MVA_hls_3" in warnings[0]
    assert "ignored, as FINN ignores them" in warnings[0]
    # the other entries FINN has and taper does not take are named, not silently dropped
    assert any("LabelSelect_hls_0 ignored" in line for line in err.splitlines())
    assert any(
        line.startswith("[taper] note:") and "ram_style" in line for line in err.splitlines()
    )
    # the IR (ir.json) carries the TopK as the output edge's last step
    doc = json.loads((d / "ir.json").read_text())["model"]["output_edge"]
    assert doc["steps"][-1]["op"] == "topk" and doc["steps"][-1]["k"] == 1
    assert m.output_edge.labels and m.output_edge.out_shape == (1,)


@GROUP
@pytest.mark.slow
@pytest.mark.parametrize("on", ["sim", "rtl"])
def test_labels_equal_finns_expected_output(example, taper, tmp_path, on):
    d, _ = example
    out = tmp_path / "labels.npy"
    r = taper("run", d, example_file("input.npy"), "--out", out, "--on", on)
    assert r.returncode == 0, r.stderr
    labels = np.load(out)
    expected = np.load(example_file("expected_output.npy"))
    assert labels.dtype == np.int64 and labels.shape == (len(expected), 1)
    np.testing.assert_array_equal(labels.reshape(-1), expected)


@GROUP
def test_references_bit_exact_and_labels_equal_qonnx(example):
    """qonnx and FINN's execution agree with the IR on the hardware's output integers; and
    the host's TopK gives the labels qonnx's execution of the whole model gives."""
    from qonnx.core.modelwrapper import ModelWrapper

    from compiler.references.qonnx import execute
    from compiler.verify import verify

    d, _ = example
    v = verify(d, samples=64, against=["qonnx", "finn"], quiet=True)
    assert v.ok, v.to_json()
    m = ir.load(d)
    ref = ModelWrapper(str(d / "reference.onnx"))
    x = np.random.default_rng(1).integers(0, 256, size=(300, 1, 28, 28)).astype(np.float32)
    out = ref.graph.output[0].name
    np.testing.assert_array_equal(bitexact.run(m, x), execute(ref, x, [out])[out].astype(np.int64))


@GROUP
def test_deploy_manifest_carries_the_topk(example, tmp_path):
    """The PYNQ package's host edges (JSON, read by host_edges.py on the board) give the
    simulator's labels."""
    from compiler.deploy.manifest import MANIFEST
    from compiler.deploy.package import write_package

    d, _ = example
    write_package(d, tmp_path / "deploy")
    doc = json.loads((tmp_path / "deploy" / MANIFEST).read_text())
    assert doc["output_edge"]["steps"][-1]["op"] == "topk"
    edge = host_edges.output_edge_from_json(doc["output_edge"])
    m = ir.load(d)
    y = np.random.default_rng(0).integers(-64, 65, size=(200, 10))
    np.testing.assert_array_equal(
        host_edges.dequantize_output(edge, y), bitexact.dequantize_output(m.output_edge, y)
    )


@GROUP
@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: np.save(p, np.zeros((4, 784), np.float32)), None),  # flat frames are fine
        (lambda p: np.save(p, np.zeros((4, 1, 28, 27), np.float32)), "of shape (4, 1, 28, 27)"),
        (lambda p: np.save(p, np.zeros((0, 1, 28, 28), np.float32)), "of shape (0, 1, 28, 28)"),
        (lambda p: np.save(p, np.array(["a", "b"])), "values of type <U1, expected floats"),
        (lambda p: np.save(p, np.full((1, 1, 28, 28), np.nan, np.float32)), "not finite"),
        (lambda p: np.save(p, np.full((1, 1, 28, 28), 0.5, np.float32)), "not all UINT8"),
        (lambda p: np.save(p, np.full((1, 1, 28, 28), 256, np.float32)), "not all UINT8"),
        (lambda p: p.write_text("not an array"), "not a readable .npy array"),
    ],
)
def test_run_refuses_bad_inputs_in_one_line(example, taper, tmp_path, make, message):
    d, _ = example
    x, out = tmp_path / "x.npy", tmp_path / "y.npy"
    make(x)
    r = taper("run", d, x, "--out", out)
    if message is None:
        assert r.returncode == 0, r.stderr
        assert np.load(out).shape == (4, 1)
        return
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taper: error: "), r.stderr
    assert message in lines[0]
    if "shape" in message:
        assert "expected N frames of shape (1, 28, 28)" in lines[0]
    assert not out.exists()


def test_run_refuses_a_directory_that_is_no_build(taper, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    r = taper("run", tmp_path, tmp_path / "x.npy", "--out", tmp_path / "y.npy")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "not a compiled build directory" in r.stderr
    assert not (tmp_path / "y.npy").exists()


def test_topk_is_onnx_topk():
    """Largest first, and among equal values the lower index first (ONNX's TopK rule), as
    onnxruntime computes it; the step survives the deploy manifest's JSON."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    v = np.random.default_rng(0).integers(-3, 4, size=(50, 10)).astype(np.float32)  # many ties
    for k in (1, 3, 10):
        graph = helper.make_graph(
            [helper.make_node("TopK", ["x", "k"], ["values", "idx"], axis=-1)],
            "topk",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [50, 10])],
            [
                helper.make_tensor_value_info("values", TensorProto.FLOAT, [50, k]),
                helper.make_tensor_value_info("idx", TensorProto.INT64, [50, k]),
            ],
            [onnx.numpy_helper.from_array(np.array([k], np.int64), "k")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(["idx"], {"x": v})[0]
        steps = [host_edges.Step("topk", k=k)]
        np.testing.assert_array_equal(host_edges.float_steps(steps, v.copy()), want)
        spec = host_edges.OutputSpec(steps)
        back = host_edges.output_edge_from_json(
            json.loads(json.dumps(host_edges.output_edge_to_json(spec)))
        )
        assert back.steps[0].k == k
    with pytest.raises(ValueError, match="after topk"):
        host_edges.float_steps([host_edges.Step("topk", k=1), host_edges.Step("softmax")], v)


@GROUP
@pytest.mark.slow
def test_a_finn_model_with_specialized_hw_layers_compiles(example, tmp_path):
    """A FINN model that FINN already turned into HW layers, specialized (MVAU_hls,
    Thresholding_rtl) and ending in LabelSelect_hls, as FINN's own passes make it: taper
    takes it, keeps its folding, and gives FINN's expected labels."""
    from finn.transformation.fpgadataflow.convert_to_hw.label_select import (
        InferLabelSelectLayer,
    )
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.general import ApplyConfig
    from finn.transformation.streamline.absorb import AbsorbScalarMulAddIntoTopK
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.general import GiveUniqueNodeNames

    from compiler.frontend import finn_passes as F
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.verify import verify

    d, _ = example
    with F.finn_environment(tmp_path / "finn"):
        hw = ModelWrapper(str(d / "finn_hw.onnx"))  # the example's generic HW layers
        for t in (AbsorbScalarMulAddIntoTopK(), AbsorbScalarMulAddIntoTopK()):
            hw = hw.transform(t)
        hw = hw.transform(InferLabelSelectLayer())
        hw = hw.transform(SpecializeLayers("xc7z020clg400-1")).transform(GiveUniqueNodeNames())
        fold = json.loads(example_file("folding_config.json").read_text())
        fold["MVAU_hls_3"] = fold.pop("MVA_hls_3")
        hw = hw.transform(ApplyConfig(fold))
        assert [n.op_type for n in hw.graph.node][-2:] == ["MVAU_hls", "LabelSelect_hls"]
        hw.save(str(tmp_path / "finn_hw_model.onnx"))
    m = compile_model(
        tmp_path / "finn_hw_model.onnx", tmp_path / "hw", CompileOptions(), quiet=True
    )
    assert [layer.pe for layer in m.layers] == [49, 16, 8, 8, 10] and m.ii_cycles == 64
    assert m.output_edge.labels
    x = np.load(example_file("input.npy"))
    expected = np.load(example_file("expected_output.npy"))
    np.testing.assert_array_equal(bitexact.run(m, x).reshape(-1), expected)
    v = verify(tmp_path / "hw", samples=16, against=["qonnx", "finn"], quiet=True)
    assert v.ok, v.to_json()


@GROUP
@pytest.mark.parametrize(
    "change,message",
    [
        (lambda m, n: n.attribute.extend([_attr("largest", 0)]), "only TopK of the largest"),
        (lambda m, n: n.attribute.extend([_attr("axis", 0)]), "TopK over axis 0"),
        (lambda m, n: m.set_initializer(n.input[1], np.array([11])), "k=11 for 10 values"),
        (lambda m, n: m.graph.output[0].CopyFrom(_values_output(n)), "not its values"),
    ],
)
def test_a_topk_the_host_cannot_take_is_one_line(example, change, message):
    from qonnx.core.modelwrapper import ModelWrapper

    from compiler.errors import TaperError
    from compiler.frontend.edges import split_edges

    d, _ = example
    m = ModelWrapper(str(d / "finn_hw.onnx"))
    topk = m.graph.node[-1]
    assert topk.op_type == "TopK"
    for a in [a for a in topk.attribute if a.name in ("largest", "axis")]:
        topk.attribute.remove(a)
    change(m, topk)
    with pytest.raises(TaperError) as e:
        split_edges(m, None, "m.onnx")
    assert str(e.value).startswith("m.onnx: node ") and message in str(e.value)


def _attr(name: str, value: int):
    from onnx import helper

    return helper.make_attribute(name, value)


def _values_output(node):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, [1, 1])
