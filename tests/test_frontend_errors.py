"""Bad input to the front end ends in one TaperError line naming the file, the user's node or
the field, and the reason: never another exception, never FINN's internal node names."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from brevitas.inject.enum import ScalingImplType
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant.binary import SignedBinaryActPerTensorConst
from brevitas.quant.fixed_point import Uint8ActPerTensorFixedPoint
from torch import nn

from compiler.errors import TaperError
from compiler.frontend import finn_passes as F
from compiler.frontend.compile import CompileOptions, compile_model
from compiler.frontend.input_type import parse_input_type
from compiler.frontend.load import load_qonnx
from compiler.qat.export import export_qonnx
from compiler.qat.quantizers import act_quant, input_quant, weight_quant

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
JET = ZOO / "qkeras_jettagging.onnx"
UNSW = ZOO / "unsw_nb15-mlp-w2a2.onnx"


def _mlp(*layers: nn.Module, inp=None) -> nn.Module:
    torch.manual_seed(0)
    first = inp or QuantIdentity(act_quant=input_quant(4), return_quant_tensor=True)
    return nn.Sequential(first, *layers).eval()


def _linear(i: int, o: int, bits: int = 4, bias: bool = False) -> QuantLinear:
    return QuantLinear(i, o, bias=bias, weight_quant=weight_quant(bits), return_quant_tensor=True)


def _export(model: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    return export_qonnx(model, shape, path)


def _renamed(src: Path, dst: Path) -> Path:
    """``src`` with every node renamed ``user_<op>_<i>``: names cleanup would change."""
    p = onnx.load(str(src))
    for i, n in enumerate(p.graph.node):
        n.name = f"user_{n.op_type.lower()}_{i}"
    onnx.save(p, str(dst))
    return dst


def _compile_error(src: Path, out: Path, **opts) -> str:
    with pytest.raises(TaperError) as e:
        compile_model(src, out, CompileOptions(**opts), quiet=True)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------- --input-type


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "fixed<16,200>",
            "--input-type 'fixed<16,200>': scale 2^184 is not a finite normal float32 value "
            "(I - W must be -126..127)",
        ),
        (
            "fixed<16,-150>",
            "--input-type 'fixed<16,-150>': scale 2^-166 is not a finite normal float32 value "
            "(I - W must be -126..127)",
        ),
        (
            "ufixed<8,-119>",
            "--input-type 'ufixed<8,-119>': scale 2^-127 is not a finite normal float32 value "
            "(I - W must be -126..127)",
        ),
        (
            "fixed<16,130>",
            "--input-type 'fixed<16,130>': values up to 2^130 are not finite float32 values "
            "(I must be at most 127)",
        ),
    ],
)
def test_input_type_scale_must_be_a_normal_float32(tmp_path, text, message):
    with pytest.raises(TaperError) as e:
        parse_input_type(text)
    assert str(e.value) == message
    assert _compile_error(JET, tmp_path / "hw", input_type=text) == message
    assert not (tmp_path / "hw" / "ir.json").exists()


def test_input_type_extremes_that_are_float32_are_taken():
    assert parse_input_type("fixed<16,-110>").scale == 2.0**-126
    assert parse_input_type("ufixed<8,127>").scale == 2.0**119
    assert np.isfinite(np.float32(parse_input_type("ufixed<16,127>").scale * (2**16 - 1)))


def test_input_type_error_on_the_command_line(taper, tmp_path):
    r = taper("compile", JET, "--out", tmp_path / "hw", "--input-type", "fixed<16,200>")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "taper: error: --input-type 'fixed<16,200>': scale 2^184 is not a finite normal "
        "float32 value (I - W must be -126..127)"
    ]


# ---------------------------------------------------------------------------- folding files


@pytest.fixture(scope="module")
def unsw(tmp_path_factory):
    d = tmp_path_factory.mktemp("unsw")
    compile_model(UNSW, d / "hw", CompileOptions(), quiet=True)
    return d / "hw"


def _chain(unsw: Path):
    from qonnx.core.modelwrapper import ModelWrapper

    return ModelWrapper(str(unsw / "finn_folded.onnx"))


@pytest.mark.xdist_group("frontend_unsw")  # shares the module fixture unsw
@pytest.mark.parametrize(
    "fold,message",
    [
        ({"Defaults": [1, 2]}, """'Defaults': expected a mapping like {"PE": [2, ["MVAU_hls"]]}"""),
        ({"Defaults": "PE"}, """'Defaults': expected a mapping like {"PE": [2, ["MVAU_hls"]]}"""),
        (
            {"Defaults": {"PE": 2}},
            """'Defaults' field 'PE': expected [value, [op types] or "all", ...]""",
        ),
        (
            {"Defaults": {"PE": [2, ["MVAU_hls"], 4]}},
            """'Defaults' field 'PE': expected [value, [op types] or "all", ...]""",
        ),
        (
            {"Defaults": {"PE": [0, "all"]}},
            "'Defaults' field 'PE': PE must be a positive integer, got 0",
        ),
        (
            {"Defaults": {"SIMD": [2, "MVAU_hls"]}},
            "'Defaults' field 'SIMD': expected a list of op types or \"all\" after 2",
        ),
        (
            {"Defaults": {"ram_style": ["block", "all"]}},
            "'Defaults': unknown folding field 'ram_style'",
        ),
        (
            {"Defaults": {"PE": [3, ["MVAU_hls"]]}},
            "layer 'MVAU_hls_0': 'Defaults' PE=3 does not divide MH=64",
        ),
        ({"MVAU_hls_0": [1]}, """layer 'MVAU_hls_0': expected a mapping like {"PE": 4}"""),
        ({"MVAU_hls_0": {"PE": True}}, "layer 'MVAU_hls_0': PE must be a positive integer"),
    ],
)
def test_malformed_folding_entry_is_one_line(unsw, fold, message):
    with pytest.raises(TaperError) as e:
        F.apply_folding(_chain(unsw), fold, "fold.json")
    assert str(e.value) == f"fold.json: {message}"


@pytest.mark.xdist_group("frontend_unsw")  # shares the module fixture unsw
def test_folding_defaults_apply_to_matching_layers(unsw):
    from qonnx.custom_op.registry import getCustomOp

    chain = F.apply_folding(
        _chain(unsw), {"Defaults": {"PE": [2, ["MVAU"]]}, "MVAU_hls_3": {"PE": 1}}, "f.json"
    )
    pes = [getCustomOp(n).get_nodeattr("PE") for n in chain.graph.node]
    assert pes == [2, 2, 2, 1]


@pytest.mark.xdist_group("frontend_unsw")  # shares the module fixture unsw
def test_folding_file_defaults_not_a_mapping_end_to_end(unsw, tmp_path):
    f = tmp_path / "fold.json"
    f.write_text(json.dumps({"Defaults": ["PE", 2]}))
    out = tmp_path / "hw"
    shutil.copytree(unsw, out)
    msg = _compile_error(UNSW, out, folding=str(f))
    assert msg == f"""{f}: 'Defaults': expected a mapping like {{"PE": [2, ["MVAU_hls"]]}}"""


# ---------------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("small")
    model = _mlp(
        _linear(8, 4),
        QuantReLU(act_quant=act_quant(2), return_quant_tensor=True),
        _linear(4, 3, bias=True),
    )
    return _export(model, (8,), d / "small.onnx")


def _with_external_data(src: Path, d: Path, location: str) -> Path:
    """``src`` saved into ``d`` with its largest initializer stored at ``location``."""
    from onnx.external_data_helper import set_external_data

    d.mkdir(parents=True, exist_ok=True)
    p = onnx.load(str(src))
    t = max(p.graph.initializer, key=lambda t: len(t.raw_data) or np.prod(t.dims))
    arr = onnx.numpy_helper.to_array(t)
    data = Path(location) if os.path.isabs(location) else d / location
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(arr.tobytes())
    t.CopyFrom(onnx.numpy_helper.from_array(arr, t.name))
    set_external_data(t, location=location)
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    out = d / "model.onnx"
    out.write_bytes(p.SerializeToString())
    return out, t.name


@pytest.mark.xdist_group("frontend_small")  # shares the module fixture small
def test_external_data_inside_the_directory_is_read(small, tmp_path):
    path, _ = _with_external_data(small, tmp_path / "m", "weights.bin")
    assert len(load_qonnx(path).graph.node) == len(load_qonnx(small).graph.node)


@pytest.mark.xdist_group("frontend_small")  # shares the module fixture small
@pytest.mark.parametrize("kind", ["absolute", "parent", "symlink"])
def test_external_data_path_onnx_refuses_is_one_line(small, tmp_path, kind):
    d = tmp_path / "m"
    if kind == "absolute":
        location = str(tmp_path / "elsewhere" / "w.bin")
        reason = "is refused: it must be a relative path inside the model's directory"
    elif kind == "parent":
        location = "../w.bin"
        reason = "is refused: it must be a relative path inside the model's directory"
    else:
        location = "w.bin"
        reason = "is refused: it is a symbolic link"
    path, tensor = _with_external_data(small, d, location)
    if kind == "symlink":
        (tmp_path / "real.bin").write_bytes((d / "w.bin").read_bytes())
        (d / "w.bin").unlink()
        (d / "w.bin").symlink_to(tmp_path / "real.bin")
    want = f"{path}: tensor '{tensor}': external data path '{location}' {reason}"
    with pytest.raises(TaperError) as e:
        load_qonnx(path)
    assert str(e.value) == want
    assert _compile_error(path, tmp_path / "hw") == want


@pytest.mark.xdist_group("frontend_small")  # shares the module fixture small
def test_missing_external_data_file_is_one_line(small, tmp_path):
    path, tensor = _with_external_data(small, tmp_path / "m", "w.bin")
    (tmp_path / "m" / "w.bin").unlink()
    with pytest.raises(TaperError) as e:
        load_qonnx(path)
    assert str(e.value) == (
        f"{path}: tensor '{tensor}': external data path 'w.bin' not found next to the model"
    )


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty file, not an ONNX model"),
        (b"hello, this is not a model\n", "not an ONNX model (not a valid ONNX protobuf)"),
        (bytes(range(256)) * 4, "not an ONNX model (not a valid ONNX protobuf)"),
    ],
)
def test_not_an_onnx_file_is_one_line(tmp_path, content, message):
    p = tmp_path / "model.onnx"
    p.write_bytes(content)
    with pytest.raises(TaperError) as e:
        load_qonnx(p)
    assert str(e.value) == f"{p}: {message}"
    assert _compile_error(p, tmp_path / "hw") == f"{p}: {message}"


def test_directory_as_model_file_is_one_line(tmp_path):
    p = tmp_path / "model.onnx"
    p.mkdir()
    with pytest.raises(TaperError) as e:
        load_qonnx(p)
    assert str(e.value) == f"{p}: is a directory, expected a QONNX (.onnx) file"


# ---------------------------------------------------------------------------- user's node names


class _Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _mlp(
            _linear(8, 4),
            QuantReLU(act_quant=act_quant(4), return_quant_tensor=True),
            QuantLinear(4, 4, bias=True, weight_quant=weight_quant(4)),
        )

    def forward(self, x):
        return torch.sigmoid(self.body(x))


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = QuantIdentity(act_quant=input_quant(4), return_quant_tensor=True)
        # a 3x1 kernel: taper's sliding window takes square kernels only
        self.conv = QuantConv2d(
            1, 4, (3, 1), bias=False, weight_quant=weight_quant(4), return_quant_tensor=True
        )
        self.act = QuantReLU(act_quant=act_quant(4), return_quant_tensor=True)
        self.fc = QuantLinear(4 * 6 * 8, 4, bias=True, weight_quant=weight_quant(4))

    def forward(self, x):
        return self.fc(self.act(self.conv(self.q(x))).flatten(1))


def test_errors_name_the_users_node_not_finns(tmp_path):
    torch.manual_seed(0)
    sig = _renamed(_export(_Sigmoid().eval(), (8,), tmp_path / "s.onnx"), tmp_path / "sig.onnx")
    assert _compile_error(sig, tmp_path / "hw1") == (
        f"{sig}: node user_sigmoid_7 (Sigmoid): neither a hardware layer nor a host edge op "
        "(leading Reshape/Flatten, trailing Mul/Add/Softmax) can take it"
    )
    conv = _renamed(_export(_Conv().eval(), (1, 8, 8), tmp_path / "c.onnx"), tmp_path / "cnn.onnx")
    # FINN's graph has Transpose_0 and Thresholding_0 around it; the user's file has neither
    assert _compile_error(conv, tmp_path / "hw2") == (
        f"{conv}: node user_conv_3 (Conv; FINN's ConvolutionInputGenerator_rtl): kernel 3x1: "
        "only square kernels are supported"
    )


@pytest.mark.xdist_group("frontend_small")  # shares the module fixture small
def test_finn_exception_is_rewritten_to_the_users_node(small, tmp_path):
    """Whatever FINN raises inside a pass names its own node; taper names the user's (FINN
    made its MultiThreshold of the user's Relu and Quant)."""
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.transformation.base import Transformation

    from compiler.frontend import edges as E

    src = _renamed(small, tmp_path / "m.onnx")
    model = load_qonnx(src)
    E.extract_input_quant(model)

    class Fails(Transformation):
        def apply(self, model):
            mt = next(n for n in model.graph.node if n.op_type == "MultiThreshold")
            raise ValueError(f"{mt.name}: MultiThreshold out_scale must be 1\nfor HLS conversion.")

    with F.finn_environment(tmp_path / "finn"):
        finn = F._tidy(F._transform(model, ConvertQONNXtoFINN()))
        mt = next(n for n in finn.graph.node if n.op_type == "MultiThreshold")
        with pytest.raises(TaperError) as e:
            F._transform(finn, Fails())
    assert mt.name == "MultiThreshold_0"
    assert str(e.value) == (
        f"{src}: FINN's Fails cannot take node user_relu_4 (Relu; FINN's MultiThreshold) "
        "(ValueError: user_relu_4 (Relu; FINN's MultiThreshold): MultiThreshold out_scale "
        "must be 1 for HLS conversion.)"
    )


