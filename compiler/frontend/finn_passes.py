"""Every use of FINN and its work-arounds, in one module.

FINN (finn-plus) runs here without Vivado: transformations, streamlining, conversion to HW
layers, SpecializeLayers, ``ApplyConfig`` and the estimate analyses work (taper chooses
foldings itself, by ``compiler/backends/rtl/cost.py``; not by SetFolding). Known limits, each
covered by a test in ``tests/test_finn_compat.py`` that fails when upstream changes:

- ``finn.builder.build_dataflow_steps`` imports ``finn.xsi`` at module level and raises
  without XILINX_VIVADO: never import the builder; call the transformations directly.
- FINN reads FINN_BUILD_DIR (and FINN_SETTINGS) from the environment: both point inside the
  build directory (``finn_environment``).
- ``ApplyConfig`` accepts a PE/SIMD that does not divide the layer and only fails at code
  generation: ``apply_folding`` checks divisibility itself.
- FINN turns a Quant activation (ROUND: half to even) into thresholds at k + 1/2 compared
  with ``>=``, i.e. rounding half up: at an exact tie, which power-of-two scales make
  common, the hardware would differ from the QONNX model. ``HalfEvenTies`` moves each
  threshold that sits exactly on a tie to the side QONNX's rounding takes.
- FINN derives thresholds in float32 (its default dtype), which puts some off by one where
  BatchNorm and scales meet a rounding boundary. The same passes on a float64 copy of the
  model give exact thresholds; ``exact_thresholds`` moves them into the float32 graph (a
  float64 graph is not executable: FINN mixes in float32 constants). ONNX shape inference
  loses some HW node output shapes in the float64 copy; ``_restore_hw_shapes`` puts them
  back from the nodes themselves.
- FINN's errors name its own nodes (``MultiThreshold_0``): every pass runs through
  ``_transform``, which carries the user's node names (stamped by ``load``) over to the
  nodes FINN makes and rewrites FINN's messages to name the user's node.
- Graphs FINN cannot make exact integer hardware of are refused before FINN runs, naming the
  user's node and what to change (``check_supported``): a 1-bit unsigned activation (Brevitas
  exports QuantReLU(bit_width=1) as Relu + BipolarQuant), per-channel activation scales
  before a MatMul, a bipolar model input whose first layer is not binary (XNOR).
- Found by the fuzz test (``tests/test_fuzz_models.py``, where each has its regression):
  qonnx's ``RemoveIdentityOps`` (inside ConvertQONNXtoFINN and Streamline) drops an Add
  within 1e-5 of 0 and a Mul within 1e-5 of 1, which are not identities when scales are
  small (``exact_identity_ops``); FINN absorbs the ±1 of a negative BatchNorm scale into
  the weights only when the negated weights keep their type (``_absorb_signs`` widens
  full-range weights by a bit); FINN converts bipolar activations of scale 1 only
  (``_unit_bipolar_scales`` splits the scale off); the output edge's float32 constants map a
  reference's output back to integers too coarsely (``exact_thresholds`` also takes the
  float64 ones).
- CNNs (a Conv or MaxPool in the graph; an MLP never runs these passes): FINN's CNV order
  (step_streamline, step_convert_to_hw, tests/end2end/test_end2end_bnn_pynq.py). Streamline
  as for MLPs, then qonnx's LowerConvsToMatMul (Transpose, Im2Col, MatMul per Conv),
  MakeMaxPoolNHWC, AbsorbTransposeIntoMultiThreshold, MakeMaxPoolNHWC,
  AbsorbConsecutiveTransposes, the rest as for MLPs, InferDataLayouts; to HW: the MVAU and
  Thresholding passes, then InferFMPadding, InferPool, InferConvInpGen (FMPadding before a
  padded window), RemoveCNVtoFCFlatten, AbsorbConsecutiveTransposes, InferDataLayouts. The
  NCHW->NHWC Transpose in front stays outside the HW nodes. Found on the way (tests in
  ``tests/test_cnn_frontend.py``): ``Absorb1BitMulIntoConv``/``IntoMatMul`` check weights
  one Python call each (15 s per Streamline on CNV; ``whole_array_weight_checks``, for MLPs
  too: the same booleans); in the float64 copy the float32 tensors
  FINN adds break ONNX shape inference and LowerConvsToMatMul finds no Conv output shape
  (``_float64_value_infos``); the Im2Col and MatMul LowerConvsToMatMul makes have no node to
  inherit an origin from (``_transform``'s ``chains``); FINN pads a bipolar stream with -1
  where Brevitas pads with 0 (``check_supported`` refuses a padded Conv of a bipolar input);
  qonnx's ExtractBiasFromConv fails on the shape () zero point of a Conv bias's Quant
  (``conv_bias_params``: every CNN with convolution biases was refused).
- The estimate analyses need specialized nodes (``MVAU_hls``...), while only the generic nodes execute in Python (``*_hls`` need Vitis for cppsim): the finn
  reference executes the generic graph saved before specialization (``finn_hw.onnx``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from compiler.errors import TaperError
from compiler.frontend.load import describe, origin, source_of

HW_DOMAIN = "finn.custom_op.fpgadataflow"
SHAPE_OPS = {"Reshape", "Flatten"}
OUTPUT_EDGE_OPS = {"Mul", "Add", "Softmax"}


@contextlib.contextmanager
def finn_environment(build_dir: Path) -> Iterator[None]:
    """FINN_BUILD_DIR and FINN_SETTINGS inside ``build_dir``, FINN's chatter silenced."""
    finn_dir = Path(build_dir).resolve() / "finn"
    finn_dir.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("FINN_BUILD_DIR", "FINN_SETTINGS")}
    os.environ["FINN_BUILD_DIR"] = str(finn_dir)
    os.environ["FINN_SETTINGS"] = str(finn_dir / "settings.yaml")  # absent: FINN uses defaults
    for name in ("finn", "finn_logger"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def is_hw(node) -> bool:
    return node.domain.startswith(HW_DOMAIN)


def _transform(model, t, chains: bool = False):
    """``model.transform(t)``; new nodes inherit the origin of the node they replace (same
    data input, else same output), and a failure is a TaperError naming the user's node.
    With ``chains`` (the CNN passes), a new node still without one inherits the origin of
    the new node making its data input."""
    import re

    by_input, by_output = {}, {}
    for n in model.graph.node:
        if origin(n) is not None:
            if n.input:
                by_input.setdefault(n.input[0], n.doc_string)
            for o in n.output:
                by_output.setdefault(o, n.doc_string)
    try:
        new = model.transform(t)
    except TaperError:
        raise
    except Exception as e:  # FINN's passes raise anything on graphs they cannot take
        msg = " ".join(str(e).split()) or type(e).__name__
        nodes = {n.name: n for n in model.graph.node if n.name}
        names = "|".join(re.escape(k) for k in sorted(nodes, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w.])({names})(?![\w])") if nodes else None
        first = pattern.search(msg) if pattern else None
        where = f"node {describe(nodes[first.group(1)])}" if first else "the graph"
        if first:  # one pass: a replacement is never replaced again
            msg = pattern.sub(lambda m: describe(nodes[m.group(1)]), msg)
        raise TaperError(
            f"{source_of(model)}: FINN's {type(t).__name__} cannot take {where} "
            f"({type(e).__name__}: {msg})"
        ) from None
    # A new node is, in order of trust: the k-th node of its op when the pass kept the count
    # of that op (a pass that moves a MatMul makes a new one); the node it shares its data
    # input or its output with (MultiThreshold made of a Quant, MVAU of a MatMul); the one
    # node the pass removed (MultiThreshold -> Thresholding).
    by_op: dict[str, list] = {}
    for n in model.graph.node:
        by_op.setdefault(n.op_type, []).append(n)
    new_by_op: dict[str, list] = {}
    for n in new.graph.node:
        new_by_op.setdefault(n.op_type, []).append(n)
    names = {n.name for n in new.graph.node}
    removed = {n.doc_string for n in model.graph.node if n.name not in names and origin(n)}
    for op, nodes in new_by_op.items():
        same = len(by_op.get(op, [])) == len(nodes)
        for k, n in enumerate(nodes):
            if origin(n) is not None:
                continue
            d = by_op[op][k].doc_string if same and origin(by_op[op][k]) else None
            d = d or (by_input.get(n.input[0]) if n.input else None)
            d = d or next((by_output[o] for o in n.output if o in by_output), None)
            if d is None and len(removed) == 1:
                d = next(iter(removed))
            if d is not None:
                n.doc_string = d
    # Still unknown: a node inside a chain the pass made of one node (a Conv lowered to
    # Transpose, Im2Col, MatMul, Transpose) is made of what makes its data input.
    made = {}
    old_names = {n.name for n in model.graph.node}
    for n in new.graph.node if chains else ():
        if origin(n) is None and n.input and n.input[0] in made:
            n.doc_string = made[n.input[0]]
        if n.name not in old_names and origin(n) is not None:
            made.update((o, n.doc_string) for o in n.output)
    return new


def _tidy(model, retype: bool = False):
    """qonnx's tidy-up passes; ``retype``: float64 shapes first (``_float64_value_infos``)."""
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveReadableTensorNames,
        GiveUniqueNodeNames,
        RemoveStaticGraphInputs,
    )
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    if retype:
        _float64_value_infos(model)
    for t in (
        InferShapes(),
        FoldConstants(),
        GiveUniqueNodeNames(),
        GiveReadableTensorNames(),
        InferDataTypes(),
        RemoveStaticGraphInputs(),
    ):
        model = _transform(model, t)
    return model


