"""Host edges: the float work on either side of the integer accelerator, in numpy alone.

The input edge turns float samples into the first layer's integers, the output edge turns
the last layer's integers into floats (or class indices, when the model ends in TopK). This
module is THE implementation: the bit-accurate
simulator (`compiler.sim.bitexact`) calls it, and the deployment package ships this very file
next to the board driver, which calls it too, so a board computes its edges with the code the
simulator was checked with. It therefore imports nothing but numpy (and the standard library).

The functions take edges by their attributes (duck typing): an IR edge
(`compiler.ir.InputEdge` / `OutputEdge`, whose ``out_type`` is a `compiler.ir.IntType`) or
the `InputSpec` / `OutputSpec` below, which the driver rebuilds from the package manifest
(`input_edge_to_json` / `input_edge_from_json` and the output pair are that JSON form;
floats are written exactly: a float32 or float64 value survives a JSON round trip).

Attributes read from an input edge: ``kind`` (``quant``, ``thresholds``, ``identity``),
``shape`` (integers per sample), ``out_type`` (``bits``, ``signed``, ``bipolar``, ``min``,
``max``, ``contains``), ``scale``, ``zero_point``, ``rounding``, ``narrow``, ``thresholds``
(float64, (C or 1, steps), sorted per row), ``bias``, ``pre`` (float steps) and ``perm``
(axes of a sample's integers, ``in_shape`` order, to transpose before flattening; () none,
the NCHW -> NHWC of a CNN is (1, 2, 0)). Output edge:
``steps``. A float step has ``op`` (``mul``, ``add``, ``sub``, ``div``, ``softmax``, and
last in an output edge ``topk``), ``value`` (a float32 array, or None) and ``k`` (topk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT = 1  # of the JSON form below


# ---------------------------------------------------------------------------- the edges


def quantize(edge: Any, x: np.ndarray) -> np.ndarray:
    """The input edge's integers (N, *edge.shape) for float samples x (N, ...), as float32
    when they fit (they are at most 16 bits): what the simulator feeds its first layer."""
    q = _quantize_flat(edge, x)
    perm = tuple(getattr(edge, "perm", ()) or ())
    if perm:
        q = q.reshape(len(q), *edge.in_shape).transpose(0, *(p + 1 for p in perm))
    return q.reshape(len(q), *edge.shape)


def _quantize_flat(edge: Any, x: np.ndarray) -> np.ndarray:
    n = len(x)
    x = np.asarray(x).reshape(n, -1)
    if edge.kind == "identity":
        q = np.asarray(x, dtype=np.float64)
        if not np.array_equal(q, np.round(q)) or not edge.out_type.contains(q):
            raise ValueError(f"input values are not all {edge.out_type} integers")
        return q.astype(np.float32)
    if edge.kind == "quant":
        # As the reference: its float ops, then QONNX's Quant (x / scale + zero_point,
        # clipped, rounded), all in float32.
        v = float_steps(edge.pre, x.astype(np.float32, copy=True))  # a copy it may overwrite
        if edge.scale != 1.0:  # x / 1 and x + 0 are exact no-ops: skip the passes
            v /= np.float32(edge.scale)
        if edge.zero_point != 0.0:
            v += np.float32(edge.zero_point)
        v = round_mode(v, edge.rounding)
        lo = edge.out_type.min + (1 if edge.narrow and edge.out_type.signed else 0)
        return np.clip(v, lo, edge.out_type.max, out=v)
    if edge.kind == "thresholds":
        # The thresholds are float32 values (FINN computed them so): compare in float32.
        t = edge.thresholds.astype(np.float32)
        q = multithreshold(x.astype(np.float32, copy=False), t, np.float32)
        if edge.bias:
            q += np.float32(edge.bias)
        return q
    raise ValueError(f"unknown input edge kind {edge.kind}")


def quantize_input(edge: Any, x: np.ndarray) -> np.ndarray:
    """Host input edge: float samples (N, *in_shape) -> int64 (N, *shape)."""
    return quantize(edge, x).astype(np.int64)


def round_mode(v: np.ndarray, mode: str) -> np.ndarray:
    """The rounding modes of QONNX's Quant node."""
    mode = mode.upper()
    if mode in ("ROUND", "HALF_EVEN"):
        return np.round(v, out=v)
    if mode == "FLOOR":
        return np.floor(v, out=v)
    if mode == "CEIL":
        return np.ceil(v, out=v)
    if mode == "UP":
        return np.sign(v) * np.ceil(np.abs(v))
    if mode == "DOWN":
        return np.trunc(v)
    if mode == "HALF_UP":
        return np.sign(v) * np.floor(np.abs(v) + 0.5)
    if mode == "HALF_DOWN":
        return np.sign(v) * np.ceil(np.abs(v) - 0.5)
    raise ValueError(f"unsupported rounding mode {mode}")


