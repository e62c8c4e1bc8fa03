"""Host edges: the float work before and after the integer hardware.

Before FINN runs, a Quant node that quantizes the graph input directly (through shape ops
only) is taken out and becomes the input edge; the hardware then receives its integers.
After conversion to HW layers, leading shape ops and a Thresholding of a float input become
the input edge, and trailing Mul/Add/Softmax the output edge, with a last TopK (FINN's
LabelSelect) as its final step: the output is then class indices. Anything else outside the
HW chain is an error naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.errors import TaperError
from compiler.frontend.finn_passes import OUTPUT_EDGE_OPS, SHAPE_OPS, is_hw
from compiler.frontend.load import describe, origin
from compiler.ir.model import FloatStep, InputEdge, OutputEdge
from compiler.ir.types import IntType


@dataclass
class InputQuant:
    """A Quant node taken off the graph input."""

    scale: float
    zero_point: float
    bits: int
    signed: bool
    narrow: bool
    rounding: str
    pre: list[FloatStep] = field(default_factory=list)

    @property
    def out_type(self) -> IntType:
        return IntType(self.bits, self.signed)


@dataclass
class Edges:
    input: InputEdge
    output: OutputEdge
    first_hw: str
    last_hw: str
    # FINN tensor names of the edges' integer sides, for the finn reference
    hw_input_tensor: str = ""
    hw_output_tensor: str = ""
    notes: list[str] = field(default_factory=list)


def _scalar(model, name: str) -> float | None:
    v = model.get_initializer(name)
    if v is None or v.size != 1:
        return None
    return float(v.reshape(()))


UNSUPPORTED_LAYERS = {
    "Conv": "convolution",
    "ConvTranspose": "transposed convolution",
    "MaxPool": "pooling",
    "AveragePool": "pooling",
    "GlobalAveragePool": "pooling",
    "GlobalMaxPool": "pooling",
    "LSTM": "recurrent",
    "GRU": "recurrent",
    "RNN": "recurrent",
}

ELEMENTWISE = {"Mul": "mul", "Add": "add", "Sub": "sub", "Div": "div"}


def _pre_step(model, node, tensor: str) -> FloatStep | None:
    """A scalar elementwise op on ``tensor`` as a host step (x op c; Mul/Add either order)."""
    if node.op_type not in ELEMENTWISE or len(node.input) != 2:
        return None
    other = node.input[1] if node.input[0] == tensor else node.input[0]
    if node.input[0] != tensor and node.op_type in ("Sub", "Div"):
        return None
    c = model.get_initializer(other)
    if c is None or c.size != 1:
        return None
    return FloatStep(ELEMENTWISE[node.op_type], np.asarray(c, dtype=np.float32).reshape(1))


def extract_input_quant(model) -> InputQuant | None:
    """Take the input's quantizer (and the scalar float ops before it) onto the host.

    The Quant becomes a Mul by its scale and the graph input is marked as integers of the
    Quant's type, so FINN sees integer hardware from the first layer on. Returns what was
    taken, or None when the input is not quantized that way (FINN's thresholds then do it).
    """
    from onnx import helper
    from qonnx.core.datatype import DataType

    inp = model.graph.input[0].name
    t, pre_nodes, pre = inp, [], []
    while True:
        consumers = model.find_consumers(t)
        if len(consumers) != 1:
            return None
        node = consumers[0]
        if node.op_type in SHAPE_OPS:
            t = node.output[0]
            continue
        step = _pre_step(model, node, t)
        if step is None:
            break
        pre_nodes.append(node)
        pre.append(step)
        t = node.output[0]
    if node.op_type != "Quant":
        return None
    scale, zp, bits = (_scalar(model, n) for n in node.input[1:4])
    if scale is None or zp is None or bits is None or zp != 0.0 or scale <= 0:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rounding = attrs.get("rounding_mode", b"ROUND")
    q = InputQuant(
        scale=scale,
        zero_point=zp,
        bits=int(bits),
        signed=bool(attrs.get("signed", 1)),
        narrow=bool(attrs.get("narrow", 0)),
        rounding=rounding.decode() if isinstance(rounding, bytes) else str(rounding),
        pre=pre,
    )
    if q.bits == 1 and q.signed:
        return None  # a 1-bit signed Quant is bipolar; FINN's thresholds handle it
    for pre_node in pre_nodes:  # the host does these now: bypass them
        src = next(i for i in pre_node.input if model.get_initializer(i) is None)
        for c in model.find_consumers(pre_node.output[0]):
            for i, name in enumerate(c.input):
                if name == pre_node.output[0]:
                    c.input[i] = src
        model.graph.node.remove(pre_node)
    # x_int * scale is what the Quant produced: the graph's arithmetic stays, the rounding
    # moves to the host.
    scale_name = model.make_new_valueinfo_name()
    dtype = model.get_initializer(node.input[1]).dtype  # float32, or float64 in a float64 copy
    model.set_initializer(scale_name, np.asarray(scale, dtype=dtype))
    mul = helper.make_node(
        "Mul",
        [node.input[0], scale_name],
        [node.output[0]],
        name="taper_input_scale",
        doc_string=node.doc_string,  # the user's quantizer, for messages
    )
    idx = list(model.graph.node).index(node)
    model.graph.node.remove(node)
    model.graph.node.insert(idx, mul)
    dt = f"{'INT' if q.signed else 'UINT'}{q.bits}" if q.bits > 1 else "BINARY"
    model.set_tensor_datatype(inp, DataType[dt])
    return q


def split_edges(model, input_quant: InputQuant | None, source: str) -> Edges:
    """Find the HW chain in a to-HW graph and turn what surrounds it into host edges."""
    from qonnx.custom_op.registry import getCustomOp

    nodes = list(model.graph.node)
    hw_idx = [i for i, n in enumerate(nodes) if is_hw(n)]
    if not hw_idx:
        first_op = next((n for n in nodes if n.op_type not in SHAPE_OPS), nodes[0])
        raise TaperError(_unmapped(model, first_op, source))
    lo, hi = hw_idx[0], hw_idx[-1]
    perm = _input_layout(model, nodes[:lo], source)
    for i, n in enumerate(nodes[: hi + 1]):  # the first one in graph order
        host_op = n.op_type in SHAPE_OPS or (n.op_type == "Transpose" and perm)
        if (i < lo and not host_op) or (i >= lo and not is_hw(n)):
            raise TaperError(_unmapped(model, n, source))
    graph_in = model.graph.input[0].name
    in_shape = tuple(model.get_tensor_shape(graph_in)[1:])

    first = nodes[lo]
    hw_in = first.input[0]
    shape = tuple(model.get_tensor_shape(hw_in)[1:])
    in_dt = model.get_tensor_datatype(hw_in)
    if first.op_type == "Thresholding" and not in_dt.is_integer():
        inst = getCustomOp(first)
        thresholds = model.get_initializer(first.input[1]).astype(np.float64)
        out_type = IntType.parse(inst.get_nodeattr("outputDataType"))
        edge = InputEdge(
            kind="thresholds",
            in_shape=in_shape,
            shape=shape,
            out_type=out_type,
            thresholds=np.sort(thresholds, axis=1),
            bias=-1 if out_type.bipolar else int(inst.get_nodeattr("ActVal")),
        )
        if out_type.bipolar:  # keep the multithreshold form: 2*count-1 is a different bias
            raise TaperError(
                f"{source}: node {describe(first)}: bipolar input thresholds are not supported"
            )
        if perm and thresholds.shape[0] > 1:
            raise TaperError(
                f"{source}: node {describe(first)}: per-channel thresholds of an image input "
                "are not supported (one threshold row for every channel is)"
            )
        lo += 1
        if lo > hi:
            raise TaperError(f"{source}: no hardware layer after the input thresholds")
        hw_in = nodes[lo].input[0]
    elif not in_dt.is_integer():
        raise TaperError(_float_input(first, source))
    elif input_quant is not None:
        edge = InputEdge(
            kind="quant",
            in_shape=in_shape,
            shape=shape,
            out_type=input_quant.out_type,
            scale=input_quant.scale,
            zero_point=input_quant.zero_point,
            rounding=input_quant.rounding,
            narrow=input_quant.narrow,
            pre=input_quant.pre,
        )
    else:
        edge = InputEdge(
            kind="identity", in_shape=in_shape, shape=shape, out_type=IntType.parse(in_dt.name)
        )
    edge.perm = perm

    steps: list[FloatStep] = []
    tail: list[tuple[int, FloatStep]] = []
    for i, n in enumerate(nodes[hi + 1 :], start=hi + 1):
        if n.op_type == "TopK" and i == len(nodes) - 1:
            steps.append(_topk_step(model, n, source))
            continue
        if n.op_type not in OUTPUT_EDGE_OPS:
            raise TaperError(_unmapped(model, n, source))
        if n.op_type == "Softmax":
            steps.append(FloatStep("softmax"))
            continue
        const = output_constant(model, n)
        if const is None:
            raise TaperError(_unmapped(model, n, source))
        steps.append(FloatStep(n.op_type.lower(), np.asarray(const, dtype=np.float32).reshape(-1)))
        tail.append((i, steps[-1]))
    # finn_passes.exact_thresholds replaces these float32 constants by the float64 ones of
    # the same passes in float64: mapping a reference's output back to the hardware's
    # integers divides by them, and a float32 constant is off by far more than 1/2 there
    # when the output scale is small against the offset (BatchNorm before the output).
    model.taper_output_steps = tail
    out_shape = tuple(model.get_tensor_shape(model.graph.output[0].name)[1:])
    return Edges(
        input=edge,
        output=OutputEdge(steps=steps, out_shape=out_shape),
        first_hw=nodes[lo].name,
        last_hw=nodes[hi].name,
        hw_input_tensor=hw_in,
        hw_output_tensor=nodes[hi].output[0],
    )


def _input_layout(model, before: list, source: str) -> tuple[int, ...]:
    """The per-sample axis order of a Transpose among the host ops in front of the hardware
    (FINN's NCHW -> NHWC in front of a CNN), or () without one."""
    from onnx import helper

    ts = [n for n in before if n.op_type == "Transpose"]
    if not ts:
        return ()
    t = ts[0]
    perm = next((helper.get_attribute_value(a) for a in t.attribute if a.name == "perm"), None)
    if len(ts) > 1 or perm is None or perm[0] != 0 or before.index(t) != len(before) - 1:
        raise TaperError(_unmapped(model, t, source))
    if t.input[0] != model.graph.input[0].name:
        raise TaperError(_unmapped(model, t, source))
    return tuple(int(p) - 1 for p in perm[1:])


def _topk_step(model, node, source: str) -> FloatStep:
    """A trailing TopK (FINN's LabelSelect) whose indices are the model's output: the output
    edge's last step, so the host's output is class labels as FINN's builds give them."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    where = f"{source}: node {describe(node)}"
    shape = model.get_tensor_shape(node.input[0]) or []
    if not shape:
        raise TaperError(f"{where}: TopK's input shape is unknown")
    if int(np.prod(shape[1:])) != shape[-1]:
        raise TaperError(f"{where}: TopK of input shape {list(shape)}; one vector per sample")
    if attrs.get("axis", -1) not in (-1, len(shape) - 1):
        raise TaperError(f"{where}: TopK over axis {attrs['axis']}; only the last axis is taken")
    if not attrs.get("largest", 1) or not attrs.get("sorted", 1):
        raise TaperError(f"{where}: only TopK of the largest values, sorted, is taken")
    k = model.get_initializer(node.input[1]) if len(node.input) > 1 else None
    if k is None or k.size != 1:
        raise TaperError(f"{where}: TopK's k must be a constant")
    outs = [o.name for o in model.graph.output]
    if len(node.output) < 2 or node.output[1] not in outs or node.output[0] in outs:
        raise TaperError(
            f"{where}: the model's output must be TopK's indices (class labels), not its values"
        )
    n = shape[-1]
    if not 1 <= int(k.item()) <= n:
        raise TaperError(f"{where}: k={int(k.item())} for {n} values")
    return FloatStep("topk", k=int(k.item()))


def output_constant(model, node) -> np.ndarray | None:
    """The constant operand of a trailing Mul/Add."""
    return next(
        (model.get_initializer(i) for i in node.input if model.get_initializer(i) is not None),
        None,
    )


def _float_input(node, source: str) -> str:
    return (
        f"{source}: node {describe(node)}: its input is a float, not quantized "
        "integers; name the input's fixed-point type with --input-type (e.g. fixed<16,6>)"
    )


def _unmapped(model, node, source: str) -> str:
    dt = model.get_tensor_datatype(node.input[0]) if node.input else None
    if node.op_type in ("MatMul", "Gemm") and dt is not None and not dt.is_integer():
        return _float_input(node, source)
    # FINN's CNN passes make Transposes, sliding windows and pools of the user's Conv/MaxPool
    o = origin(node) or ""
    user_op = o[o.rfind("(") + 1 : -1] if o.endswith(")") else None
    if node.op_type in UNSUPPORTED_LAYERS or user_op in UNSUPPORTED_LAYERS:
        kind = UNSUPPORTED_LAYERS.get(node.op_type) or UNSUPPORTED_LAYERS[user_op]
        who = describe(node) if node.op_type in UNSUPPORTED_LAYERS else o
        return (
            f"{source}: node {who}: {kind} layers of this form are not supported (taper "
            "compiles MatMul/Gemm and Conv layers of quantized inputs and weights with "
            "quantized activations, and max pooling)"
        )
    return (
        f"{source}: node {describe(node)}: neither a hardware layer nor a host "
        "edge op (leading Reshape/Flatten, trailing Mul/Add/Softmax) can take it"
    )
