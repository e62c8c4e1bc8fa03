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
    SlidingWindow,
    Thresholding,
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


# One kernel per IR layer kind (tests/test_ir.py checks that every kind has one).
KERNELS = {
    "matvec": _matvec,
    "thresholding": _thresholding,
    "window": _window,
    "maxpool": _maxpool,
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
