"""The rules under which hls4ml reproduces a QONNX model bit for bit, checked before conversion.

hls4ml computes in fixed point. A Quant with a power-of-two scale and zero point 0 is exactly a
fixed-point type; anything else between two quantizers (a float BatchNormalization, a
non-power-of-two Mul, a float bias) it would carry out in approximate fixed point. A model that
breaks a rule gets one line naming the node and the rule, never a silently inexact project.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.errors import TaperError

# Ops that move data or are exact in fixed point given quantized operands.
_PASS_THROUGH = {"Reshape", "Flatten", "Transpose", "Identity", "Squeeze", "Unsqueeze"}
_EXACT = {"MatMul", "Gemm", "Conv", "Relu", "MaxPool", *_PASS_THROUGH}
_COMPUTE = {"MatMul", "Gemm", "Conv"}
# Ops whose output has its input's (quantized) type: a max pool picks one of its inputs.
_KEEPS_TYPE = {"MaxPool", *_PASS_THROUGH}
_QUANTIZERS = {"Quant", "BipolarQuant"}
# A float constant added to quantized data is exact if it is a short dyadic fraction.
_MAX_FRAC_BITS = 16


class RuleError(TaperError):
    """A model hls4ml cannot reproduce exactly; ``rule`` names which rule it breaks."""

    def __init__(self, source: str, node, rule: str, why: str, fix: str = "") -> None:
        self.rule = rule
        self.node = node.name
        msg = f"{source}: node {node.name} ({node.op_type}): {why} (hls4ml rule: {rule})"
        super().__init__(msg + (f"; {fix}" if fix else ""))


def _pow2(v: np.ndarray) -> bool:
    v = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        return False
    return bool(np.all(np.exp2(np.round(np.log2(v))) == v))


def _dyadic(v: np.ndarray) -> bool:
    """Every value a multiple of 2**-16 (exactly representable in a short fixed-point type)."""
    v = np.asarray(v, dtype=np.float64) * 2.0**_MAX_FRAC_BITS
    return bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)))


def _const(model, name: str):
    return model.get_initializer(name) if name else None


def _from_quantizer(model, tensor: str) -> bool:
    """Whether ``tensor`` is produced by a quantizer, through data-movement ops and pools."""
    while True:
        p = model.find_producer(tensor)
        if p is None:
            return False
        if p.op_type in _QUANTIZERS:
            return True
        if p.op_type not in _KEEPS_TYPE:
            return False
        tensor = p.input[0]


def check(model, source: str) -> None:
    """Raise :class:`RuleError` for the first node (in graph order) that breaks a rule."""
    from compiler.frontend.rnn import rnn_meta

    if rnn_meta(model.model) is not None:
        raise TaperError(
            f"{source}: a recurrent network: hls4ml's LSTM/GRU take float Keras/PyTorch "
            "layers, not QONNX (use --backend rtl)"
        )
    nodes = list(model.graph.node)
    last = nodes[-1] if nodes else None
    for node in nodes:
        op = node.op_type
        if op == "Quant":
            _check_quant(model, node, source)
        elif op == "BipolarQuant":
            if _const(model, node.input[0]) is None:
                raise RuleError(
                    source,
                    node,
                    "no 1-bit activations",
                    "a bipolar activation: hls4ml 1.3's binary-activation path "
                    "(BatchNormalizationQuantizedTanh, XNOR Dense) is not bit-exact",
                    "use 2 or more activation bits for hls4ml (FINN and the RTL back end "
                    "take 1-bit activations)",
                )
            s = _const(model, node.input[1])
            if s is None or not np.all(np.asarray(s) == 1.0):
                raise RuleError(
                    source,
                    node,
                    "bipolar layers only with scale 1",
                    f"scale {_show(s)}: hls4ml's bipolar type is exactly {{-1, +1}}",
                )
        elif op == "BatchNormalization":
            raise RuleError(
                source,
                node,
                "no float arithmetic between quantizers",
                "a float BatchNormalization, which hls4ml would compute in approximate fixed point",
                _bn_fix(model, node),
            )
        elif op in ("Mul", "Div"):
            c = _const(model, node.input[1]) if _const(model, node.input[0]) is None else None
            c = c if c is not None else _const(model, node.input[0])
            if c is None or not _pow2(np.abs(c)):
                raise RuleError(
                    source,
                    node,
                    "no float arithmetic between quantizers",
                    f"{op} by {_show(c) if c is not None else 'a tensor'}, not a power of two",
                    "use power-of-two scales (recipe quant.scaling: power_of_two)",
                )
        elif op in ("Add", "Sub"):
            for t in node.input:
                c = _const(model, t)
                if c is not None and not _dyadic(c):
                    raise RuleError(
                        source,
                        node,
                        "integer biases",
                        f"float constant {_show(c)} is not an integer-quantized bias",
                        "quantize biases (Brevitas bias_quant=IntBias)",
                    )
        elif op == "Softmax":
            if node is not last:
                raise RuleError(
                    source,
                    node,
                    "no float arithmetic between quantizers",
                    "a Softmax inside the network (only a trailing one stays on the host)",
                )
        elif op in ("Conv", "MaxPool"):
            _check_window(model, node, source)
        elif op not in _EXACT:
            raise RuleError(
                source,
                node,
                "supported ops",
                "not an op hls4ml's QONNX front end reproduces exactly",
            )
        if op in _COMPUTE and not _from_quantizer(model, node.input[0]):
            raise RuleError(
                source,
                node,
                "quantized inputs",
                "its input is not quantized, so hls4ml has no exact type for it",
                "give the model input a type (--input-type fixed<W,I>) or quantize it",
            )


def _check_quant(model, node, source: str) -> None:
    scale, zp, bits = (_const(model, t) for t in node.input[1:4])
    if scale is None or zp is None or bits is None:
        raise RuleError(
            source, node, "constant quantizers", "scale, zero point or bit width is not a constant"
        )
    if not _pow2(scale):
        raise RuleError(
            source,
            node,
            "power-of-two scales",
            f"scale {_show(scale)} is not a power of two, so no fixed-point type holds it",
            "train with power-of-two scales (recipe quant.scaling: power_of_two)",
        )
    if np.any(np.asarray(zp) != 0):
        raise RuleError(source, node, "zero point 0", f"zero point {_show(zp)}")
    b = np.asarray(bits, dtype=np.float64)
    if b.size != 1 or float(b.ravel()[0]) != math.floor(float(b.ravel()[0])):
        raise RuleError(source, node, "constant quantizers", f"bit width {_show(bits)}")
    mode = next(
        (a.s.decode() for a in node.attribute if a.name == "rounding_mode"), "ROUND"
    ).upper()
    if mode not in ("ROUND", "FLOOR"):
        raise RuleError(
            source,
            node,
            "ROUND or FLOOR rounding",
            f"rounding mode {mode}: hls4ml's fixed-point types round half-to-even or truncate",
        )


def _attr(node, name: str, default=None):
    from onnx import helper

    a = next((a for a in node.attribute if a.name == name), None)
    return default if a is None else helper.get_attribute_value(a)


def _check_window(model, node, source: str) -> None:
    """A 2D convolution or max pool as hls4ml's io_stream layers compute it (tested bit-exact
    in tests/test_hls4ml_cnn.py): no groups, no dilation, explicit zero padding; pooling in
    non-overlapping windows without padding."""
    op = node.op_type
    pad = _attr(node, "auto_pad", b"NOTSET")
    pad = pad.decode() if isinstance(pad, bytes) else pad
    kernel = list(_attr(node, "kernel_shape", []) or [])
    if op == "Conv" and not kernel:  # optional for a Conv: the weight's trailing dims
        kernel = list((model.get_tensor_shape(node.input[1]) or [])[2:])
    why = None
    if len(kernel) != 2:
        why = f"a {len(kernel)}D window: the hls4ml back end takes 2D convolutions and pools"
    elif pad not in ("NOTSET", ""):
        why = f"auto_pad {pad}: hls4ml's ONNX front end takes explicit pads only"
    elif any(d != 1 for d in _attr(node, "dilations", [1, 1]) or [1, 1]):
        why = "a dilated window: hls4ml's streaming convolutions and pools have none"
    elif op == "Conv" and _attr(node, "group", 1) != 1:
        why = "a grouped (depthwise) convolution: not in the hls4ml back end"
    elif op == "MaxPool":
        strides = list(_attr(node, "strides", None) or [1] * len(kernel))  # ONNX's default
        if strides != kernel:
            why = f"stride {strides} for a {kernel} pool: hls4ml streams non-overlapping pools only"
        elif any(_attr(node, "pads", [0] * 4) or [0]):
            why = "a padded max pool: hls4ml's streaming pool has no padding"
        elif _attr(node, "ceil_mode", 0):
            why = "ceil_mode: hls4ml's streaming pool drops a partial window"
    if why is not None:
        raise RuleError(source, node, "supported ops", why)


def _bn_fix(model, node) -> str:
    """Which exact rewrite, if any, meets the rule for this BatchNormalization."""
    gamma, beta, mean, var = (_const(model, t) for t in node.input[1:5])
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    if gamma is not None and var is not None:
        a = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
        b = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * a
        if _pow2(np.abs(a)) and _dyadic(b):
            return (
                "its scale is a power of two per channel: it can be merged exactly into the "
                "preceding layer's weights and bias (not done automatically)"
            )
    p = model.find_producer(node.input[0])
    if p is not None and p.op_type == "Conv":  # QAT folding is for fully connected layers
        return (
            "it cannot be merged exactly into the convolution's weights (its scale is not a "
            "power of two); train the CNN without batch norm (recipe arch.batchnorm: false); "
            "FINN, which turns it into thresholds, takes the model as it is"
        )
    return (
        "it cannot be merged exactly into the weights (its scale is not a power of two); "
        "retrain with batch norm folded into the quantized layers (recipe arch.batchnorm: "
        "fold); FINN, which turns it into thresholds, takes the model as it is"
    )


def _show(v) -> str:
    if v is None:
        return "none"
    a = np.asarray(v).ravel()
    head = ", ".join(f"{x:g}" for x in a[:3])
    return head if a.size == 1 else f"[{head}{', ...' if a.size > 3 else ''}]"
