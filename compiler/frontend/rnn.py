"""Recurrent networks (HitNet LSTM/GRU): the unrolled QONNX graph -> IR.

FINN has no recurrent layer, so these graphs bypass its passes. The exporter
(``compiler/qat/export_rnn.py``) writes the time steps unrolled with named parameters and a
``taper.rnn`` metadata entry (the contract: every tensor name below); this module reads
the parameters once from the graph — weights, biases, slope, each quantizer's scale, bits,
signedness — and derives the cell's integer semantics. The gate activations become
thresholds on the integer accumulator: the smallest accumulator at which the graph's own
float ops (scale, bias, slope, sigmoid/tanh, Quant) reach each output level, found by
bisection on that function in float64 (what the qonnx reference computes).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from compiler.errors import TaperError
from compiler.ir.model import FloatStep, InputEdge, Layer, MatVec, OutputEdge, Recurrent
from compiler.ir.types import IntType, sum_range

RNN_KEY = "taper.rnn"
GATES = {"lstm": 4, "gru": 3}


def rnn_meta(proto, where: str = "") -> dict | None:
    """The ``taper.rnn`` metadata of an ONNX ModelProto (None: not a taper RNN export)."""
    for p in proto.metadata_props:
        if p.key == RNN_KEY:
            try:
                meta = json.loads(p.value)
            except json.JSONDecodeError:
                meta = None
            if not isinstance(meta, dict):
                raise TaperError(f"{where or 'model'}: metadata {RNN_KEY}: not a JSON object")
            return meta
    return None


@dataclass
class _Quant:
    """One Quant node's parameters: value = clip(round(x / scale)) * scale."""

    scale: np.ndarray
    bits: int
    signed: bool
    narrow: bool

    @property
    def qmin(self) -> int:
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def type(self) -> IntType:
        return IntType(self.bits, self.signed)

    def exp(self, where: str) -> int:
        """log2 of a scalar power-of-two scale."""
        s = float(np.asarray(self.scale).reshape(-1)[0])
        if np.asarray(self.scale).size != 1 or s <= 0 or 2.0 ** round(math.log2(s)) != s:
            raise TaperError(
                f"{where}: scale {np.asarray(self.scale).reshape(-1).tolist()} is not one power of two"
            )
        return round(math.log2(s))

    def levels(self, v: np.ndarray) -> np.ndarray:
        """The quantizer's integer of float64 ``v`` (round half to even, clip)."""
        return np.clip(np.round(v / np.asarray(self.scale, dtype=np.float64)), self.qmin, self.qmax)


class _Graph:
    def __init__(self, model, source: str) -> None:
        self.m = model
        self.source = source
        self.inits = {t.name for t in model.graph.initializer}

    def init(self, name: str) -> np.ndarray:
        v = self.m.get_initializer(name)
        if v is None:
            raise TaperError(f"{self.source}: RNN graph has no initializer '{name}'")
        return np.asarray(v, dtype=np.float64)

    def quant(self, prefix: str) -> _Quant:
        """The Quant node reading ``prefix.scale`` (any of the steps': they share it)."""
        scale = f"{prefix}.scale"
        node = next(
            (n for n in self.m.graph.node if n.op_type == "Quant" and n.input[1] == scale), None
        )
        if node is None:
            raise TaperError(f"{self.source}: RNN graph has no Quant node with scale '{scale}'")
        from onnx import helper

        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        rounding = a.get("rounding_mode", b"ROUND")
        rounding = rounding.decode() if isinstance(rounding, bytes) else rounding
        if rounding.upper() not in ("ROUND", "HALF_EVEN"):
            raise TaperError(
                f"{self.source}: Quant {node.name}: rounding {rounding}, expected ROUND"
            )
        zp = self.init(node.input[2])
        if np.any(zp != 0):
            raise TaperError(f"{self.source}: Quant {node.name}: zero point must be 0")
        bits = self.init(node.input[3])
        if bits.size != 1 or bits.item() != round(bits.item()) or not 1 <= bits.item() <= 16:
            raise TaperError(f"{self.source}: Quant {node.name}: bit width {bits.tolist()}")
        return _Quant(
            self.init(scale), int(bits.item()), bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        )

    def weights(self, name: str, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, _Quant]:
        """The integer matrix (cols x rows as the graph stores it, returned transposed: one
        row per output) and the per-output scales of weight ``name``."""
        w = self.init(name)
        q = self.quant(name)
        if w.shape != (rows, cols):
            raise TaperError(f"{self.source}: {name} of shape {w.shape}, expected {(rows, cols)}")
        scale = np.broadcast_to(np.asarray(q.scale, dtype=np.float64), (1, cols)).reshape(cols)
        if np.any(scale <= 0):
            raise TaperError(f"{self.source}: {name}: weight scales must be positive")
        # the initializer holds values already quantized by the exporter: the Quant is exact
        ints = q.levels(w)
        if not np.allclose(ints * scale, w, rtol=1e-6, atol=0):
            raise TaperError(f"{self.source}: {name}: weights are not on their quantizer's grid")
        return ints.T.astype(np.int64), scale, q


