"""Bit-accurate simulator of the IR: the reference every back end is checked against.

Integer semantics, computed with numpy on whole batches. Matrix products run in float64
through BLAS only when the layer's accumulator type proves every partial sum stays below
2**53 (then float64 is exact); otherwise in int64.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.model import InputEdge, Layer, MatVec, Model, OutputEdge, Thresholding

EXACT_FLOAT64_BITS = 53


def quantize_input(edge: InputEdge, x: np.ndarray) -> np.ndarray:
    """Host input edge: float samples (N, *in_shape) -> int64 (N, *shape)."""
    x = np.asarray(x).reshape(len(x), -1)
    if edge.kind == "identity":
        q = np.asarray(x, dtype=np.float64)
        if not np.array_equal(q, np.round(q)) or not edge.out_type.contains(q):
            raise ValueError(f"input values are not all {edge.out_type} integers")
        return q.astype(np.int64).reshape(len(x), *edge.shape)
    if edge.kind == "quant":
        # As the reference: its float ops, then QONNX's Quant (x / scale + zero_point,
        # clipped, rounded), all in float32.
        v = float_steps(edge.pre, x.astype(np.float32))
        v = v / np.float32(edge.scale) + np.float32(edge.zero_point)
        v = _round(v, edge.rounding)
        lo = edge.out_type.min + (1 if edge.narrow and edge.out_type.signed else 0)
        q = np.clip(v, lo, edge.out_type.max)
        return q.astype(np.int64).reshape(len(x), *edge.shape)
    if edge.kind == "thresholds":
        q = _multithreshold(x.astype(np.float32).astype(np.float64), edge.thresholds)
        return (q + edge.bias).reshape(len(x), *edge.shape)
    raise ValueError(f"unknown input edge kind {edge.kind}")


def _round(v: np.ndarray, mode: str) -> np.ndarray:
    """The rounding modes of QONNX's Quant node."""
    mode = mode.upper()
    if mode in ("ROUND", "HALF_EVEN"):
        return np.round(v)
    if mode == "FLOOR":
        return np.floor(v)
    if mode == "CEIL":
        return np.ceil(v)
    if mode == "UP":
        return np.sign(v) * np.ceil(np.abs(v))
    if mode == "DOWN":
        return np.trunc(v)
    if mode == "HALF_UP":
        return np.sign(v) * np.floor(np.abs(v) + 0.5)
    if mode == "HALF_DOWN":
        return np.sign(v) * np.ceil(np.abs(v) - 0.5)
    raise ValueError(f"unsupported rounding mode {mode}")


def _multithreshold(acc: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """count(acc[:, c] >= T[c, :]) for every channel c; T sorted per channel."""
    n, c = acc.shape
    t = np.broadcast_to(thresholds, (c, thresholds.shape[1]))
    steps = t.shape[1]
    if steps == 0:
        return np.zeros((n, c), dtype=np.int64)
    if steps <= 4:
        out = np.zeros((n, c), dtype=np.int64)
        for s in range(steps):
            out += acc >= t[:, s]
        return out
    out = np.empty((n, c), dtype=np.int64)
    for ch in range(c):
        # side="right": number of thresholds <= value, i.e. count(value >= T)
        out[:, ch] = np.searchsorted(t[ch], acc[:, ch], side="right")
    return out


def _threshold_output(count: np.ndarray, out_type, bias: int) -> np.ndarray:
    return 2 * count - 1 if out_type.bipolar else count + bias


def _matvec(layer: MatVec, x: np.ndarray, cache: dict) -> np.ndarray:
    key = id(layer)
    exact_float = layer.acc_type.bits <= EXACT_FLOAT64_BITS
    if key not in cache:
        w = layer.weights
        if layer.xnor:  # popcount(xnor(x, w)) = (MW + (2x-1)·(2w-1)) / 2
            w = 2 * w - 1
        cache[key] = np.ascontiguousarray(w.T, dtype=np.float64 if exact_float else np.int64)
    wt = cache[key]
    xv = 2 * x - 1 if layer.xnor else x
    if exact_float:
        acc = xv.astype(np.float64) @ wt
        acc = acc.astype(np.int64)
    else:
        acc = xv.astype(np.int64) @ wt
    if layer.xnor:
        acc = (acc + layer.in_features) // 2
    if layer.thresholds is None:
        return acc
    return _threshold_output(_multithreshold(acc, layer.thresholds), layer.out_type, layer.out_bias)


def run_layer(layer: Layer, x: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """One hardware layer on a batch of int64 inputs (N, features)."""
    cache = {} if cache is None else cache
    if isinstance(layer, MatVec):
        return _matvec(layer, x, cache)
    if isinstance(layer, Thresholding):
        return _threshold_output(
            _multithreshold(x, layer.thresholds), layer.out_type, layer.out_bias
        )
    raise NotImplementedError(f"layer kind {layer.kind}")


def run_hardware(model: Model, q: np.ndarray, keep: bool = False) -> dict[str, np.ndarray]:
    """All hardware layers on integer inputs; returns the output tensor (or every tensor)."""
    env = {model.input_tensor: np.asarray(q, dtype=np.int64)}
    cache: dict = {}
    for layer in model.layers:
        env[layer.output] = run_layer(layer, env[layer.input], cache)
    return env if keep else {model.output_tensor: env[model.output_tensor]}


def float_steps(steps, v: np.ndarray) -> np.ndarray:
    """Host float ops in float32, as onnxruntime evaluates them in the reference graph."""
    for step in steps:
        c = None if step.value is None else step.value.astype(np.float32)
        if step.op == "mul":
            v = v * c
        elif step.op == "add":
            v = v + c
        elif step.op == "sub":
            v = v - c
        elif step.op == "div":
            v = v / c
        elif step.op == "softmax":
            e = np.exp(v - v.max(axis=-1, keepdims=True))
            v = e / e.sum(axis=-1, keepdims=True)
        else:
            raise ValueError(f"unknown host op {step.op}")
    return v


def dequantize_output(edge: OutputEdge, y: np.ndarray) -> np.ndarray:
    """Host output edge in float32, as the reference graph computes it."""
    return float_steps(edge.steps, y.astype(np.float32))


def run(model: Model, x: np.ndarray) -> np.ndarray:
    """Float input samples -> float outputs through edges and hardware."""
    q = quantize_input(model.input_edge, x)
    y = run_hardware(model, q)[model.output_tensor]
    return dequantize_output(model.output_edge, y)
