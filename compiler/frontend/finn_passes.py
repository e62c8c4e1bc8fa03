"""Every use of FINN and its work-arounds, in one module.

FINN (finn-plus) runs here without Vivado: transformations, streamlining, conversion to HW
layers, SpecializeLayers, SetFolding and the estimate analyses work. Known limits, each
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
- ``SetFolding`` and the estimate analyses need specialized nodes (``MVAU_hls``...), while
  only the generic nodes execute in Python (``*_hls`` need Vitis for cppsim): the finn
  reference executes the generic graph saved before specialization (``finn_hw.onnx``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from compiler.errors import TaperError

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


def _tidy(model):
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveReadableTensorNames,
        GiveUniqueNodeNames,
        RemoveStaticGraphInputs,
    )
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    for t in (
        InferShapes(),
        FoldConstants(),
        GiveUniqueNodeNames(),
        GiveReadableTensorNames(),
        InferDataTypes(),
        RemoveStaticGraphInputs(),
    ):
        model = model.transform(t)
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


def streamline(model):
    """QONNX -> FINN dialect, streamlined to integer MatMuls between MultiThresholds."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MoveScalarLinearPastInvariants
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount

    model = _tidy(model.transform(ConvertQONNXtoFINN()))
    for t in (
        absorb.AbsorbSignBiasIntoMultiThreshold(),
        absorb.AbsorbScalarBiasIntoMultiThreshold(),
        Streamline(),
        MoveScalarLinearPastInvariants(),
        Streamline(),
        absorb.AbsorbAddIntoMultiThreshold(),
        absorb.AbsorbMulIntoMultiThreshold(),
        ConvertBipolarMatMulToXnorPopcount(),
        Streamline(),
        _half_even_ties(),
        RoundAndClipThresholds(),
    ):
        model = _tidy(model.transform(t))
    return model


def to_hw(model):
    """Streamlined graph -> FINN's generic HW layers (MVAU, Thresholding)."""
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (
        InferThresholdingLayer,
    )

    for t in (
        InferBinaryMatrixVectorActivation(),
        InferQuantizedMatrixVectorActivation(),
        InferThresholdingLayer(),
    ):
        model = model.transform(t)
    return _tidy(model)


def exact_thresholds(hw32, hw64) -> None:
    """Copy the integer-input thresholds of ``hw64`` (same passes, float64) into ``hw32``."""
    from compiler.errors import TaperError

    n32, n64 = list(hw32.graph.node), list(hw64.graph.node)
    if [n.op_type for n in n32] != [n.op_type for n in n64]:
        raise TaperError("FINN's passes gave different graphs in float32 and float64")
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

    return _tidy(model.transform(SpecializeLayers(part)))


def set_folding(model, target_cycles: int):
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    return model.transform(SetFolding(target_cycles_per_frame=max(1, int(target_cycles))))


def fold_attrs(node) -> dict[str, int]:
    """PE (and SIMD) of a HW node, with the sizes they must divide."""
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    types = inst.get_nodeattr_types()
    if "MH" in types:
        return {
            "PE": inst.get_nodeattr("PE"),
            "SIMD": inst.get_nodeattr("SIMD"),
            "MH": inst.get_nodeattr("MH"),
            "MW": inst.get_nodeattr("MW"),
        }
    return {"PE": inst.get_nodeattr("PE"), "NumChannels": inst.get_nodeattr("NumChannels")}


def apply_folding(model, config: dict, source: str):
    """Apply a folding file ``{layer: {"PE": p, "SIMD": s}}``, checking what FINN does not."""
    from finn.transformation.general import ApplyConfig
    from qonnx.custom_op.registry import getCustomOp

    nodes = {n.name: n for n in model.graph.node if is_hw(n)}
    for name, cfg in config.items():
        if name == "Defaults":
            continue
        if name not in nodes:
            raise TaperError(
                f"{source}: layer '{name}' not in the model (layers: {', '.join(nodes)})"
            )
        if not isinstance(cfg, dict):
            raise TaperError(f"{source}: layer '{name}': expected a mapping like {{\"PE\": 4}}")
        attrs = getCustomOp(nodes[name]).get_nodeattr_types()
        for key, value in cfg.items():
            if key not in ("PE", "SIMD") or key not in attrs:
                raise TaperError(f"{source}: layer '{name}': unknown folding field '{key}'")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TaperError(f"{source}: layer '{name}': {key} must be a positive integer")
        sizes = fold_attrs(nodes[name])
        for key, size_key in (("PE", "MH" if "MH" in sizes else "NumChannels"), ("SIMD", "MW")):
            if key in cfg and sizes[size_key] % cfg[key]:
                raise TaperError(
                    f"{source}: layer '{name}': {key}={cfg[key]} does not divide "
                    f"{size_key}={sizes[size_key]}"
                )
    return model.transform(ApplyConfig({"Defaults": {}, **config}))


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
