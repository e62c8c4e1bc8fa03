"""Bit-accurate simulator of the IR: the reference every back end is checked against.

Integer semantics, computed with numpy on whole batches. Values flow between layers as
floats holding integers wherever that is provably exact, so that matrix products run
through BLAS: a layer's accumulator type bounds every product and every partial sum (in any
summation order), so float32 is exact for accumulators up to 24 bits and float64 up to 53
bits; wider accumulators use int64. Public functions return int64.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.model import InputEdge, Layer, MatVec, Model, OutputEdge, Thresholding

EXACT_FLOAT32_BITS = 24
EXACT_FLOAT64_BITS = 53


def _dtype(bits: int):
    if bits <= EXACT_FLOAT32_BITS:
        return np.float32
    if bits <= EXACT_FLOAT64_BITS:
        return np.float64
    return np.int64


def quantize_input(edge: InputEdge, x: np.ndarray) -> np.ndarray:
    """Host input edge: float samples (N, *in_shape) -> int64 (N, *shape)."""
    return _quantize(edge, x).astype(np.int64)


def _quantize(edge: InputEdge, x: np.ndarray) -> np.ndarray:
    """The input edge's integers, as float32 when they fit (they are at most 16 bits)."""
    n = len(x)
    x = np.asarray(x).reshape(n, -1)
    if edge.kind == "identity":
        q = np.asarray(x, dtype=np.float64)
        if not np.array_equal(q, np.round(q)) or not edge.out_type.contains(q):
            raise ValueError(f"input values are not all {edge.out_type} integers")
        return q.astype(np.float32).reshape(n, *edge.shape)
    if edge.kind == "quant":
        # As the reference: its float ops, then QONNX's Quant (x / scale + zero_point,
        # clipped, rounded), all in float32.
        v = float_steps(edge.pre, x.astype(np.float32, copy=True))  # a copy it may overwrite
        if edge.scale != 1.0:  # x / 1 and x + 0 are exact no-ops: skip the passes
            v /= np.float32(edge.scale)
        if edge.zero_point != 0.0:
            v += np.float32(edge.zero_point)
        v = _round(v, edge.rounding)
        lo = edge.out_type.min + (1 if edge.narrow and edge.out_type.signed else 0)
        return np.clip(v, lo, edge.out_type.max, out=v).reshape(n, *edge.shape)
    if edge.kind == "thresholds":
        # The thresholds are float32 values (FINN computed them so): compare in float32.
        t = edge.thresholds.astype(np.float32)
        q = _multithreshold(x.astype(np.float32, copy=False), t, np.float32)
        if edge.bias:
            q += np.float32(edge.bias)
        return q.reshape(n, *edge.shape)
    raise ValueError(f"unknown input edge kind {edge.kind}")


def _round(v: np.ndarray, mode: str) -> np.ndarray:
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


def _multithreshold(acc: np.ndarray, thresholds: np.ndarray, dtype) -> np.ndarray:
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


def _activation(layer, acc: np.ndarray, dtype) -> np.ndarray:
    count = _multithreshold(acc, layer.thresholds, dtype)
    if layer.out_type.bipolar:
        return 2 * count - 1
    if layer.out_bias:
        count += layer.out_bias
    return count


def _matvec(layer: MatVec, x: np.ndarray, cache: dict) -> np.ndarray:
    dtype = _dtype(layer.acc_type.bits)
    key = id(layer)
    if key not in cache:
        w = layer.weights
        offset = None
        if layer.xnor:
            # popcount(xnor(x, w)) = x . (2w - 1) + (number of zeros in w's row)
            offset = (w == 0).sum(axis=1).astype(dtype)
            w = 2 * w - 1
        cache[key] = (np.ascontiguousarray(w.T, dtype=dtype), offset)
    wt, offset = cache[key]
    acc = x.astype(dtype, copy=False) @ wt
    if offset is not None:
        acc += offset
    if layer.thresholds is None:
        return acc
    return _activation(layer, acc, dtype)


def _thresholding(layer: Thresholding, x: np.ndarray, cache: dict) -> np.ndarray:
    return _activation(layer, x, x.dtype if x.dtype != np.int64 else np.int64)


# One kernel per IR layer kind (tests/test_ir.py checks that every kind has one).
KERNELS = {"matvec": _matvec, "thresholding": _thresholding}


def _layer(layer: Layer, x: np.ndarray, cache: dict) -> np.ndarray:
    try:
        kernel = KERNELS[layer.kind]
    except KeyError:
        raise NotImplementedError(f"layer kind {layer.kind}") from None
    return kernel(layer, x, cache)


def run_layer(layer: Layer, x: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """One hardware layer on a batch of integer inputs (N, features) -> int64."""
    return _layer(layer, np.asarray(x), {} if cache is None else cache).astype(np.int64)


def _run(model: Model, q: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of the hardware layers, in their working dtypes."""
    env = {model.input_tensor: np.asarray(q)}
    cache: dict = {}
    for layer in model.layers:
        env[layer.output] = _layer(layer, env[layer.input], cache)
    return env


def run_hardware(model: Model, q: np.ndarray, keep: bool = False) -> dict[str, np.ndarray]:
    """All hardware layers on integer inputs; returns the output tensor (or every tensor)."""
    env = _run(model, q)
    if keep:
        return {k: v.astype(np.int64) for k, v in env.items()}
    return {model.output_tensor: env[model.output_tensor].astype(np.int64)}


_UFUNCS = {"mul": np.multiply, "add": np.add, "sub": np.subtract, "div": np.divide}


def float_steps(steps, v: np.ndarray) -> np.ndarray:
    """Host float ops in float32, as onnxruntime evaluates them in the reference graph.

    Works in place on ``v`` (callers pass an array they own) where shapes allow.
    """
    for step in steps:
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


def dequantize_output(edge: OutputEdge, y: np.ndarray) -> np.ndarray:
    """Host output edge in float32, as the reference graph computes it."""
    return float_steps(edge.steps, y.astype(np.float32))


def run(model: Model, x: np.ndarray) -> np.ndarray:
    """Float input samples -> float outputs through edges and hardware."""
    y = _run(model, _quantize(model.input_edge, x))[model.output_tensor]
    return dequantize_output(model.output_edge, y)