# ---------------------------------------------------------------------------- refused models


def test_one_bit_quantrelu_is_refused_with_what_to_use(tmp_path):
    relu1 = QuantReLU(act_quant=act_quant(2).let(bit_width=1), return_quant_tensor=True)
    model = _mlp(_linear(8, 4), relu1, _linear(4, 3, bias=True))
    src = _export(model, (8,), tmp_path / "m.onnx")
    assert _compile_error(src, tmp_path / "hw") == (
        f"{src}: node BipolarQuant_0 (BipolarQuant) after Relu_0 (Relu): a 1-bit unsigned "
        "activation (Brevitas exports QuantReLU with bit_width=1 as Relu + BipolarQuant, which "
        "is always +1); use a bipolar QuantIdentity (1-bit signed) or a 2-bit unsigned "
        "activation"
    )


@pytest.mark.xdist_group("frontend_small")  # shares the module fixture small
def test_one_bit_unsigned_quant_is_refused(small, tmp_path):
    """A 1-bit unsigned Quant activation: FINN's thresholds compute something else."""
    from qonnx.core.modelwrapper import ModelWrapper

    m = ModelWrapper(str(small))
    act = next(
        n
        for n in m.graph.node
        if n.op_type == "Quant" and m.get_initializer(n.input[0]) is None and n.name != "Quant_0"
    )
    m.set_initializer(act.input[3], np.asarray(1.0, dtype=np.float32))
    src = tmp_path / "m.onnx"
    m.save(str(src))
    assert _compile_error(src, tmp_path / "hw") == (
        f"{src}: node {act.name} (Quant): a 1-bit unsigned activation, which FINN's thresholds "
        "do not reproduce; use a bipolar QuantIdentity (1-bit signed) or a 2-bit unsigned "
        "activation"
    )


