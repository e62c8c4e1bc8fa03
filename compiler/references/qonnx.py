"""qonnx's node-by-node executor on the QONNX reference model, in float64."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from compiler import build as B
from compiler.frontend.precision import as_float64
from compiler.ir.model import Model
from compiler.references.base import Inputs, Reference, RefOutput, output_to_int, register


def default_opset(model) -> int:
    """The ONNX (default-domain) opset: Brevitas exports list the qonnx domain first, and
    onnxruntime asked for Gemm at the qonnx domain's version 2 fails."""
    for o in model.model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 11


def with_batch(model, n: int):
    """A copy of a qonnx model whose batch dimension is ``n`` (Reshape targets included), so
    that a whole batch runs in one execution and weight quantizers run once."""
    from qonnx.core.modelwrapper import ModelWrapper

    m = ModelWrapper(copy.deepcopy(model.model))
    # Only tensors computed from the input carry the batch (a [1, K] weight does not).
    live = {m.graph.input[0].name}
    for node in m.graph.node:
        if any(i in live for i in node.input):
            live.update(node.output)
    for vi in [*m.graph.input, *m.graph.output, *m.graph.value_info]:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in live and len(dims) > 1 and dims[0].dim_value == 1:
            dims[0].dim_value = n
    for node in m.graph.node:
        if node.op_type == "Reshape":
            shape = m.get_initializer(node.input[1])
            if shape is not None and shape.size and shape[0] == 1:
                shape = shape.copy()
                shape[0] = n
                m.set_initializer(node.input[1], shape)
    return m


def execute(model, x: np.ndarray, names: list[str], chunk: int = 500) -> dict[str, np.ndarray]:
    """qonnx's execution of ``model`` in float64 on ``x`` in batches; ``names`` per sample.

    float64 so that the reference's own rounding (float32 sums of wide products, BatchNorm)
    cannot make a mismatch: the IR's thresholds are derived in float64 too. qonnx's custom
    ops (Quant...) hand back float32 whatever their input; their values are exact in float32
    (quantized), so each result is widened again before the onnxruntime ops that follow.
    """
    from qonnx.core.onnx_exec import execute_node

    model = as_float64(model)
    opset = default_opset(model)
    x = x.astype(np.float64)
    got: dict[str, list] = {t: [] for t in names}
    batched: dict[int, object] = {}
    for start in range(0, len(x), chunk):
        xb = x[start : start + chunk]
        if len(xb) not in batched:  # one copy per batch size, not one per chunk
            batched[len(xb)] = with_batch(model, len(xb))
        mb = batched[len(xb)]
        g = mb.graph
        ctx = mb.make_empty_exec_context()
        ctx[g.input[0].name] = xb
        for node in g.node:
            if node.op_type == "Conv" and node.domain in ("", "ai.onnx"):
                ctx[node.output[0]] = conv_float64(node, *(ctx[i] for i in node.input if i))
                continue
            execute_node(node, ctx, g, opset)
            if node.domain not in ("", "ai.onnx"):
                for o in node.output:
                    ctx[o] = np.asarray(ctx[o], dtype=np.float64)
        for t in names:
            got[t].append(np.asarray(ctx[t], dtype=np.float64).reshape(len(xb), -1))
    return {t: np.concatenate(v) for t, v in got.items()}


def conv_float64(node, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """ONNX Conv (2D) in float64 by torch's conv2d: onnxruntime has no float64 Conv kernel
    (tests/test_cnn_ir.py fails when it gains one; then drop this)."""
    import torch
    from onnx import helper

    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or np.ndim(w) != 4:
        raise NotImplementedError(f"Conv {node.name}: only explicit 2D padding is taken")
    top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
    t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    t = torch.nn.functional.pad(t, (left, right, top, bottom))
    y = torch.nn.functional.conv2d(
        t,
        torch.from_numpy(np.asarray(w, dtype=np.float64)),
        None if b is None else torch.from_numpy(np.asarray(b, dtype=np.float64)),
        stride=tuple(a.get("strides", [1, 1])),
        dilation=tuple(a.get("dilations", [1, 1])),
        groups=int(a.get("group", 1)),
    )
    return y.numpy()


def before_output_ops(model) -> str:
    """The tensor the output edge's invertible steps end in: the graph output, or the input
    of a trailing TopK (class labels) and of a Softmax before it."""
    t = model.graph.output[0].name
    last = model.find_producer(t)
    if last is not None and last.op_type == "TopK":
        t = last.input[0]
    softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
    return softmax[-1].input[0] if softmax else t


def _activation_quants(model) -> list:
    inits = {t.name for t in model.graph.initializer}
    return [
        n
        for n in model.graph.node
        if n.op_type in ("Quant", "BipolarQuant") and n.input[0] not in inits
    ]


@register
class QONNX(Reference):
    name = "qonnx"

    def run(self, build: Path, m: Model, inputs: Inputs) -> RefOutput:
        from qonnx.core.modelwrapper import ModelWrapper

        model = ModelWrapper(str(Path(build) / B.REFERENCE_ONNX))
        out_name = before_output_ops(model)
        # Localization: thresholded layers map onto the last activation quantizers.
        acts = _activation_quants(model)
        thr = [layer for layer in m.layers if getattr(layer, "thresholds", None) is not None]
        pairs = list(zip(reversed(thr), reversed(acts), strict=False))
        names = list(dict.fromkeys([out_name, *(q.output[0] for _, q in pairs)]))
        # FINN's HW nodes (a FINN model given with HW layers) execute one sample at a time
        hw = any(n.domain.startswith("finn.custom_op.fpgadataflow") for n in model.graph.node)
        ref = execute(model, inputs.x, names, chunk=1 if hw else 500)
        values = {}
        for layer, q in pairs:
            scale = model.get_initializer(q.input[1]) if q.op_type == "Quant" else 1.0
            v = ref[q.output[0]] / np.asarray(scale, dtype=np.float64).reshape(1, -1)
            if layer.out_type.name == "BINARY":  # a {0, 1} layer is a bipolar quantizer's ±1
                v = (v + 1) / 2
            values[layer.name] = v
        values[m.layers[-1].name] = output_to_int(m, ref[out_name])
        return RefOutput(values)