def _half_even_ties():
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.base import Transformation

    class HalfEvenTies(Transformation):
        """For integer-input MultiThresholds (multi-bit outputs), make the comparison at an
        exact tie round half to even: the threshold for output level j becomes exclusive
        (T + 1/2, ceiled to T + 1 later) when j is odd."""

        def apply(self, model):
            for n in model.graph.node:
                if n.op_type != "MultiThreshold":
                    continue
                if not model.get_tensor_datatype(n.input[0]).is_integer():
                    continue
                if model.get_tensor_datatype(n.output[0]).bitwidth() == 1:
                    continue
                inst = getCustomOp(n)
                if inst.get_nodeattr("out_scale") != 1.0:
                    continue
                stored = model.get_initializer(n.input[1])
                t = stored.astype(np.float64)
                tie = np.abs(t - np.round(t)) <= 1e-9 * np.maximum(1.0, np.abs(t))
                level = inst.get_nodeattr("out_bias") + np.arange(1, t.shape[1] + 1)
                odd = (np.round(level).astype(np.int64) % 2) != 0
                new = np.where(tie, np.round(t), t) + np.where(tie & odd[None, :], 0.5, 0.0)
                model.set_initializer(n.input[1], new.astype(stored.dtype))
            return model, False

    return HalfEvenTies()


