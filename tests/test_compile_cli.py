"""`taper compile/verify/show` on the command line: bad input and the --json contract."""

import json

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import ZOO


def float_model(path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], [0.5] * 8)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "f",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    onnx.save(helper.make_model(g), path)


def with_trailing_sigmoid(path):
    m = onnx.load(ZOO / "unsw_nb15-mlp-w2a2.onnx")
    out = m.graph.output[0]
    old = out.name
    for n in m.graph.node:
        for i, name in enumerate(n.output):
            if name == old:
                n.output[i] = "pre_sigmoid"
    m.graph.node.append(
        helper.make_node("Sigmoid", ["pre_sigmoid"], [old], name="Sigmoid_9")
    )  # the user's name, which errors show
    onnx.save(m, path)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_text("hello"), "not an ONNX model"),
        (lambda p: p.write_bytes((ZOO / "TFC_2W2A.onnx").read_bytes()[:5000]), "not an ONNX model"),
        (float_model, "a float model (no Quant, BipolarQuant or MultiThreshold node)"),
        (
            with_trailing_sigmoid,
            "node Sigmoid_9 (Sigmoid): neither a hardware layer nor a host edge op",
        ),
    ],
)
def test_bad_model_one_line_exit_2_no_dir(tmp_path, taper, make, message):
    src = tmp_path / "bad.onnx"
    make(src)
    out = tmp_path / "hw"
    r = taper("compile", src, "--out", out)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"taper: error: {src}: ") and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]  # no partial directory


def test_bad_options(tmp_path, taper):
    r = taper(
        "compile",
        ZOO / "qkeras_jettagging.onnx",
        "--out",
        tmp_path / "o",
        "--input-type",
        "float<3>",
    )
    assert r.returncode == 2 and "--input-type: expected fixed<W,I>" in r.stderr
    r = taper("compile", ZOO / "TFC_2W2A.onnx", "--out", tmp_path / "o", "--board", "de10")
    assert r.returncode == 2 and "unknown board 'de10'" in r.stderr
    r = taper("compile", tmp_path / "missing.onnx", "--out", tmp_path / "o")
    assert r.returncode == 2 and "missing.onnx: file not found" in r.stderr
    r = taper("verify", tmp_path, "--against", "qonnx")
    assert r.returncode == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_verify_json_and_show(tmp_path, taper):
    out = tmp_path / "hw"
    r = taper("compile", ZOO / "unsw_nb15-mlp-w2a2.onnx", "--out", out, "--target-fps", "1000000")
    assert r.returncode == 0, r.stderr
    assert "unsw_nb15_mlp_w2a2: 4 layers" in r.stdout
    r = taper("verify", out, "--samples", "200", "--against", "qonnx,finn", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["samples"] == 200
    assert doc["references"] == {"qonnx": {"mismatches": 0}, "finn": {"mismatches": 0}}
    r = taper("show", out)
    assert (
        r.returncode == 0
        and "| MVAU_hls_0 | MatVec | 600 -> 64 | - | 1 | BIPOLAR | INT2 |" in r.stdout
    )


def test_mismatch_names_first_layer_sample_and_values(tmp_path, taper):
    from compiler import ir

    out = tmp_path / "hw"
    assert taper("compile", ZOO / "unsw_nb15-mlp-w2a2.onnx", "--out", out).returncode == 0
    m = ir.load(out)
    layer = m.layers[1]
    layer.thresholds = layer.thresholds - 1
    ir.save(m, out)
    r = taper("verify", out, "--samples", "100", "--against", "finn", "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)["references"]["finn"]
    assert doc["mismatches"] > 0
    first = doc["first"]
    # lowered thresholds can only raise an output
    assert first["layer"] == layer.name and first["ir"] > first["reference"]
    r = taper("verify", out, "--samples", "100", "--against", "finn")
    assert r.returncode == 1
    assert (
        f"first: layer {layer.name}, sample {first['sample']}, element {first['index']}" in r.stdout
    )
