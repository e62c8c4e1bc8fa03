"""FINN's CNN passes (compiler/frontend/finn_passes.py) take Brevitas' BNN-PYNQ CNV networks
(random weights, random BatchNorm statistics) and a small padded, strided CNN to FINN's generic
HW layers: between the host's Transpose in front and its Mul/Add behind, only HW nodes. FINN's
Python execution of that graph (finn_hw.onnx as the front end saves it: float32 passes, float64
thresholds) gives qonnx's integers on the exported QONNX at every activation, every pool and
the output, and the same labels. (Lowering into the IR and the whole flow:
tests/test_cnn_compile.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from cnn_models import random_batchnorm
from torch import nn

from compiler.errors import TaperError
from compiler.frontend import edges as E
from compiler.frontend import finn_passes as F
from compiler.frontend.load import load_qonnx
from compiler.frontend.precision import as_float64
from compiler.qat.export import export_qonnx
from compiler.qat.quantizers import act_quant, input_quant, weight_quant

pytestmark = pytest.mark.slow

CIG, MVAU, POOL, PAD = "ConvolutionInputGenerator", "MVAU", "Pool", "FMPadding"
# CNV: 6 convolutions (3x3, no padding), a 2x2 max pool after the 2nd and 4th, 3 FC layers
CNV_HW = (
    [CIG, MVAU] * 2 + [CIG, POOL] + [CIG, MVAU] * 2 + [CIG, POOL] + [CIG, MVAU] * 2 + [MVAU] * 3
)


def _cnv(name: str) -> nn.Module:
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(0)
    model, _ = model_with_cfg(name, pretrained=False)
    return random_batchnorm(model, torch.rand(8, 3, 32, 32))


class SmallCNN(nn.Module):
    """8-bit input, conv 3x3 (stride ``stride``, padding 1), BN, ReLU, 2x2 max pool, conv 3x3
    (padding 1), BN, signed activation, fully connected; ``abits``-bit activations."""

    def __init__(self, stride: int, abits: int, wbits: int, size: int = 12) -> None:
        super().__init__()
        act = act_quant(abits) if abits > 1 else act_quant(1)
        self.q = QuantIdentity(act_quant=input_quant(8), return_quant_tensor=True)
        self.c1 = QuantConv2d(3, 8, 3, stride, 1, bias=False, weight_quant=weight_quant(wbits))
        self.bn1 = nn.BatchNorm2d(8)
        self.a1 = (QuantReLU if abits > 1 else QuantIdentity)(
            act_quant=act, return_quant_tensor=True
        )
        self.pool = nn.MaxPool2d(2)
        self.c2 = QuantConv2d(8, 16, 3, 1, 1, bias=False, weight_quant=weight_quant(wbits))
        self.bn2 = nn.BatchNorm2d(16)
        self.a2 = QuantIdentity(act_quant=act_quant(abits, signed=True), return_quant_tensor=True)
        side = size // stride // 2
        self.fc = QuantLinear(16 * side * side, 10, bias=False, weight_quant=weight_quant(wbits))

    def forward(self, x):
        x = self.pool(self.a1(self.bn1(self.c1(self.q(x)))))
        return self.fc(self.a2(self.bn2(self.c2(x))).flatten(1))


def _small(stride: int, abits: int, wbits: int, path: Path) -> Path:
    torch.manual_seed(0)
    model = random_batchnorm(SmallCNN(stride, abits, wbits), torch.rand(16, 3, 12, 12))
    return export_qonnx(model, (3, 12, 12), path)


def frontend(path: Path, d: Path):
    """The front end's passes up to the generic HW graph it saves as finn_hw.onnx (its host
    edges refuse CNNs after them), and the input quantizer the host takes."""
    with F.finn_environment(d):
        model = load_qonnx(path)
        model64 = as_float64(model)
        iq = E.extract_input_quant(model)
        E.extract_input_quant(model64)
        hw = F.to_hw(F.streamline(model))
        F.exact_thresholds(hw, F.to_hw(F.streamline(model64)))
    return hw, iq


def partition(hw) -> tuple[list[str], list, list[str]]:
    """Op types before the first HW node, the nodes from it to the last, op types after."""
    nodes = list(hw.graph.node)
    idx = [i for i, n in enumerate(nodes) if F.is_hw(n)]
    lo, hi = idx[0], idx[-1]
    return (
        [n.op_type for n in nodes[:lo]],
        nodes[lo : hi + 1],
        [n.op_type for n in nodes[hi + 1 :]],
    )


def _scale(q, tensor: str) -> float:
    """The scale of the quantizer writing ``tensor`` (through shape ops and max pools)."""
    n = q.find_producer(tensor)
    while n.op_type not in ("Quant", "BipolarQuant"):
        n = q.find_producer(n.input[0])
    s = q.get_initializer(n.input[1])
    assert s.size == 1, "per-tensor scales only"
    return float(s.item())


def check_against_qonnx(path: Path, hw, iq, n: int) -> None:
    """qonnx on the exported QONNX and FINN on its HW graph agree on every activation, pool
    and output as integers, and on the labels."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.custom_op.registry import getCustomOp

    q = ModelWrapper(str(path))
    qin, qout = q.graph.input[0].name, q.graph.output[0].name
    shape = q.get_tensor_shape(qin)[1:]
    x = (np.random.default_rng(0).integers(0, 256, (n, *shape)) / 255).astype(np.float32)
    quants = [
        m
        for m in q.graph.node
        if m.op_type in ("Quant", "BipolarQuant") and q.get_initializer(m.input[0]) is None
    ]
    # the input quantizer (the host's), then one per activation layer
    acts = [m.output[0] for m in quants[1:]]
    pools = [m.output[0] for m in q.graph.node if m.op_type == "MaxPool"]
    last_mm = [m for m in q.graph.node if m.op_type in ("Gemm", "MatMul")][-1]
    ctxs = [execute_onnx(q, {qin: xi[None]}, return_full_exec_context=True) for xi in x]

    def ref(t: str, scale: float) -> np.ndarray:
        return np.concatenate([c[t] for c in ctxs]) / scale

    xq = ref(quants[0].output[0], iq.scale)
    assert np.array_equal(xq, np.round(xq))

    _, nodes, _ = partition(hw)
    hw_acts = [
        m
        for m in nodes
        if m.op_type == "Thresholding"
        or (m.op_type == MVAU and not getCustomOp(m).get_nodeattr("noActivation"))
    ]
    hw_pools = [m for m in nodes if m.op_type == POOL]
    assert len(hw_acts) == len(acts) and len(hw_pools) == len(pools)
    out = hw.graph.output[0].name
    got = F.execute(hw, xq.astype(np.float32), [out, *(m.output[0] for m in nodes)])

    def hw_int(m) -> np.ndarray:
        v = got[m.output[0]].reshape(n, *hw.get_tensor_shape(m.output[0])[1:])
        if v.ndim == 4:
            v = v.transpose(0, 3, 1, 2)  # NHWC -> NCHW as qonnx
        if hw.get_tensor_datatype(m.output[0]).name == "BINARY":
            v = 2 * v - 1  # XNOR layers stream bipolar values as bits
        return v

    for m, t in [*zip(hw_acts, acts, strict=True), *zip(hw_pools, pools, strict=True)]:
        want = ref(t, _scale(q, t))
        assert np.array_equal(want, np.round(want)), t
        assert len(np.unique(want)) > 1, f"{t}: constant; the random model is degenerate"
        assert np.array_equal(hw_int(m), want), f"{m.name} differs from qonnx's {t}"
    # the output layer's accumulators
    inst = getCustomOp(nodes[-1])
    acc = got[nodes[-1].output[0]]
    if inst.get_nodeattr("binaryXnorMode"):
        acc = 2 * acc - inst.get_nodeattr("MW")  # popcount -> ±1 dot product
    want = ref(last_mm.output[0], _scale(q, last_mm.input[0]) * _scale(q, last_mm.input[1]))
    assert np.array_equal(want, np.round(want))
    assert np.array_equal(acc, want)
    # the host's output edge on them: qonnx's outputs, its labels
    y, y_ref = got[out], np.concatenate([c[qout] for c in ctxs]).reshape(n, -1)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-4)
    assert np.array_equal(y.argmax(1), y_ref.argmax(1))


