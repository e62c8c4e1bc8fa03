"""A trained recurrent network (compiler/qat/arch/rnn.py) -> QONNX, time steps unrolled.

The graph is the contract the lowering (compiler/frontend/rnn.py) reads by name:

- input ``x`` (1, 1, T, F) -> Quant ``x_quant`` -> ``xq``; step t's input is Slice(xq, axis 2,
  [t, t+1)) -> Flatten(axis 1), (1, F);
- layer l: initializers ``rnn{l}.W`` (I+H, G*H), the quantized values, columns [i|f|o|g]
  (LSTM) or [r|z] (GRU, with ``rnn{l}.Wn`` (I+H, H) for the candidate), each through one
  Quant ``rnn{l}.W_quant`` -> ``rnn{l}.Wq`` (per-column scale ``rnn{l}.W.scale`` (1, G*H));
  biases ``rnn{l}.b`` (``rnn{l}.bn``), the sloping factor ``rnn{l}.slope``; activation
  Quant nodes whose parameters are ``rnn{l}.{gate,cand,cell,cell_act,hidden}.{scale,
  zero_point,bits}``, shared by all steps, power-of-two scales fixed by the bits;
- per step: Concat([x_t, h]) -> MatMul -> Add b -> Mul slope -> Slice gates -> Sigmoid/Tanh
  -> Quant, then the cell update of arch/rnn.py (t = 0 multiplies x_0 by the x rows only:
  h_{-1} = 0); step tensors are named ``rnn{l}.t{t}.{i,f,o,g,c,tc,h}`` (LSTM) or
  ``rnn{l}.t{t}.{r,z,rh,n,h}`` (GRU; no ``rh`` at t = 0);
- head: ``head.W`` (H, C) -> Quant ``head.W_quant`` -> MatMul -> Add ``head.b`` -> ``y``;
- metadata ``taper.rnn``: {"version": 1, "cell", "steps", "features", "hidden", "classes"}.

Brevitas' own export cannot unroll a Python loop into this form and qonnx cleanup would fold
and rename the weight quantizers, so the graph is built with onnx.helper and only shape
inference runs on it. qonnx's executor runs it (float64 in compiler.references.qonnx).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from compiler.build import atomic_write
from compiler.errors import TaperError
from compiler.qat.hitnet import ActSpec, cell_spec, gate_spec, input_spec, tanh_spec

QONNX_DOMAIN = "qonnx.custom_op.general"
OPSET = 13


class _Graph:
    """Nodes and initializers under construction, with unique node names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def init(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def const_i64(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def op(self, op: str, inputs: list[str], out: str, **attrs) -> str:
        self._n += 1
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self._n}", **attrs))
        return out

    def quant(self, x: str, prefix: str, spec: ActSpec, out: str, node: str) -> str:
        """A Quant node with the parameters ``prefix``.scale/zero_point/bits (created once)."""
        if not any(i.name == f"{prefix}.scale" for i in self.inits):
            self.init(f"{prefix}.scale", spec.scale)
            self.init(f"{prefix}.zero_point", 0.0)
            self.init(f"{prefix}.bits", float(spec.bits))
        self.nodes.append(
            helper.make_node(
                "Quant",
                [x, f"{prefix}.scale", f"{prefix}.zero_point", f"{prefix}.bits"],
                [out],
                name=node,
                domain=QONNX_DOMAIN,
                signed=int(spec.signed),
                narrow=int(spec.narrow),
                rounding_mode="ROUND",
            )
        )
        return out

    def weight(self, name: str, w: torch.Tensor, scale: torch.Tensor, bits: int) -> str:
        """Initializer ``name`` (quantized values) and its Quant -> ``name``q."""
        self.init(name, w.detach().double().numpy())
        self.init(f"{name}.scale", scale.detach().double().numpy().reshape(1, -1))
        self.init(f"{name}.zero_point", 0.0)
        self.init(f"{name}.bits", float(bits))
        self.nodes.append(
            helper.make_node(
                "Quant",
                [name, f"{name}.scale", f"{name}.zero_point", f"{name}.bits"],
                [f"{name}q"],
                name=f"{name}_quant",
                domain=QONNX_DOMAIN,
                signed=1,
                narrow=1,
                rounding_mode="ROUND",
            )
        )
        return f"{name}q"

    def cols(self, x: str, start: int, end: int, out: str, axis: int = 1) -> str:
        """Columns [start, end) of a (1, K) tensor (rows of a matrix with ``axis=0``)."""
        s = self.const_i64(f"{out}.starts", [start])
        e = self.const_i64(f"{out}.ends", [end])
        a = self.const_i64(f"{out}.axes", [axis])
        return self.op("Slice", [x, s, e, a], out)


def _check_weights(name: str, w: torch.Tensor, scale: torch.Tensor, bits: int) -> None:
    """The exported values must be integers times their column's scale within the range
    (the Quant node on them is then the identity)."""
    k = w.double() / scale.double()
    top = 2 ** (bits - 1) - 1
    if not torch.equal(k, torch.round(k)) or k.abs().max() > top:
        raise TaperError(f"{name}: weights are not {bits}-bit integers times their scale")


def export_rnn(model: torch.nn.Module, path: Path) -> Path:
    """Write ``model`` (an :class:`~compiler.qat.arch.rnn.RNN`, eval semantics) as QONNX."""
    arch = model.arch
    if arch.quantizer == "float":
        raise TaperError(
            "arch.quantizer float is a full-precision baseline: it trains but has no QONNX "
            "export (use hitnet or uniform)"
        )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            proto = _build(model)
    finally:
        model.train(was_training)
    atomic_write(Path(path), lambda p: onnx.save(proto, str(p)))
    return Path(path)


def _build(model) -> onnx.ModelProto:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    arch, bits = model.arch, model.arch.bits
    steps, feats = model.steps, model.features
    g = _Graph()
    g.quant("x", "x", input_spec(model.input_bits), "xq", "x_quant")
    # per-step inputs: row t of the image
    xs = []
    for t in range(steps):
        s = g.const_i64(f"x.t{t}.starts", [t])
        e = g.const_i64(f"x.t{t}.ends", [t + 1])
        a = g.const_i64(f"x.t{t}.axes", [2])
        row = g.op("Slice", ["xq", s, e, a], f"x.t{t}.row")
        xs.append(g.op("Flatten", [row], f"x.t{t}", axis=1))
    if arch.cell == "gru":
        g.init("one", 1.0)  # GRU's 1 - z
    for li, layer in enumerate(model.layers):
        xs = _layer(g, li, layer, xs, bits, arch.cell)
    hw, hscale = model.head.weights()
    _check_weights("head.W", hw, hscale, bits.head)
    wq = g.weight("head.W", hw, hscale, bits.head)
    g.init("head.b", model.head.linear.bias.detach().double().numpy())
    mm = g.op("MatMul", [xs[-1], wq], "head.mm")
    g.op("Add", [mm, "head.b"], "y")

    classes = model.n_classes
    graph = helper.make_graph(
        g.nodes,
        "taper_rnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, steps, feats])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])],
        initializer=g.inits,
    )
    proto = helper.make_model(
        graph,
        producer_name="taper",
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)],
    )
    meta = {
        "version": 1,
        "cell": arch.cell,
        "steps": steps,
        "features": feats,
        "hidden": list(arch.hidden),
        "classes": classes,
    }
    helper.set_model_props(proto, {"taper.rnn": json.dumps(meta)})
    return ModelWrapper(proto).transform(InferShapes()).model


