"""CNNs through the hls4ml back end (io_stream, channels-last): small CNNs without BatchNorm
(power-of-two scales; kernels 1-3, padding 0 and 1, stride 1 and 2, max pooling, 1-8 bits,
unsigned and signed activations) trained one epoch on 8x8 digits, compiled with
``--backend hls4ml`` and bit-exact against hls4ml's g++ C-simulation and qonnx on 200 inputs;
what hls4ml cannot reproduce (a float BatchNorm, grouped, dilated or overlapping windows) is
one line naming the node."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper

from compiler import flow
from compiler.backends.hls4ml import convert, rules
from compiler.frontend.compile import CompileOptions, compile_model
from compiler.verify import verify

pytestmark = pytest.mark.slow

SAMPLES = 200


class _CNN(torch.nn.Module):
    """Brevitas convolutions, each with its activation and an optional 2x2 max pool, a
    flatten, fully connected hidden layers, and an output layer with an integer bias; no
    BatchNorm. Convolutions with an integer bias (``conv_bias``) are not taken by taper's
    compile yet (qonnx's ExtractBiasFromConv, run by FINN's ConvertQONNXtoFINN, fails on a
    quantized conv bias), so the flow's tests have none."""

    def __init__(self, convs, hidden, in_bits, wbits, abits, signed=False, conv_bias=False) -> None:
        from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
        from brevitas.quant.scaled_int import IntBias

        from compiler.qat.quantizers import act_quant, input_quant, weight_quant

        super().__init__()

        def act(bits):
            if signed:
                return QuantIdentity(
                    act_quant=act_quant(bits, signed=True), return_quant_tensor=True
                )
            return QuantReLU(act_quant=act_quant(bits), return_quant_tensor=True)

        layers = [QuantIdentity(act_quant=input_quant(in_bits), return_quant_tensor=True)]
        c, size, bits = 1, 8, iter(zip(wbits, abits, strict=False))
        for channels, k, stride, pad, pool in convs:
            wb, ab = next(bits)
            layers += [
                QuantConv2d(
                    c,
                    channels,
                    k,
                    stride,
                    pad,
                    bias=conv_bias,
                    weight_quant=weight_quant(wb),
                    bias_quant=IntBias.let(bit_width=16),
                ),
                act(ab),
            ]
            size = (size + 2 * pad - k) // stride + 1
            if pool:
                layers.append(torch.nn.MaxPool2d(2))
                size //= 2
            c = channels
        layers.append(torch.nn.Flatten())
        n = c * size * size
        for width in hidden:
            wb, ab = next(bits)
            layers += [QuantLinear(n, width, bias=False, weight_quant=weight_quant(wb)), act(ab)]
            n = width
        out = QuantLinear(
            n,
            10,
            bias=True,
            weight_quant=weight_quant(wbits[-1]),
            bias_quant=IntBias.let(bit_width=16),
        )
        self.net = torch.nn.Sequential(*layers, out)

    def forward(self, x):
        return self.net(x)