def multithreshold(acc: np.ndarray, thresholds: np.ndarray, dtype) -> np.ndarray:
    """count(acc[:, c] >= T[c, :]) for every channel c (T sorted per channel), as ``dtype``."""
    n, c = acc.shape
    steps = thresholds.shape[1]
    t = thresholds.astype(acc.dtype) if acc.dtype != np.int64 else thresholds
    if steps == 0:
        return np.zeros((n, c), dtype=dtype)
    if steps <= 8:  # a few compares over the whole batch beat a search
        # one shared row: a scalar per step compares faster than a broadcast row
        t = t[0] if t.shape[0] == 1 else t.T
        out = np.empty((n, c), dtype=dtype)
        np.greater_equal(acc, t[0], out=out, casting="unsafe")
        for s in range(1, steps):
            out += acc >= t[s]
        return out
    if t.shape[0] == 1:  # one row for all channels: a single sorted search
        return np.searchsorted(t[0], acc, side="right").astype(dtype)
    out = np.empty((n, c), dtype=dtype)
    for ch in range(c):
        # side="right": number of thresholds <= value, i.e. count(value >= T)
        out[:, ch] = np.searchsorted(t[ch], acc[:, ch], side="right")
    return out


_UFUNCS = {"mul": np.multiply, "add": np.add, "sub": np.subtract, "div": np.divide}


def topk(v: np.ndarray, k: int) -> np.ndarray:
    """ONNX's TopK indices (largest, sorted) over the last axis, int64: the ``k`` largest
    values largest first, and among equal values the lower index first, as onnxruntime and
    FINN's LabelSelect give them."""
    if not 1 <= k <= v.shape[-1]:
        raise ValueError(f"topk: k={k} for {v.shape[-1]} values")
    # a stable sort of the negated values keeps equal values in index order
    return np.argsort(-v, axis=-1, kind="stable")[..., :k].astype(np.int64)


def float_steps(steps, v: np.ndarray) -> np.ndarray:
    """Host float ops in float32, as onnxruntime evaluates them in the reference graph.

    Works in place on ``v`` (callers pass an array they own) where shapes allow. A ``topk``
    step turns the values into int64 indices, so it can only be the last.
    """
    labels = False
    for step in steps:
        if labels:
            raise ValueError(f"host step {step.op} after topk")
        if step.op == "topk":
            v, labels = topk(v, int(step.k)), True
            continue
        if step.op == "softmax":
            e = np.exp(v - v.max(axis=-1, keepdims=True))
            v = e / e.sum(axis=-1, keepdims=True)
            continue
        if step.op not in _UFUNCS:
            raise ValueError(f"unknown host op {step.op}")
        c = step.value.astype(np.float32)
        f = _UFUNCS[step.op]
        v = f(v, c, out=v) if np.broadcast_shapes(v.shape, c.shape) == v.shape else f(v, c)
    return v


def dequantize_output(edge: Any, y: np.ndarray) -> np.ndarray:
    """Host output edge in float32, as the reference graph computes it; class indices
    (int64) when it ends in ``topk``."""
    return float_steps(edge.steps, y.astype(np.float32))


# ---------------------------------------------------------------------------- plain edges