def test_per_channel_activation_scales_before_a_layer_are_refused(tmp_path):
    q = Uint8ActPerTensorFixedPoint.let(
        bit_width=3,
        scaling_impl_type=ScalingImplType.CONST,
        scaling_init=torch.tensor([[0.25, 0.5, 0.25, 1.0]]),
        scaling_per_output_channel=True,
        per_channel_broadcastable_shape=(1, 4),
        scaling_stats_permute_dims=(1, 0),
    )
    model = _mlp(
        _linear(8, 4),
        QuantReLU(act_quant=q),
        QuantLinear(4, 3, bias=False, weight_quant=weight_quant(4)),
    )
    src = _export(model, (8,), tmp_path / "m.onnx")
    assert _compile_error(src, tmp_path / "hw") == (
        f"{src}: node Quant_3 (Quant): per-channel activation scales before Gemm_1 (Gemm) "
        "cannot become integer weights (the hardware needs one scale per tensor there); use a "
        "per-tensor activation quantizer (Brevitas: scaling_per_output_channel=False)"
    )


def test_bipolar_input_before_a_non_binary_layer_is_refused(tmp_path):
    inp = QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True)
    model = _mlp(_linear(8, 4, bits=3, bias=True), inp=inp)
    src = _export(model, (8,), tmp_path / "m.onnx")
    assert _compile_error(src, tmp_path / "hw") == (
        f"{src}: node BipolarQuant_0 (BipolarQuant): a bipolar (±1) model input needs a first "
        "layer with bipolar weights (an XNOR layer), but Gemm_0 (Gemm) has other weights; "
        "quantize the input to 2 or more bits, or use 1-bit weights in the first layer"
    )