def _exact_shift(a: int, b: int) -> tuple[int, int]:
    """Left shifts that put exponents a and b on the smaller one."""
    m = min(a, b)
    return a - m, b - m


def thresholds_of(fn, lo: np.ndarray, hi: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """Per row r, thresholds T[r, k] (k = 1 .. qmax - qmin) of a non-decreasing integer
    function ``fn(r_index, acc) -> level`` on integers acc in [lo[r], hi[r]]: T[r, k] is the
    least acc with level >= qmin + k, ``lo`` when every acc reaches it, ``hi + 1`` when none
    does (so that ``count(acc >= T) + qmin`` equals the level everywhere in the range)."""
    rows, steps = len(lo), qmax - qmin
    out = np.empty((rows, steps), dtype=np.int64)
    idx = np.arange(rows)
    for k in range(1, steps + 1):
        target = qmin + k
        a, b = lo.astype(np.int64).copy(), hi.astype(np.int64) + 1  # answer in [a, b]
        while np.any(a < b):
            mid = (a + b) // 2
            ok = fn(idx, mid) >= target
            b = np.where(ok & (a < b), mid, b)
            a = np.where(~ok & (a < b), mid + 1, a)
        out[:, k - 1] = a
    return out


def _check_monotone(fn, lo, hi, where: str) -> None:
    # a negative weight scale or slope would make the activation decrease with acc
    if np.any(fn(np.arange(len(lo)), lo) > fn(np.arange(len(lo)), hi)):
        raise TaperError(f"{where}: the gate activation decreases with its input")


def lower_rnn(model, source: str) -> tuple[InputEdge, list[Layer], OutputEdge]:
    """The host edges and hardware layers of a taper RNN export (``rnn_meta`` set)."""
    meta = rnn_meta(model.model)
    if meta is None:
        raise TaperError(f"{source}: not a taper RNN export (no {RNN_KEY} metadata)")
    try:
        cell, steps, feats = str(meta["cell"]), int(meta["steps"]), int(meta["features"])
        hidden = [int(h) for h in meta["hidden"]]
        classes = int(meta["classes"])
    except (KeyError, TypeError, ValueError):
        raise TaperError(
            f"{source}: metadata {RNN_KEY}: expected cell, steps, features, hidden, classes"
        ) from None
    if cell not in GATES or min(steps, feats, classes, *hidden, 1) < 1 or not hidden:
        raise TaperError(f"{source}: metadata {RNN_KEY}: {meta}")
    g = _Graph(model, source)
    xq = g.quant("x")
    if xq.signed:
        raise TaperError(f"{source}: the input quantizer x_quant must be unsigned")
    in_shape = tuple(int(d.dim_value) for d in model.graph.input[0].type.tensor_type.shape.dim)
    edge = InputEdge(
        kind="quant",
        in_shape=in_shape[1:],
        shape=(steps * feats,),
        out_type=xq.type,
        scale=float(np.asarray(xq.scale).reshape(-1)[0]),
        zero_point=0.0,
        rounding="ROUND",
        narrow=xq.narrow,
    )
    if math.prod(edge.in_shape) != steps * feats:
        raise TaperError(f"{source}: input {in_shape}, expected {steps} steps of {feats}")
    layers: list[Layer] = []
    x_type, x_exp, x_lo, x_hi = xq.type, xq.exp(f"{source}: x_quant"), xq.qmin, xq.qmax
    tensor = "x"
    for li, h in enumerate(hidden):
        p = f"rnn{li}"
        layer = _recurrent(
            g,
            p,
            cell,
            steps,
            x_type,
            x_exp,
            x_lo,
            x_hi,
            h,
            tensor,
            return_sequences=li < len(hidden) - 1,
        )
        layers.append(layer)
        tensor = layer.output
        x_type, x_exp, x_lo, x_hi = layer.out_type, layer.h_exp, layer.h_min, layer.h_max
    # the head: logits = (h @ Wq) + b = (alpha * 2**h_exp) * acc + b
    w, alpha, wq = g.weights("head.W", hidden[-1], classes)
    lo, hi = sum_range(w, x_lo, x_hi)
    acc = IntType.for_range(min(lo.min(), 0), max(hi.max(), 0))
    layers.append(
        MatVec(
            name="head",
            input=tensor,
            output="head_acc",
            input_type=x_type,
            out_type=acc,
            weight_type=wq.type,
            acc_type=acc,
            weights=w,
        )
    )
    out = OutputEdge(
        steps=[
            FloatStep("mul", (alpha * 2.0**x_exp).astype(np.float32)),
            FloatStep("add", g.init("head.b").astype(np.float32).reshape(classes)),
        ],
        out_shape=(classes,),
    )
    return edge, layers, out


def _recurrent(
    g: _Graph,
    p: str,
    cell: str,
    steps: int,
    x_type: IntType,
    x_exp: int,
    x_lo: int,
    x_hi: int,
    h: int,
    tensor: str,
    return_sequences: bool,
) -> Recurrent:
    src = f"{g.source}: layer {p}"
    n_in = g.init(f"{p}.W").shape[0] - h
    if n_in < 1:
        raise TaperError(f"{src}: {p}.W has {n_in + h} rows for hidden size {h}")
    gates = GATES[cell]
    hq, gq, cq = g.quant(f"{p}.hidden"), g.quant(f"{p}.gate"), g.quant(f"{p}.cand")
    if gq.signed or not (hq.signed and hq.narrow and cq.signed and cq.narrow):
        raise TaperError(
            f"{src}: expected an unsigned gate quantizer and signed narrow hidden and candidate "
            "quantizers"
        )
    h_exp, g_exp, c_exp = (
        hq.exp(f"{g.source}: {p}.hidden"),
        gq.exp(f"{g.source}: {p}.gate"),
        cq.exp(f"{g.source}: {p}.cand"),
    )
    if g_exp > 0:
        raise TaperError(f"{src}: gate scale above 1")
    x_shift, h_shift = _exact_shift(x_exp, h_exp)
    base = min(x_exp, h_exp)
    if cell == "lstm":
        w, alpha, wq = g.weights(f"{p}.W", n_in + h, 4 * h)
        bias = g.init(f"{p}.b").reshape(4 * h)
    else:
        w_rz, a_rz, wq = g.weights(f"{p}.W", n_in + h, 2 * h)
        w_n, a_n, wq_n = g.weights(f"{p}.Wn", n_in + h, h)
        if wq_n.type != wq.type:
            raise TaperError(f"{src}: {p}.W and {p}.Wn must have one weight type")
        w, alpha = np.concatenate([w_rz, w_n]), np.concatenate([a_rz, a_n])
        bias = np.concatenate([g.init(f"{p}.b").reshape(2 * h), g.init(f"{p}.bn").reshape(h)])
    slope = float(g.init(f"{p}.slope").reshape(-1)[0])
    if not slope > 0:
        raise TaperError(f"{src}: slope {slope}, expected a positive number")
    # ranges of v = [x << x_shift; h << h_shift] (GRU candidate: rh in h's range)
    v_lo = np.concatenate([np.full(n_in, x_lo << x_shift), np.full(h, hq.qmin << h_shift)])
    v_hi = np.concatenate([np.full(n_in, x_hi << x_shift), np.full(h, hq.qmax << h_shift)])
    lo, hi = sum_range(w, v_lo, v_hi)
    step = alpha * 2.0**base  # the float value of one accumulator unit, per row
    sig_rows = (gates - 1) * h

    def pre(rows, acc):
        # the graph's float ops: MatMul (exact in float64), Add bias, Mul slope
        return (step[rows] * acc + bias[rows]) * slope

    def sig_level(rows, acc):
        return gq.levels(1.0 / (1.0 + np.exp(-pre(rows, acc))))

    def tanh_level(rows, acc):
        return cq.levels(np.tanh(pre(rows + sig_rows, acc)))

    sl, sh = lo[:sig_rows], hi[:sig_rows]
    _check_monotone(sig_level, sl, sh, src)
    g_max = int(sig_level(np.arange(sig_rows), sh).max()) if sig_rows else 0
    gate_thr = thresholds_of(sig_level, sl, sh, 0, max(g_max, 1))
    tl, th = lo[sig_rows:], hi[sig_rows:]
    _check_monotone(tanh_level, tl, th, src)
    c_lo = int(tanh_level(np.arange(h), tl).min())
    c_hi = max(int(tanh_level(np.arange(h), th).max()), c_lo + 1)
    cand_thr = thresholds_of(tanh_level, tl, th, c_lo, c_hi)
    acc_type = IntType.for_range(min(lo.min(), -1), max(hi.max(), 0) + 1)
    kw: dict = {}
    if cell == "lstm":
        cell_q, act_q = g.quant(f"{p}.cell"), g.quant(f"{p}.cell_act")
        if not (cell_q.signed and act_q.signed and act_q.narrow):
            raise TaperError(f"{src}: expected signed cell and signed narrow cell_act quantizers")
        ce, ae = cell_q.exp(f"{g.source}: {p}.cell"), act_q.exp(f"{g.source}: {p}.cell_act")
        cv = np.arange(cell_q.qmin, cell_q.qmax + 1)
        lv = act_q.levels(np.tanh(cv * 2.0**ce))
        a_lo, a_hi = int(lv.min()), max(int(lv.max()), int(lv.min()) + 1)
        cell_thr = thresholds_of(
            lambda _r, c: act_q.levels(np.tanh(c * 2.0**ce)),
            np.array([cell_q.qmin]),
            np.array([cell_q.qmax]),
            a_lo,
            a_hi,
        )
        kw = dict(
            cell_type=cell_q.type,
            cell_exp=ce,
            cell_min=cell_q.qmin,
            cell_max=cell_q.qmax,
            cell_act_type=act_q.type,
            cell_act_exp=ae,
            cell_thresholds=cell_thr,
            cell_bias=a_lo,
        )
    return Recurrent(
        name=p,
        input=tensor,
        output=f"{p}_h",
        input_type=x_type,
        out_type=hq.type,
        cell=cell,  # type: ignore[arg-type]
        steps=steps,
        in_features=n_in,
        hidden=h,
        weight_type=wq.type,
        acc_type=acc_type,
        weights=w,
        gate_type=gq.type,
        gate_exp=g_exp,
        gate_thresholds=gate_thr,
        cand_type=cq.type,
        cand_exp=c_exp,
        cand_thresholds=cand_thr,
        cand_bias=c_lo,
        h_exp=h_exp,
        h_min=hq.qmin,
        h_max=hq.qmax,
        x_shift=x_shift,
        h_shift=h_shift,
        return_sequences=return_sequences,
        **kw,
    )