MATMUL_OPS = {"MatMul", "Gemm", "Conv"}


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def check_supported(model) -> None:
    """Refuse, naming the user's node and what to change, graphs FINN cannot turn into exact
    integer hardware (or turns into wrong hardware without an error)."""
    g = model.graph
    src = source_of(model)
    inits = {t.name for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def consumer(t: str):
        """The one node reading ``t``, through shape ops; None when not exactly one."""
        while True:
            cs = model.find_consumers(t)
            if len(cs) != 1:
                return None
            if cs[0].op_type not in SHAPE_OPS:
                return cs[0]
            t = cs[0].output[0]

    def feeding(t: str):
        """The node writing ``t``, through shape ops."""
        n = producer.get(t)
        while n is not None and n.op_type in SHAPE_OPS:
            n = producer.get(n.input[0])
        return n

    def next_product(t: str):
        """The first matrix product ``t`` reaches as its data input (through shape and
        elementwise ops), if any."""
        n = consumer(t)
        while n is not None and n.op_type in ("Mul", "Add", "Sub", "Div", "Relu", "Identity"):
            n = consumer(n.output[0])
        return n if n is not None and n.op_type in MATMUL_OPS else None

    for n in g.node:
        if n.op_type not in ("Quant", "BipolarQuant") or n.input[0] in inits:
            continue
        if feeding(n.input[0]) is None and n.input[0] != g.input[0].name:
            continue  # a weight quantizer on a computed constant
        prev = feeding(n.input[0])
        if n.op_type == "BipolarQuant" and prev is not None and prev.op_type == "Relu":
            raise TaperError(
                f"{src}: node {describe(n)} after {describe(prev)}: a 1-bit unsigned activation "
                "(Brevitas exports QuantReLU with bit_width=1 as Relu + BipolarQuant, which is "
                "always +1); use a bipolar QuantIdentity (1-bit signed) or a 2-bit unsigned "
                "activation"
            )
        if n.op_type == "Quant":
            bits = model.get_initializer(n.input[3])
            if (
                bits is not None
                and bits.size == 1
                and bits.item() == 1
                and not _attr(n, "signed", 1)
            ):
                raise TaperError(
                    f"{src}: node {describe(n)}: a 1-bit unsigned activation, which FINN's "
                    "thresholds do not reproduce; use a bipolar QuantIdentity (1-bit signed) or "
                    "a 2-bit unsigned activation"
                )
        scale = model.get_initializer(n.input[1]) if len(n.input) > 1 else None
        if scale is not None and np.unique(scale).size > 1:
            mm = next_product(n.output[0])
            if mm is not None:
                raise TaperError(
                    f"{src}: node {describe(n)}: per-channel activation scales before "
                    f"{describe(mm)} cannot become integer weights (the hardware needs one "
                    "scale per tensor there); use a per-tensor activation quantizer "
                    "(Brevitas: scaling_per_output_channel=False)"
                )
    for n in g.node:
        if n.op_type != "Conv" or not any(_attr(n, "pads", [])):
            continue
        prev = producer.get(n.input[0])
        while prev is not None and prev.op_type in SHAPE_OPS | {"MaxPool"}:
            prev = producer.get(prev.input[0])
        if prev is not None and prev.op_type == "BipolarQuant":
            raise TaperError(
                f"{src}: node {describe(n)}: zero padding of a bipolar (±1) input "
                f"({describe(prev)}): FINN's 1-bit streams pad with -1, not 0; use padding=0 "
                "or a 2-bit activation before this convolution"
            )
    # A bipolar input is thresholded on the host only in front of an XNOR layer.
    first = consumer(g.input[0].name)
    if first is not None and first.op_type == "BipolarQuant":
        mm = consumer(first.output[0])
        w = feeding(mm.input[1]) if mm is not None and mm.op_type in MATMUL_OPS else None
        if w is None or w.op_type != "BipolarQuant":
            what = describe(mm) if mm is not None else "its consumer"
            raise TaperError(
                f"{src}: node {describe(first)}: a bipolar (±1) model input needs a first "
                f"layer with bipolar weights (an XNOR layer), but {what} has other weights; "
                "quantize the input to 2 or more bits, or use 1-bit weights in the first layer"
            )


def _absorb_signs():
    from qonnx.core.datatype import DataType
    from qonnx.transformation.base import Transformation

    from compiler.ir.types import IntType

    class AbsorbSignsIntoWeights(Transformation):
        """FINN factors a negative per-channel scale (BatchNorm) into a magnitude, absorbed
        into the thresholds, and a ±1 Mul it absorbs into the MatMul's weights only when
        the negated weights stay in the weight type: negating -2^(b-1) of full-range
        weights does not, and the Mul is left between MatMul and thresholds. Absorb it with
        the weight type widened by the one bit it needs."""

        def apply(self, model):
            for n in model.graph.node:
                if n.op_type != "MatMul" or model.is_fork_node(n):
                    continue
                w = model.get_initializer(n.input[1])
                c = model.find_consumer(n.output[0])
                if w is None or c is None or c.op_type != "Mul":
                    continue
                a = model.get_initializer(c.input[1])
                if a is None or not np.all(np.abs(a) == 1) or a.ndim > 2:
                    continue
                new = w * a.reshape(1, -1)
                wdt = model.get_tensor_datatype(n.input[1])
                if new.shape != w.shape or not wdt.is_integer():
                    continue
                if not all(wdt.allowed(v) for v in np.unique(new)):
                    # (full-range INT8 become INT9: a back end that takes 8-bit weights at
                    # most says so when it generates the layer)
                    t = IntType.for_range(min(new.min(), 0), max(new.max(), 0))
                    wdt = DataType[t.name]
                model.set_initializer(n.input[1], new.astype(w.dtype))
                model.set_tensor_datatype(n.input[1], wdt)
                n.output[0] = c.output[0]
                model.graph.node.remove(c)
                return model, True
            return model, False

    return AbsorbSignsIntoWeights()


def conv_bias_params():
    """qonnx's ExtractBiasFromConv (inside ConvertQONNXtoFINN) reshapes the scale and zero
    point of a Conv bias's Quant to (1, C, 1, 1) unless their shape is (1,): a scalar of
    shape () (as Brevitas exports the zero point) fails to reshape, so every CNN with a
    convolution bias was refused. A size-1 parameter becomes shape (1,) first."""
    from qonnx.transformation.base import Transformation

    class ConvBiasParams(Transformation):
        def apply(self, model):
            for n in model.graph.node:
                if n.op_type != "Conv" or len(n.input) < 3 or not n.input[2]:
                    continue
                q = model.find_producer(n.input[2])
                if q is None or q.op_type not in ("Quant", "IntQuant", "BipolarQuant"):
                    continue
                for name in q.input[1:3]:
                    v = model.get_initializer(name)
                    if v is not None and v.shape != (1,) and v.size == 1:
                        model.set_initializer(name, v.reshape(1))
            return model, False

    return ConvBiasParams()


def _unit_bipolar_scales():
    from onnx import helper
    from qonnx.transformation.base import Transformation

    class UnitBipolarScales(Transformation):
        """FINN converts only bipolar activations of scale 1 (Brevitas exports a 1-bit
        unsigned input quantizer as BipolarQuant of scale 1/2): ``BipolarQuant(x, s)`` is
        ``BipolarQuant(x, 1) * s``, and the Mul moves on like any activation scale."""

        def apply(self, model):
            for i, n in enumerate(model.graph.node):
                if n.op_type != "BipolarQuant" or model.get_initializer(n.input[0]) is not None:
                    continue
                s = model.get_initializer(n.input[1])
                if s is None or s.size != 1 or not s.item() > 0 or s.item() == 1.0:
                    continue
                one, scale, mid = (model.make_new_valueinfo_name() for _ in range(3))
                model.set_initializer(one, np.ones_like(s))
                model.set_initializer(scale, s.copy())
                out = n.output[0]
                n.input[1], n.output[0] = one, mid
                mul = helper.make_node(
                    "Mul", [mid, scale], [out], name=f"{n.name}_scale", doc_string=n.doc_string
                )
                model.graph.node.insert(i + 1, mul)
                return model, True
            return model, False

    return UnitBipolarScales()


@contextlib.contextmanager
def exact_identity_ops() -> Iterator[None]:
    """qonnx's ``RemoveIdentityOps`` (run by ConvertQONNXtoFINN and after every step of
    FINN's Streamline) removes an Add whose constants are all within 1e-5 of 0 and a Mul
    within 1e-5 of 1: with a small accumulator scale, a bias of 2047 * 1.5e-11 in the float
    domain vanished from the thresholds. Inside this context it removes exact identities
    only (the arithmetic ops that are not are hidden from it)."""
    from qonnx.transformation.remove import RemoveIdentityOps

    original = RemoveIdentityOps.apply

    def apply(self, model):
        prefix = "TaperKept"
        for n in model.graph.node:
            if n.op_type in ("Add", "Sub", "Mul", "Div"):
                a = model.get_initializer(n.input[1]) if len(n.input) > 1 else None
                identity = 0.0 if n.op_type in ("Add", "Sub") else 1.0
                if a is None or not np.all(a == identity):
                    n.op_type = prefix + n.op_type
        out = model
        try:
            out, changed = original(self, model)
            return out, changed
        finally:  # the pass may hand back a copy: restore both
            for m in {id(model): model, id(out): out}.values():
                for n in m.graph.node:
                    if n.op_type.startswith(prefix):
                        n.op_type = n.op_type[len(prefix) :]

    RemoveIdentityOps.apply = apply
    try:
        yield
    finally:
        RemoveIdentityOps.apply = original


@contextlib.contextmanager
def whole_array_weight_checks() -> Iterator[None]:
    """FINN's ``Absorb1BitMulIntoConv`` and ``Absorb1BitMulIntoMatMul`` (inside every
    Streamline) check the signed weights with ``np.vectorize(lambda x: Wdt.allowed(x))``: one
    Python call and one ``np.isin`` per weight, 15 s on CNV's 1.1 M conv weights, each time.
    ``DataType.allowed`` takes whole arrays; inside this context FINN's absorb module gets a
    numpy whose ``vectorize(f)`` calls ``f`` once on the array (the same booleans)."""
    import types

    import finn.transformation.streamline.absorb as absorb

    class WholeArrayNumpy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def vectorize(f):
            return lambda a: np.asarray(f(np.asarray(a)))

    original = absorb.np
    absorb.np = WholeArrayNumpy("numpy")
    try:
        yield
    finally:
        absorb.np = original


def streamline(model):
    """QONNX -> FINN dialect, streamlined to integer MatMuls between MultiThresholds."""
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    check_supported(model)
    for t in (_unit_bipolar_scales(), conv_bias_params(), InferShapes(), InferDataTypes()):
        model = _transform(model, t)
    with exact_identity_ops(), whole_array_weight_checks():
        return _streamline(model)


def _streamline(model):
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MoveScalarLinearPastInvariants
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount

    cnn = is_cnn(model)
    model = _tidy(_transform(model, ConvertQONNXtoFINN()))
    for t in (
        absorb.AbsorbSignBiasIntoMultiThreshold(),
        absorb.AbsorbScalarBiasIntoMultiThreshold(),
        Streamline(),
        MoveScalarLinearPastInvariants(),
        Streamline(),
        *(_lower_convs() if cnn else ()),
        absorb.AbsorbAddIntoMultiThreshold(),
        absorb.AbsorbMulIntoMultiThreshold(),
        ConvertBipolarMatMulToXnorPopcount(),
        Streamline(),
        _absorb_signs(),
        _half_even_ties(),
        RoundAndClipThresholds(),
    ):
        model = _tidy(_transform(model, t, chains=cnn), retype=cnn)
    if cnn:
        model = _cnn_layouts(model)
    return model


CNN_OPS = {"Conv", "MaxPool"}


def is_cnn(model) -> bool:
    """The graph has convolutions or pooling: the CNN passes run (an MLP never sees them)."""
    return any(n.op_type in CNN_OPS for n in model.graph.node)


def _lower_convs() -> tuple:
    """FINN's CNN streamlining (step_streamline's ``need_lowering`` passes): each Conv becomes
    NCHW->NHWC Transpose, Im2Col and MatMul; MaxPools and MultiThresholds work in NHWC and the
    Transposes between them cancel, leaving one at the input and one before the flatten."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    return (
        LowerConvsToMatMul(),
        MakeMaxPoolNHWC(),
        absorb.AbsorbTransposeIntoMultiThreshold(),
        MakeMaxPoolNHWC(),
        absorb.AbsorbConsecutiveTransposes(),
    )


def _float64_value_infos(model) -> None:
    """In a float64 copy (``precision.as_float64``), the tensors FINN's passes add are
    float32: ONNX shape inference then fails at the first op mixing both, and the shapes
    after it are lost (LowerConvsToMatMul and InferConvInpGen need them). Make them float64
    too, as the copy's other tensors."""
    from onnx import TensorProto

    g = model.graph
    if g.input[0].type.tensor_type.elem_type != TensorProto.DOUBLE:
        return
    inits = {t.name for t in g.initializer}
    for vi in g.value_info:
        if vi.name not in inits and vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE


def _cnn_layouts(model):
    """Tensor layouts (NCHW, NHWC...) annotated, which the conversion to HW layers reads."""
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    return _transform(model, InferDataLayouts(), chains=True)


def to_hw(model):
    """Streamlined graph -> FINN's generic HW layers (MVAU, Thresholding; for a CNN also
    FMPadding, ConvolutionInputGenerator, Pool)."""
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (
        InferThresholdingLayer,
    )

    cnn = is_cnn_streamlined(model)
    for t in (
        InferBinaryMatrixVectorActivation(),
        InferQuantizedMatrixVectorActivation(),
        InferThresholdingLayer(),
        *(_cnn_to_hw() if cnn else ()),
    ):
        model = _transform(model, t, chains=cnn)
        if cnn:  # the CNN passes read tensor shapes
            model = _tidy(model, retype=True)
    return _tidy(model)


def is_cnn_streamlined(model) -> bool:
    """A streamlined graph made of a CNN (sliding windows or NHWC pooling)."""
    return any(n.op_type in ("Im2Col", "MaxPoolNHWC", "MaxPool") for n in model.graph.node)


def _cnn_to_hw() -> tuple:
    """FINN's conversion of the CNN ops left after streamlining: Im2Col becomes a
    ConvolutionInputGenerator (with an FMPadding before it when the Conv pads), MaxPoolNHWC a
    Pool; the Transpose + Reshape before the first fully connected layer go (its weights are
    permuted to NHWC order instead)."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.fm_padding import InferFMPadding
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    return (
        InferFMPadding(),
        InferPool(),
        InferConvInpGen(),
        RemoveCNVtoFCFlatten(),
        absorb.AbsorbConsecutiveTransposes(),
        InferDataLayouts(),
    )


def exact_thresholds(hw32, hw64) -> None:
    """Copy the integer-input thresholds of ``hw64`` (same passes, float64) into ``hw32``,
    and the float64 constants of the output edge into its steps (``edges.split_edges``)."""
    n32, n64 = list(hw32.graph.node), list(hw64.graph.node)
    if [n.op_type for n in n32] != [n.op_type for n in n64]:
        raise TaperError("FINN's passes gave different graphs in float32 and float64")
    from compiler.frontend.edges import output_constant

    for i, step in getattr(hw32, "taper_output_steps", []):
        c = output_constant(hw64, n64[i])
        if c is not None and c.size == step.value.size:
            step.value = np.asarray(c, dtype=np.float64).reshape(-1)
    for a, b in zip(n32, n64, strict=True):
        if not is_hw(a) or not hw32.get_tensor_datatype(a.input[0]).is_integer():
            continue
        idx = 2 if a.op_type == "MVAU" else 1
        if len(a.input) > idx and hw32.get_initializer(a.input[idx]) is not None:
            t = hw64.get_initializer(b.input[idx])
            hw32.set_initializer(a.input[idx], t.astype(hw32.get_initializer(a.input[idx]).dtype))


def hw_only(model, first: str, last: str):
    """The sub-chain of HW nodes from node ``first`` to node ``last`` as its own model: the
    dataflow partition, with the host edges cut off."""
    from onnx import TensorProto, helper
    from qonnx.transformation.general import RemoveUnusedTensors

    m = copy.deepcopy(model)
    g = m.graph
    names = [n.name for n in g.node]
    keep = set(names[names.index(first) : names.index(last) + 1])
    new_in = m.get_node_from_name(first).input[0]
    new_out = m.get_node_from_name(last).output[0]
    idt, odt = m.get_tensor_datatype(new_in), m.get_tensor_datatype(new_out)
    ishape, oshape = m.get_tensor_shape(new_in), m.get_tensor_shape(new_out)
    for n in [n for n in g.node if n.name not in keep]:
        g.node.remove(n)
    for v in [v for v in g.value_info if v.name in (new_in, new_out)]:
        g.value_info.remove(v)
    del g.input[:]
    del g.output[:]
    g.input.append(helper.make_tensor_value_info(new_in, TensorProto.FLOAT, ishape))
    g.output.append(helper.make_tensor_value_info(new_out, TensorProto.FLOAT, oshape))
    m.set_tensor_datatype(new_in, idt)
    m.set_tensor_datatype(new_out, odt)
    return m.transform(RemoveUnusedTensors())


def specialize(model, part: str):
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    return _tidy(_transform(model, SpecializeLayers(part)))


def fold_attrs(node) -> dict[str, int]:
    """PE (and SIMD) of a HW node, with the sizes they must divide."""
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    out = {k: inst.get_nodeattr(k) for k in FOLDING_FIELDS if k in inst.get_nodeattr_types()}
    return out | {size: inst.get_nodeattr(size) for size in fold_sizes(node).values()}


def fold_sizes(node) -> dict[str, str]:
    """The attribute each folding field of a HW node must divide: MVAU's PE MH and SIMD MW;
    the channels of thresholding, padding, sliding windows and pools."""
    from qonnx.custom_op.registry import getCustomOp

    types = getCustomOp(node).get_nodeattr_types()
    if "MH" in types:
        return {"PE": "MH", "SIMD": "MW"}
    ch = next((c for c in ("NumChannels", "IFMChannels", "Channels") if c in types), None)
    return {f: ch for f in FOLDING_FIELDS if f in types and ch}


FOLDING_FIELDS = ("PE", "SIMD")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _folding_defaults(defaults, source: str) -> list[tuple[str, int, object]]:
    """FINN's ``"Defaults": {"PE": [value, ["MVAU_hls", ...] or "all", ...]}`` as a list of
    (field, value, op types or "all"), checked."""
    example = '{"PE": [2, ["MVAU_hls"]]}'
    if not isinstance(defaults, dict):
        raise TaperError(f"{source}: 'Defaults': expected a mapping like {example}")
    out = []
    for key, spec in defaults.items():
        where = f"{source}: 'Defaults' field '{key}'"
        if key not in FOLDING_FIELDS:
            raise TaperError(f"{source}: 'Defaults': unknown folding field '{key}'")
        if not isinstance(spec, list) or not spec or len(spec) % 2:
            raise TaperError(f'{where}: expected [value, [op types] or "all", ...]')
        for value, ops in zip(spec[::2], spec[1::2], strict=True):
            if not _positive_int(value):
                raise TaperError(f"{where}: {key} must be a positive integer, got {value!r}")
            if ops != "all" and not (
                isinstance(ops, list) and all(isinstance(o, str) for o in ops)
            ):
                raise TaperError(f'{where}: expected a list of op types or "all" after {value}')
            out.append((key, value, ops))
    return out


def apply_folding(model, config: dict, source: str, host: dict[str, str] | None = None):
    """Apply a folding file ``{layer: {"PE": p, "SIMD": s}}`` (with FINN's optional
    ``"Defaults"`` entry), checking what FINN does not: fields, values, divisibility.

    A file with a ``"Defaults"`` entry is FINN's ``folding_config.json``: as FINN does, it
    may name nodes the model does not have (a one-line warning names them) and set other
    node attributes (``ram_style``...), which taper's hardware does not take (a one-line
    note names them); taper's own format refuses both. ``host`` maps FINN op types the host
    edges took (``LabelSelect``) to why, for entries that name such a node.
    """
    from finn.transformation.general import ApplyConfig
    from qonnx.custom_op.registry import getCustomOp

    nodes = {n.name: n for n in model.graph.node if is_hw(n)}
    if not isinstance(config, dict):
        raise TaperError(
            f'{source}: expected a JSON object mapping layer names to {{"PE", "SIMD"}}'
        )
    finn_file = "Defaults" in config
    defaults = _folding_defaults(config["Defaults"], source) if finn_file else []
    stray: list[str] = []
    on_host: list[str] = []
    unapplied: dict[str, list[str]] = {}
    for name, cfg in config.items():
        if name == "Defaults":
            continue
        if name not in nodes:
            if not finn_file:
                raise TaperError(
                    f"{source}: layer '{name}' not in the model (layers: {', '.join(nodes)})"
                )
            op = name.split("_", 1)[0]
            (on_host if host and op in host else stray).append(name)
            continue
        if not isinstance(cfg, dict):
            raise TaperError(f"{source}: layer '{name}': expected a mapping like {{\"PE\": 4}}")
        attrs = getCustomOp(nodes[name]).get_nodeattr_types()
        for key, value in cfg.items():
            if finn_file and key in attrs and key not in FOLDING_FIELDS:
                unapplied.setdefault(key, []).append(name)
                continue
            if key not in FOLDING_FIELDS or key not in attrs:
                raise TaperError(f"{source}: layer '{name}': unknown folding field '{key}'")
            if not _positive_int(value):
                raise TaperError(f"{source}: layer '{name}': {key} must be a positive integer")
    if stray:
        _say(
            "warning",
            f"{source}: entries matching no layer ignored, as FINN ignores them: "
            f"{', '.join(stray)} (layers: {', '.join(nodes)})",
        )
    for name in on_host:
        _say("note", f"{source}: {name} ignored: {host[name.split('_', 1)[0]]}")
    if unapplied:
        fields = "; ".join(f"{k} ({', '.join(v)})" for k, v in unapplied.items())
        _say("note", f"{source}: {fields} not applied: only PE and SIMD fold taper's hardware")
    resolved: dict[str, dict[str, int]] = {}
    for name, node in nodes.items():
        attrs = getCustomOp(node).get_nodeattr_types()
        base = node.op_type.rsplit("_", 1)[0] if node.op_type.endswith(("_hls", "_rtl")) else None
        cfg: dict[str, int] = {}
        origin_of: dict[str, str] = {}
        for key, value, ops in defaults:  # later entries win, as in FINN
            if key in attrs and (ops == "all" or node.op_type in ops or base in ops):
                cfg[key], origin_of[key] = value, "'Defaults' "
        for key, value in config.get(name, {}).items():
            if key in FOLDING_FIELDS:
                cfg[key], origin_of[key] = value, ""
        sizes = fold_attrs(node)
        for key, size_key in fold_sizes(node).items():
            if key in cfg and sizes[size_key] % cfg[key]:
                raise TaperError(
                    f"{source}: layer '{name}': {origin_of[key]}{key}={cfg[key]} does not "
                    f"divide {size_key}={sizes[size_key]}"
                )
        if cfg:
            resolved[name] = cfg
    return _transform(model, ApplyConfig({"Defaults": {}, **resolved}))


def _say(kind: str, text: str) -> None:
    """One line on stderr: a warning or note about the user's input that does not stop."""
    print(f"[taper] {kind}: {text}", file=sys.stderr)