# (channels, kernel, stride, padding, pool) per convolution
CNNS = {
    # 1x8x8 -> conv 3x3 pad 1 -> 8x8x4 -> pool -> 4x4x4 -> conv 2x2 (binary weights) -> 3x3x8
    # -> flatten -> 10: the FC reads a 3x3 map, so hls4ml's channels-last flatten order must
    # be the IR's
    "pad1_pool": dict(
        convs=[(4, 3, 1, 1, True), (8, 2, 1, 0, False)],
        hidden=[],
        in_bits=4,
        wbits=[4, 1, 2],
        abits=[3, 2],
    ),
    # conv 3x3 stride 2 pad 1 -> 4x4x6 -> conv 1x1 -> pool -> 2x2x8 -> FC 8 -> 10, 8-bit input,
    # signed activations
    "stride2_signed": dict(
        convs=[(6, 3, 2, 1, False), (8, 1, 1, 0, True)],
        hidden=[8],
        in_bits=8,
        wbits=[8, 5, 6, 2],
        abits=[8, 4, 3],
        signed=True,
    ),
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digits():
    from compiler.qat.data import load

    return load("digits", seed=0, holdout=360)


def _train(spec: dict) -> torch.nn.Module:
    """The CNN trained one epoch on digits: activation scales and weights that use their
    ranges."""
    data = _digits()
    torch.manual_seed(0)
    model = _CNN(**spec)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).long()
    model.train()
    for i in range(0, len(x), 64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
        opt.step()
    return model.eval()


def _trained(d, spec: dict):
    """The trained CNN exported and compiled into the IR."""
    from compiler.qat.export import export_qonnx

    path = export_qonnx(_train(spec), (1, 8, 8), d / "model.onnx")
    return compile_model(path, d / "hw", CompileOptions(target_fps=1e5), quiet=True)


@pytest.mark.parametrize("name", list(CNNS))
def test_cnn_is_bit_exact_against_hls4ml(tmp_path, name):
    m = _trained(tmp_path, CNNS[name])
    assert m.input_edge.perm == (1, 2, 0)  # the stream is channels-last, as hls4ml's
    flow.run(tmp_path / "hw", None, flow.Options(backend="hls4ml"), only=["hls4ml"], quiet=True)
    meta = json.loads((tmp_path / "hw" / "hls4ml" / convert.META).read_text())
    assert meta["in_size"] == int(np.prod(m.input_edge.shape)) == 64
    assert meta["out_size"] == 10
    v = verify(tmp_path / "hw", samples=SAMPLES, against=["qonnx", "hls4ml"], data="digits")
    assert v.samples == SAMPLES
    for ref, res in v.references.items():
        assert res.mismatches == 0, (name, ref, res.first)


def test_conv_bias_is_bit_exact_in_hls4ml(tmp_path):
    """An integer conv bias, a 2x2 kernel and a pool over an odd (7x7) map: hls4ml's
    C-simulation of the converted project against qonnx's execution of the QONNX file (taper's
    compile does not take a quantized conv bias yet: see _CNN)."""
    from compiler.backends.hls4ml import csim
    from compiler.qat.export import export_qonnx
    from compiler.references.qonnx import execute

    spec = dict(
        convs=[(4, 2, 1, 0, True), (6, 3, 1, 1, False)],
        hidden=[],
        in_bits=4,
        wbits=[3, 4, 3],
        abits=[3, 3],
        conv_bias=True,
    )
    path = export_qonnx(_train(spec), (1, 8, 8), tmp_path / "model.onnx")
    ref = ModelWrapper(str(path))
    assert rules.check(ref, "m") is None
    model = convert.prepare(ModelWrapper(str(path)), "m")
    hm, widened = convert._convert(model, tmp_path / "hls4ml", "p", "xc7z020clg400-1", 100.0)
    assert widened == []
    hm.write()
    meta = {"project": "p", "in_size": 64, "out_size": 10}
    (tmp_path / "hls4ml" / convert.META).write_text(json.dumps(meta))
    x = _digits().x_holdout[:SAMPLES]
    out = ref.graph.output[0].name
    want = execute(ref, x, [out])[out]
    q = np.clip(np.round(x * 16), 0, 15) / 16  # the 4-bit input quantizer, scale 1/16
    got = csim.run(tmp_path, q.transpose(0, 2, 3, 1), cache=tmp_path / "cache")
    assert len(np.unique(want)) > 10
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------- rules


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    """A small untrained CNN's QONNX with a float BatchNorm (conv 3x3 pad 1, pool, FC)."""
    from cnn_models import CNNSpec, ConvSpec, SpecCNN, random_batchnorm

    from compiler.qat.export import export_qonnx

    d = tmp_path_factory.mktemp("cnn_rules")
    spec = CNNSpec(1, 8, 4, [ConvSpec(4, 3, 1, 1, 4, 3, False, True)])
    torch.manual_seed(0)
    model = random_batchnorm(SpecCNN(spec), torch.rand(16, 1, 8, 8))
    return export_qonnx(model, (1, 8, 8), d / "bn.onnx")


def _rule(model) -> tuple[str, str] | None:
    try:
        rules.check(model, "m.onnx")
    except rules.RuleError as e:
        return e.rule, e.node
    return None


def test_float_batchnorm_in_a_cnn_is_one_line_naming_the_node(taper, cnn_onnx, tmp_path):
    out = tmp_path / "b"
    r = taper("compile", cnn_onnx, "--backend", "hls4ml", "--out", out)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "node BatchNormalization_0 (BatchNormalization)" in lines[0]
    assert "(hls4ml rule: no float arithmetic between quantizers)" in lines[0]
    assert "arch.batchnorm: false" in lines[0]  # fold is for fully connected layers only
    assert not out.exists()


def _without_bn(path) -> ModelWrapper:
    from compiler.frontend.load import load_qonnx

    m = load_qonnx(path)
    for bn in [n for n in m.graph.node if n.op_type == "BatchNormalization"]:
        for c in m.graph.node:
            c.input[:] = [bn.input[0] if t == bn.output[0] else t for t in c.input]
        m.graph.node.remove(bn)
    return m


def _set(node, **attrs):
    for name, value in attrs.items():
        for a in [a for a in node.attribute if a.name == name]:
            node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(name, value))


@pytest.mark.parametrize(
    "op,attrs,why",
    [
        ("Conv", {"group": 2}, "grouped"),
        ("Conv", {"dilations": [2, 2]}, "dilated"),
        ("MaxPool", {"strides": [1, 1]}, "non-overlapping"),
        ("MaxPool", {"pads": [1, 1, 1, 1]}, "padded"),
        ("MaxPool", {"ceil_mode": 1}, "ceil_mode"),
    ],
)
def test_windows_hls4ml_cannot_stream_are_refused(cnn_onnx, op, attrs, why):
    m = _without_bn(cnn_onnx)
    assert _rule(m) is None
    node = next(n for n in m.graph.node if n.op_type == op)
    _set(node, **attrs)
    with pytest.raises(rules.RuleError, match=why) as e:
        rules.check(m, "m.onnx")
    assert (e.value.rule, e.value.node) == ("supported ops", node.name)


def test_prepare_makes_the_input_and_every_layer_channels_last(cnn_onnx):
    """The graph hls4ml gets computes the reference's outputs from the NHWC image (qonnx's
    execution of its channels-last ops), the FC's weights reordered for the NHWC flatten."""
    from qonnx.core.onnx_exec import execute_onnx

    ref = _without_bn(cnn_onnx)
    hm = convert.prepare(ModelWrapper(ref.model), "m")
    assert hm.get_tensor_shape(hm.graph.input[0].name) == [1, 8, 8, 1]
    assert not [n.op_type for n in hm.graph.node if n.op_type == "Transpose"]
    x = np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32)
    want = execute_onnx(ref, {ref.graph.input[0].name: x})[ref.graph.output[0].name]
    got = execute_onnx(hm, {hm.graph.input[0].name: x.transpose(0, 2, 3, 1)})
    np.testing.assert_array_equal(got[hm.graph.output[0].name], want)
