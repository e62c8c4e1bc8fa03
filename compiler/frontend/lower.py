"""Lowering: FINN's specialized, folded HW chain -> IR layers with exact integer semantics."""

from __future__ import annotations

import re

import numpy as np

from compiler.errors import TaperError
from compiler.frontend.load import describe
from compiler.ir.model import FIFO, Layer, MatVec, Thresholding
from compiler.ir.types import IntType


def sanitize(name: str) -> str:
    """A name safe for Verilog, Tcl, file systems and shells."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if re.match(r"[A-Za-z]", s) else f"l_{s}"


def _int_array(a: np.ndarray, what: str, node: str, source: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
        raise TaperError(f"{source}: node {node}: {what} are not integers")
    return a.astype(np.int64)


def accumulator_type(weights: np.ndarray, input_type: IntType, xnor: bool) -> IntType:
    """The narrowest type that holds every possible accumulator value of ``W @ x``."""
    if xnor:
        return IntType.for_range(0, weights.shape[1])
    w = weights.astype(np.int64)
    a, b = w * input_type.min, w * input_type.max
    hi = np.maximum(a, b).sum(axis=1).max()
    lo = np.minimum(a, b).sum(axis=1).min()
    return IntType.for_range(min(lo, 0), max(hi, 0))


def lower_node(model, node, source: str) -> Layer:
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    a = inst.get_nodeattr
    base = (
        node.op_type.rsplit("_", 1)[0] if node.op_type.endswith(("_hls", "_rtl")) else node.op_type
    )
    if base not in ("MVAU", "Thresholding"):  # before reading attributes they may not have
        raise TaperError(f"{source}: node {describe(node)}: no IR layer for this op yet")
    name = sanitize(node.name)
    input_type = IntType.parse(a("inputDataType"))
    n_vectors = int(np.prod(a("numInputVectors")))
    if base == "MVAU":
        xnor = bool(a("binaryXnorMode"))
        w = _int_array(model.get_initializer(node.input[1]), "weights", describe(node), source).T
        weight_type = IntType.parse(a("weightDataType"))
        acc = accumulator_type(w, input_type, xnor)
        thresholds = None
        out_bias = 0
        out_type = acc
        if not a("noActivation"):
            thresholds = np.sort(
                _int_array(
                    model.get_initializer(node.input[2]), "thresholds", describe(node), source
                ),
                axis=1,
            )
            out_type = IntType.parse(a("outputDataType"))
            out_bias = -1 if out_type.bipolar else int(a("ActVal"))
        return MatVec(
            name=name,
            input="",
            output="",
            input_type=input_type,
            out_type=out_type,
            weight_type=weight_type,
            acc_type=acc,
            weights=w,
            thresholds=thresholds,
            out_bias=out_bias,
            xnor=xnor,
            pe=int(a("PE")),
            simd=int(a("SIMD")),
            n_vectors=n_vectors,
        )
    if base == "Thresholding":
        out_type = IntType.parse(a("outputDataType"))
        thresholds = np.sort(
            _int_array(model.get_initializer(node.input[1]), "thresholds", describe(node), source),
            axis=1,
        )
        return Thresholding(
            name=name,
            input="",
            output="",
            input_type=input_type,
            out_type=out_type,
            channels=int(a("NumChannels")),
            thresholds=thresholds,
            out_bias=-1 if out_type.bipolar else int(a("ActVal")),
            pe=int(a("PE")),
            n_vectors=n_vectors,
        )
    raise TaperError(f"{source}: node {describe(node)}: no IR layer for this op yet")


def lower_chain(model, source: str) -> tuple[list[Layer], list[FIFO]]:
    """IR layers of a HW-only chain, wired by tensor name, with a FIFO before each layer."""
    layers: list[Layer] = []
    fifos: list[FIFO] = []
    prev = "input"
    for node in model.graph.node:
        layer = lower_node(model, node, source)
        layer.input, layer.output = prev, f"{layer.name}_out"
        try:
            layer.check()
        except ValueError as e:
            raise TaperError(f"{source}: node {describe(node)}: {e}") from None
        fifos.append(FIFO(tensor=layer.input, depth=2, width=layer.in_width))
        layers.append(layer)
        prev = layer.output
    return layers, fifos