@dataclass(frozen=True)
class IntRange:
    """An integer element type as the edges read it (the board has no `compiler.ir`)."""

    bits: int
    signed: bool
    bipolar: bool = False

    @property
    def min(self) -> int:
        if self.bipolar:
            return -1
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        if self.bipolar:
            return 1
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self) -> str:
        if self.bipolar:
            return "BIPOLAR"
        if not self.signed and self.bits == 1:
            return "BINARY"
        return f"{'INT' if self.signed else 'UINT'}{self.bits}"

    def __str__(self) -> str:
        return self.name

    def contains(self, a: np.ndarray) -> bool:
        a = np.asarray(a)
        if self.bipolar:
            return bool(np.all((a == -1) | (a == 1)))
        return bool(a.size == 0 or (a.min() >= self.min and a.max() <= self.max))


@dataclass
class Step:
    op: str
    value: np.ndarray | None = None
    k: int = 0


@dataclass
class InputSpec:
    kind: str
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    out_type: IntRange
    scale: float = 1.0
    zero_point: float = 0.0
    rounding: str = "ROUND"
    narrow: bool = False
    thresholds: np.ndarray | None = None
    bias: int = 0
    pre: list[Step] = field(default_factory=list)
    perm: tuple[int, ...] = ()


@dataclass
class OutputSpec:
    steps: list[Step] = field(default_factory=list)
    out_shape: tuple[int, ...] = ()


def _steps_to_json(steps) -> list[dict]:
    out = []
    for s in steps:
        d = {
            "op": s.op,
            "value": None if s.value is None else np.asarray(s.value, np.float32).ravel().tolist(),
            "shape": None if s.value is None else list(np.shape(s.value)),
        }
        if s.op == "topk":
            d["k"] = int(s.k)
        out.append(d)
    return out


def _steps_from_json(steps: list[dict]) -> list[Step]:
    out = []
    for s in steps:
        v = s.get("value")
        if v is not None:
            v = np.asarray(v, dtype=np.float32).reshape(s.get("shape") or np.shape(v))
        out.append(Step(str(s["op"]), v, int(s.get("k") or 0)))
    return out


def input_edge_to_json(edge: Any) -> dict:
    """An input edge (IR or `InputSpec`) as JSON-ready data, exactly."""
    t = edge.out_type
    return {
        "kind": edge.kind,
        "in_shape": [int(d) for d in edge.in_shape],
        "shape": [int(d) for d in edge.shape],
        "type": {"bits": int(t.bits), "signed": bool(t.signed), "bipolar": bool(t.bipolar)},
        "scale": float(edge.scale),
        "zero_point": float(edge.zero_point),
        "rounding": str(edge.rounding),
        "narrow": bool(edge.narrow),
        "thresholds": None
        if edge.thresholds is None
        else np.asarray(edge.thresholds, np.float64).tolist(),
        "thresholds_shape": None if edge.thresholds is None else list(np.shape(edge.thresholds)),
        "bias": int(edge.bias),
        "pre": _steps_to_json(edge.pre),
        "perm": [int(p) for p in getattr(edge, "perm", ()) or ()],
    }


def input_edge_from_json(d: dict) -> InputSpec:
    t = d["type"]
    th = d.get("thresholds")
    return InputSpec(
        kind=str(d["kind"]),
        in_shape=tuple(int(x) for x in d["in_shape"]),
        shape=tuple(int(x) for x in d["shape"]),
        out_type=IntRange(int(t["bits"]), bool(t["signed"]), bool(t.get("bipolar", False))),
        scale=float(d.get("scale", 1.0)),
        zero_point=float(d.get("zero_point", 0.0)),
        rounding=str(d.get("rounding", "ROUND")),
        narrow=bool(d.get("narrow", False)),
        thresholds=None
        if th is None
        else np.asarray(th, dtype=np.float64).reshape(d.get("thresholds_shape") or np.shape(th)),
        bias=int(d.get("bias", 0)),
        pre=_steps_from_json(d.get("pre", [])),
        perm=tuple(int(p) for p in d.get("perm", [])),
    )


def output_edge_to_json(edge: Any) -> dict:
    return {"steps": _steps_to_json(edge.steps), "out_shape": [int(d) for d in edge.out_shape]}


def output_edge_from_json(d: dict) -> OutputSpec:
    return OutputSpec(
        steps=_steps_from_json(d.get("steps", [])),
        out_shape=tuple(int(x) for x in d.get("out_shape", ())),
    )