# cnv_1w1a (XNOR layers); cnv_1w2a and cnv_2w2a go through the whole flow in
# tests/test_cnn_compile.py, exact against qonnx and FINN on this graph
@pytest.mark.parametrize("name", ["cnv_1w1a"])
def test_cnv_generic_hw_graph_matches_qonnx(name, tmp_path):
    from qonnx.custom_op.registry import getCustomOp

    path = export_qonnx(_cnv(name), (3, 32, 32), tmp_path / f"{name}.onnx")
    hw, iq = frontend(path, tmp_path)
    before, nodes, after = partition(hw)
    assert before == ["Transpose"]  # NCHW -> NHWC, the host's
    assert [m.op_type for m in nodes] == CNV_HW
    assert set(after) <= F.OUTPUT_EDGE_OPS
    xnor = [getCustomOp(m).get_nodeattr("binaryXnorMode") for m in nodes if m.op_type == MVAU]
    # the first layer takes the 8-bit input; with 1-bit activations the others are XNOR
    assert xnor == [0] + [int(name == "cnv_1w1a")] * 8
    check_against_qonnx(path, hw, iq, 3)


@pytest.mark.parametrize("stride,abits,wbits", [(2, 4, 4), (1, 2, 2)])
def test_padded_strided_cnn_matches_qonnx(stride, abits, wbits, tmp_path):
    path = _small(stride, abits, wbits, tmp_path / "small.onnx")
    hw, iq = frontend(path, tmp_path)
    before, nodes, after = partition(hw)
    assert before == ["Transpose"]
    assert [m.op_type for m in nodes] == [PAD, CIG, MVAU, CIG, POOL, PAD, CIG, MVAU, MVAU]
    assert set(after) <= F.OUTPUT_EDGE_OPS
    check_against_qonnx(path, hw, iq, 6)


def test_padded_conv_of_bipolar_activations_is_refused(tmp_path):
    """FINN streams a bipolar activation as one bit: its zero padding is -1 (the XNOR layer
    after it counts it as a mismatch), where Brevitas and qonnx pad with 0."""
    path = _small(1, 1, 1, tmp_path / "bipolar.onnx")
    with pytest.raises(TaperError, match=r"node Conv_1 \(Conv\): zero padding of a bipolar"):
        F.check_supported(load_qonnx(path))


def test_finn_checks_1bit_mul_absorption_weight_by_weight():
    """Fails when FINN checks the weights as whole arrays: drop whole_array_weight_checks."""
    import inspect

    import finn.transformation.streamline.absorb as absorb

    for cls in (absorb.Absorb1BitMulIntoConv, absorb.Absorb1BitMulIntoMatMul):
        assert "np.vectorize(lambda x: Wdt.allowed(x))" in inspect.getsource(cls.apply)
