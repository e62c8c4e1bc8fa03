"""Lowering: FINN's specialized, folded HW chain -> IR layers with exact integer semantics."""

from __future__ import annotations

import re

import numpy as np

from compiler.errors import TaperError
from compiler.frontend.load import describe
from compiler.ir.model import FIFO, Layer, MatVec, MaxPool, SlidingWindow, Thresholding
from compiler.ir.types import IntType, sum_range


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
    lo, hi = sum_range(weights.astype(np.int64), input_type.min, input_type.max)
    return IntType.for_range(min(lo.min(), 0), max(hi.max(), 0))


def base_op(node) -> str:
    """FINN's generic op type of a (possibly specialized) HW node."""
    t = node.op_type
    return t.rsplit("_", 1)[0] if t.endswith(("_hls", "_rtl")) else t


CIG = "ConvolutionInputGenerator"
# FINN node pairs that are one IR layer: a padded sliding window, a max pool (FINN makes it
# of the pool's windows and a Pool over them)
FUSED = {("FMPadding", CIG), (CIG, "Pool")}


def group_nodes(nodes) -> list[list]:
    """FINN's HW nodes in order, grouped into the nodes of each IR layer."""
    groups: list[list] = []
    nodes = list(nodes)
    i = 0
    while i < len(nodes):
        pair = nodes[i : i + 2]
        if len(pair) == 2 and (base_op(pair[0]), base_op(pair[1])) in FUSED:
            groups.append(pair)
            i += 2
        else:
            groups.append(pair[:1])
            i += 1
    return groups


def _attrs(node):
    from qonnx.custom_op.registry import getCustomOp

    return getCustomOp(node).get_nodeattr


def _square(where: str, what: str, v) -> int:
    v = [int(x) for x in v]
    if len(set(v)) != 1:
        raise TaperError(
            f"{where}: {what} {'x'.join(map(str, v))}: only square {what}s are supported"
        )
    return v[0]


def _window(group, source: str) -> SlidingWindow:
    cig = group[-1]
    where = f"{source}: node {describe(cig)}"
    a = _attrs(cig)
    if a("depthwise"):
        raise TaperError(
            f"{where}: a depthwise sliding window (a padded pool or a depthwise convolution): "
            "not supported"
        )
    if any(int(d) != 1 for d in a("Dilation")):
        raise TaperError(f"{where}: dilated convolutions are not supported")
    dim = _square(where, "image", a("IFMDim"))
    k = _square(where, "kernel", a("ConvKernelDim"))
    stride = _square(where, "stride", a("Stride"))
    pad = 0
    if len(group) == 2:
        pa = _attrs(group[0])
        pads = [int(x) for x in pa("Padding")]
        if len(set(pads)) != 1:
            raise TaperError(
                f"{source}: node {describe(group[0])}: padding {pads} (top, left, bottom, "
                "right); only the same padding on every side is taken"
            )
        pad = pads[0]
        dim = _square(f"{source}: node {describe(group[0])}", "image", pa("ImgDim"))
    t = IntType.parse(a("inputDataType"))
    layer = SlidingWindow(
        name=sanitize(cig.name),
        input="",
        output="",
        input_type=t,
        out_type=t,
        ifm_dim=dim,
        channels=int(a("IFMChannels")),
        kernel=k,
        stride=stride,
        pad=pad,
        simd=int(a("SIMD")),
    )
    return _same_output(layer, where, a("OFMDim"))


def _same_output(layer, where: str, finn_dims):
    """``layer``, once its output image is the one FINN's node gives."""
    if layer.ofm_dim != _square(where, "output", finn_dims):
        raise TaperError(f"{where}: {list(finn_dims)} output pixels, expected {layer.ofm_dim}")
    return layer


def _maxpool(group, source: str) -> MaxPool:
    cig, pool = group
    where = f"{source}: node {describe(pool)}"
    a, c = _attrs(pool), _attrs(cig)
    if a("Function") != "MaxPool":
        raise TaperError(f"{where}: {a('Function')} pooling is not supported (max pooling is)")
    k = _square(where, "kernel", a("KernelSize"))
    if _square(where, "stride", c("Stride")) != k or any(int(d) != 1 for d in c("Dilation")):
        raise TaperError(
            f"{where}: pooling {k}x{k} windows with stride {c('Stride')[0]}: only "
            "non-overlapping pooling (stride = kernel) is supported"
        )
    t = IntType.parse(a("InputDataType"))
    if IntType.parse(a("OutputDataType")) != t:
        raise TaperError(f"{where}: a max pool that changes the type ({t} in)")
    dim = _square(where, "image", c("IFMDim"))
    layer = MaxPool(
        name=sanitize(pool.name),
        input="",
        output="",
        input_type=t,
        out_type=t,
        ifm_dim=dim,
        channels=int(a("Channels")),
        kernel=k,
        pe=int(a("PE")),
    )
    return _same_output(layer, where, a("OutImgDims"))


def lower_group(model, group, source: str) -> Layer:
    """The IR layer of a group of FINN HW nodes (``group_nodes``)."""
    ops = tuple(base_op(n) for n in group)
    if ops in (("FMPadding", CIG), (CIG,)):
        return _window(group, source)
    if ops == (CIG, "Pool"):
        return _maxpool(group, source)
    if ops == ("FMPadding",):
        raise TaperError(f"{source}: node {describe(group[0])}: padding without a convolution")
    return lower_node(model, group[0], source)


def lower_node(model, node, source: str) -> Layer:
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    a = inst.get_nodeattr
    base = base_op(node)
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
    for group in group_nodes(model.graph.node):
        layer = lower_group(model, group, source)
        layer.input, layer.output = prev, f"{layer.name}_out"
        try:
            layer.check()
        except ValueError as e:
            raise TaperError(f"{source}: node {describe(group[-1])}: {e}") from None
        fifos.append(FIFO(tensor=layer.input, depth=2, width=layer.in_width))
        layers.append(layer)
        prev = layer.output
    return layers, fifos