def estimates(model, part: str) -> dict[str, dict[str, float]]:
    """FINN's per-layer cycle and resource estimates (LUT, BRAM_18K, URAM, DSP)."""
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    cycles = model.analysis(exp_cycles_per_layer)
    res = res_estimation(model, part)
    out = {}
    for name, c in cycles.items():
        r = res.get(name, {})
        out[name] = {
            "cycles": int(c),
            **{k: float(r[k]) for k in ("LUT", "BRAM_18K", "URAM", "DSP") if k in r},
        }
    return out


def execute(model, x: np.ndarray, tensors: list[str] | None = None) -> dict[str, np.ndarray]:
    """FINN's execution of ``model`` one sample at a time; returns the named tensors stacked.

    qonnx's executor by default rounds every integer-annotated tensor to its type
    ("sanitize"): a reference must not correct values, and the check costs a Python call per
    weight per sample, so it is switched off here.
    """
    from finn.core.onnx_exec import execute_onnx

    iname = model.graph.input[0].name
    oname = model.graph.output[0].name
    want = tensors or [oname]
    dtype = x.dtype
    out: dict[str, list] = {t: [] for t in want}
    saved = os.environ.get("SANITIZE_QUANT_TENSORS")
    os.environ["SANITIZE_QUANT_TENSORS"] = "0"
    try:
        for xi in x:
            ctx = execute_onnx(
                model, {iname: xi[None].astype(dtype)}, return_full_exec_context=True
            )
            for t in want:
                out[t].append(np.asarray(ctx[t]).reshape(1, -1))
    finally:
        if saved is None:
            os.environ.pop("SANITIZE_QUANT_TENSORS", None)
        else:
            os.environ["SANITIZE_QUANT_TENSORS"] = saved
    return {t: np.concatenate(v) for t, v in out.items()}
