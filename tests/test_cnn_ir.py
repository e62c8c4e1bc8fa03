"""The IR's CNN kinds against PyTorch (no code of ours): a SlidingWindow followed by a MatVec
over its ``n_vectors`` output pixels is ``conv2d`` (kernel, stride, zero padding), and MaxPool
is ``max_pool2d``, on random integer images, channels-last as the stream carries them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compiler.ir import IntType, MatVec, MaxPool, SlidingWindow
from compiler.sim import bitexact

T4 = IntType.parse("INT4")


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    "d,c,k,s,p",
    [
        (5, 3, 3, 1, 1),
        (7, 2, 2, 2, 0),
        (6, 4, 5, 1, 2),
        (4, 1, 1, 2, 0),
        (9, 2, 3, 2, 2),
        (3, 2, 5, 1, 1),
    ],
)
def test_window_and_matvec_are_conv2d(d, c, k, s, p):
    rng = np.random.default_rng(d * 100 + k)
    w = SlidingWindow("w", "a", "b", T4, T4, ifm_dim=d, channels=c, kernel=k, stride=s, pad=p)
    w.check()
    x = rng.integers(-8, 8, (3, d, d, c))
    y = bitexact.run_layer(w, x.reshape(3, -1))
    o = w.ofm_dim
    assert y.shape == (3, w.out_frame)
    im2col = torch.nn.functional.unfold(_nchw(x), k, padding=p, stride=s)
    im2col = im2col.reshape(3, c, k, k, o, o).permute(0, 4, 5, 2, 3, 1).numpy()
    assert np.array_equal(im2col.reshape(3, -1), y)
    kw = rng.integers(-3, 4, (5, c, k, k))
    acc = IntType.parse("INT20")
    mv = MatVec(
        "m",
        "b",
        "c",
        T4,
        acc,
        weight_type=IntType.parse("INT3"),
        acc_type=acc,
        weights=kw.transpose(0, 2, 3, 1).reshape(5, -1),
        n_vectors=o * o,
    )
    mv.check()
    z = bitexact.run_layer(mv, y).reshape(3, o, o, 5)
    ref = torch.nn.functional.conv2d(
        _nchw(x), torch.tensor(kw, dtype=torch.float64), stride=s, padding=p
    )
    assert np.array_equal(ref.permute(0, 2, 3, 1).numpy(), z)


@pytest.mark.parametrize("d,k", [(4, 2), (7, 2), (9, 3), (5, 5), (6, 1)])
def test_maxpool_is_max_pool2d(d, k):
    x = np.random.default_rng(d + k).integers(-8, 8, (4, d, d, 3))
    mp = MaxPool("p", "a", "b", T4, T4, ifm_dim=d, channels=3, kernel=k)
    mp.check()
    y = bitexact.run_layer(mp, x.reshape(4, -1)).reshape(4, d // k, d // k, 3)
    ref = torch.nn.functional.max_pool2d(_nchw(x), k).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ref, y)


def test_window_checks_name_the_layer():
    with pytest.raises(ValueError, match="layer w: SIMD=2 does not divide 3"):
        SlidingWindow("w", "a", "b", T4, T4, ifm_dim=4, channels=3, kernel=3, simd=2).check()
    with pytest.raises(ValueError, match="layer w: kernel 5 larger than the padded image"):
        SlidingWindow("w", "a", "b", T4, T4, ifm_dim=2, channels=3, kernel=5, pad=1).check()
    with pytest.raises(ValueError, match="layer p: output type INT8, expected the input's INT4"):
        MaxPool("p", "a", "b", T4, IntType.parse("INT8"), ifm_dim=4, channels=3, kernel=2).check()


def _conv_model(dtype, pads, strides):
    from onnx import TensorProto, helper

    t = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["y"], pads=pads, strides=strides, kernel_shape=[3, 3]
    )
    g = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info(n, t, None) for n in ("x", "w", "b")],
        [helper.make_tensor_value_info("y", t, None)],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), node


def test_onnxruntime_has_no_float64_conv():
    """Why the qonnx reference runs Conv through torch in float64 (references/qonnx.py
    conv_float64): fails when onnxruntime gains a float64 Conv; then drop the work-around."""
    import onnxruntime as ort

    model, _ = _conv_model(np.float64, [1, 1, 1, 1], [1, 1])
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("pads,strides", [([0, 0, 0, 0], [1, 1]), ([1, 2, 2, 1], [2, 1])])
def test_float64_conv_equals_onnxruntimes_float32_conv_on_integers(pads, strides):
    import onnxruntime as ort

    from compiler.references.qonnx import conv_float64

    rng = np.random.default_rng(0)
    x = rng.integers(-8, 8, (2, 3, 7, 6)).astype(np.float32)
    w = rng.integers(-4, 4, (5, 3, 3, 3)).astype(np.float32)
    b = rng.integers(-9, 9, 5).astype(np.float32)
    model, node = _conv_model(np.float32, pads, strides)
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = s.run(None, {"x": x, "w": w, "b": b})
    got = conv_float64(node, x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    assert got.dtype == np.float64 and np.array_equal(got, want)


def test_input_edge_perm_survives_the_boards_json_and_transposes_each_sample():
    """The driver rebuilds the input edge from the package's JSON: a CNN's NCHW -> NHWC
    (``perm``) must survive it, and quantize must transpose each sample by it."""
    from compiler.deploy.manifest import InputEdgeJSON
    from compiler.ir import InputEdge
    from compiler.sim import host_edges

    e = InputEdge(
        "quant", (2, 3, 4), (3, 4, 2), IntType.parse("UINT4"), scale=1 / 16, perm=(1, 2, 0)
    )
    d = host_edges.input_edge_to_json(e)
    back = host_edges.input_edge_from_json(InputEdgeJSON.model_validate(d).model_dump())
    assert back.perm == (1, 2, 0)
    x = np.random.default_rng(0).uniform(0, 1, (5, 2, 3, 4)).astype(np.float32)
    want = np.clip(np.round(x * 16), 0, 15).transpose(0, 2, 3, 1)
    for edge in (e, back):
        assert np.array_equal(host_edges.quantize_input(edge, x), want)
