"""Bit-accurate simulator of the IR: the reference every back end is checked against.

Integer semantics, computed with numpy on whole batches. Values flow between layers as
floats holding integers wherever that is provably exact, so that matrix products run
through BLAS: a layer's accumulator type bounds every product and every partial sum (in any
summation order), so float32 is exact for accumulators up to 24 bits and float64 up to 53
bits; wider accumulators use int64. Public functions return int64. The host edges (float
input -> integers, integers -> float output) are `compiler.sim.host_edges`, the code the
board driver runs too.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.model import (
    InputEdge,
    Layer,
    MatVec,
    MaxPool,
    Model,
    OutputEdge,
    Recurrent,
    SlidingWindow,
    Thresholding,
    rne_shift,
)
from compiler.sim import host_edges

# The host edges and the multi-thresholding they share with the layers live in host_edges
# (numpy only), which the deployment package ships to the board as is.
_quantize = host_edges.quantize
_multithreshold = host_edges.multithreshold

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
    return host_edges.quantize_input(edge, x)


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
    n = len(x)
    # n_vectors input vectors per frame: one row each
    acc = x.astype(dtype, copy=False).reshape(n * layer.n_vectors, layer.in_features) @ wt
    if offset is not None:
        acc += offset
    if layer.thresholds is not None:
        acc = _activation(layer, acc, dtype)
    return acc.reshape(n, layer.out_frame)


def _thresholding(layer: Thresholding, x: np.ndarray, cache: dict) -> np.ndarray:
    n = len(x)
    x = x.reshape(n * layer.n_vectors, layer.channels)
    y = _activation(layer, x, x.dtype if x.dtype != np.int64 else np.int64)
    return y.reshape(n, layer.out_frame)


def _window(layer: SlidingWindow, x: np.ndarray, cache: dict) -> np.ndarray:
    n, d, c, k, s, p = len(x), layer.ifm_dim, layer.channels, layer.kernel, layer.stride, layer.pad
    img = x.reshape(n, d, d, c)
    if p:
        img = np.pad(img, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=layer.pad_value)
    # (n, oy, ox, c, ky, kx) views, strided by the stride; then (ky, kx, c) order per window
    win = np.lib.stride_tricks.sliding_window_view(img, (k, k), axis=(1, 2))[:, ::s, ::s]
    o = layer.ofm_dim
    return win[:, :o, :o].transpose(0, 1, 2, 4, 5, 3).reshape(n, layer.out_frame)


def _maxpool(layer: MaxPool, x: np.ndarray, cache: dict) -> np.ndarray:
    n, d, c, k, o = len(x), layer.ifm_dim, layer.channels, layer.kernel, layer.ofm_dim
    img = x.reshape(n, d, d, c)[:, : o * k, : o * k]
    return img.reshape(n, o, k, o, k, c).max(axis=(2, 4)).reshape(n, layer.out_frame)


def _count(v: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return _multithreshold(v, thresholds, np.int64)


def _gate_products(layer: Recurrent, w: np.ndarray, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    v = np.concatenate([x << layer.x_shift, h << layer.h_shift], axis=1)
    if layer.acc_type.bits <= EXACT_FLOAT64_BITS:  # exact through BLAS
        return (v.astype(np.float64) @ w).astype(np.int64)
    return v @ w.astype(np.int64)


def _recurrent(layer: Recurrent, x: np.ndarray, cache: dict) -> np.ndarray:
    """The cell step by step over the batch, in int64 (Recurrent's docstring)."""
    n, H, T, F = len(x), layer.hidden, layer.steps, layer.in_features
    key = id(layer)
    if key not in cache:
        cache[key] = np.ascontiguousarray(layer.weights.T, dtype=np.float64)
    wt = cache[key]
    xs = np.asarray(x).astype(np.int64).reshape(n, T, F)
    h = np.zeros((n, H), dtype=np.int64)
    c = np.zeros((n, H), dtype=np.int64)
    ge = layer.gate_exp
    sig = (layer.n_gates - 1) * H
    outs = []
    for t in range(T):
        if layer.cell == "lstm":
            acc = _gate_products(layer, wt, xs[:, t], h)
            g_sig = _count(acc[:, :sig], layer.gate_thresholds)
            i, f, o = g_sig[:, :H], g_sig[:, H : 2 * H], g_sig[:, 2 * H :]
            g = _count(acc[:, sig:], layer.cand_thresholds) + layer.cand_bias
            e1, e2 = ge + layer.cell_exp, ge + layer.cand_exp
            m = min(e1, e2)
            s = ((f * c) << (e1 - m)) + ((i * g) << (e2 - m))
            c = np.clip(rne_shift(s, layer.cell_exp - m), layer.cell_min, layer.cell_max)
            tc = _count(c, layer.cell_thresholds) + layer.cell_bias
            p = rne_shift(o * tc, layer.h_exp - ge - layer.cell_act_exp)
            h = np.clip(p, layer.h_min, layer.h_max)
        else:
            acc = _gate_products(layer, wt[:, :sig], xs[:, t], h)
            g_sig = _count(acc, layer.gate_thresholds)
            r, z = g_sig[:, :H], g_sig[:, H:]
            rh = np.clip(rne_shift(r * h, -ge), layer.h_min, layer.h_max)
            acc_n = _gate_products(layer, wt[:, sig:], xs[:, t], rh)
            nn = _count(acc_n, layer.cand_thresholds) + layer.cand_bias
            e1, e2 = ge + layer.cand_exp, ge + layer.h_exp
            m = min(e1, e2)
            one = 1 << -ge
            s = (((one - z) * nn) << (e1 - m)) + ((z * h) << (e2 - m))
            h = np.clip(rne_shift(s, layer.h_exp - m), layer.h_min, layer.h_max)
        if layer.return_sequences or t == T - 1:
            outs.append(h)
    return np.concatenate(outs, axis=1)


# One kernel per IR layer kind (tests/test_ir.py checks that every kind has one).
KERNELS = {
    "matvec": _matvec,
    "thresholding": _thresholding,
    "window": _window,
    "maxpool": _maxpool,
    "recurrent": _recurrent,
}


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


def float_steps(steps, v: np.ndarray) -> np.ndarray:
    """Host float ops in float32, as onnxruntime evaluates them in the reference graph."""
    return host_edges.float_steps(steps, v)


def dequantize_output(edge: OutputEdge, y: np.ndarray) -> np.ndarray:
    """Host output edge in float32, as the reference graph computes it."""
    return host_edges.dequantize_output(edge, y)


def run(model: Model, x: np.ndarray) -> np.ndarray:
    """Float input samples -> float outputs through edges and hardware."""
    y = _run(model, _quantize(model.input_edge, x))[model.output_tensor]
    return dequantize_output(model.output_edge, y)