def _layer(g: _Graph, li: int, layer, xs: list[str], bits, cell: str) -> list[str]:
    """Layer ``li`` over the step inputs ``xs``; returns its h_t per step."""
    p, hid, n_in = f"rnn{li}.", layer.hidden, layer.n_in
    weights = layer.weights()
    w, wscale = weights["W"]
    _check_weights(f"{p}W", w, wscale, bits.weight)
    wq = g.weight(f"{p}W", w, wscale, bits.weight)
    g.init(f"{p}b", layer.b.detach().double().numpy())
    g.init(f"{p}slope", np.float32(layer.slope))
    # t = 0: h_{-1} = 0, so only the x rows of each matrix (the contract's shortcut)
    wx = g.cols(wq, 0, n_in, f"{p}Wq.x", axis=0)
    if cell == "gru":
        wn, nscale = weights["Wn"]
        _check_weights(f"{p}Wn", wn, nscale, bits.weight)
        wnq = g.weight(f"{p}Wn", wn, nscale, bits.weight)
        g.init(f"{p}bn", layer.bn.detach().double().numpy())
        wnx = g.cols(wnq, 0, n_in, f"{p}Wnq.x", axis=0)
    gate, cand, hidden = gate_spec(bits.gate), tanh_spec(bits.cand), tanh_spec(bits.hidden)
    h = c = None
    hs = []
    for t, x in enumerate(xs):
        q = f"{p}t{t}."
        if t == 0:
            mm = g.op("MatMul", [x, wx], f"{q}mm")
        else:
            v = g.op("Concat", [x, h], f"{q}v", axis=1)
            mm = g.op("MatMul", [v, wq], f"{q}mm")
        pre = g.op("Mul", [g.op("Add", [mm, f"{p}b"], f"{q}pre_b"), f"{p}slope"], f"{q}pre")
        if cell == "lstm":
            sig = g.op("Sigmoid", [g.cols(pre, 0, 3 * hid, f"{q}pre_ifo")], f"{q}sig")
            gq = g.quant(sig, f"{p}gate", gate, f"{q}ifo", f"{q}gate_quant")
            i = g.cols(gq, 0, hid, f"{q}i")
            f = g.cols(gq, hid, 2 * hid, f"{q}f")
            o = g.cols(gq, 2 * hid, 3 * hid, f"{q}o")
            th = g.op("Tanh", [g.cols(pre, 3 * hid, 4 * hid, f"{q}pre_g")], f"{q}tanh_g")
            gg = g.quant(th, f"{p}cand", cand, f"{q}g", f"{q}cand_quant")
            ig = g.op("Mul", [i, gg], f"{q}ig")
            csum = ig if t == 0 else g.op("Add", [g.op("Mul", [f, c], f"{q}fc"), ig], f"{q}c_sum")
            c = g.quant(csum, f"{p}cell", cell_spec(bits.cell), f"{q}c", f"{q}cell_quant")
            tc = g.op("Tanh", [c], f"{q}tanh_c")
            tcq = g.quant(
                tc, f"{p}cell_act", tanh_spec(bits.cell_act), f"{q}tc", f"{q}cell_act_quant"
            )
            h = g.quant(
                g.op("Mul", [o, tcq], f"{q}otc"), f"{p}hidden", hidden, f"{q}h", f"{q}hidden_quant"
            )
        else:
            sig = g.op("Sigmoid", [pre], f"{q}sig")
            gq = g.quant(sig, f"{p}gate", gate, f"{q}rz", f"{q}gate_quant")
            r = g.cols(gq, 0, hid, f"{q}r")
            z = g.cols(gq, hid, 2 * hid, f"{q}z")
            if t == 0:
                mn = g.op("MatMul", [x, wnx], f"{q}mm_n")
            else:
                rh = g.quant(
                    g.op("Mul", [r, h], f"{q}r_h"),
                    f"{p}hidden",
                    hidden,
                    f"{q}rh",
                    f"{q}rh_quant",
                )
                vn = g.op("Concat", [x, rh], f"{q}v_n", axis=1)
                mn = g.op("MatMul", [vn, wnq], f"{q}mm_n")
            pn = g.op("Mul", [g.op("Add", [mn, f"{p}bn"], f"{q}pre_n_b"), f"{p}slope"], f"{q}pre_n")
            n = g.quant(
                g.op("Tanh", [pn], f"{q}tanh_n"), f"{p}cand", cand, f"{q}n", f"{q}cand_quant"
            )
            zn = g.op("Mul", [g.op("Sub", ["one", z], f"{q}1mz"), n], f"{q}zn")
            hsum = zn if t == 0 else g.op("Add", [zn, g.op("Mul", [z, h], f"{q}zh")], f"{q}h_sum")
            h = g.quant(hsum, f"{p}hidden", hidden, f"{q}h", f"{q}hidden_quant")
        hs.append(h)
    return hs
