"""Read a QONNX file and reject what cannot be compiled, with one-line reasons.

Every node of the file is stamped with its original name and op (in its ``doc_string``)
before qonnx's cleanup renames it, and FINN's passes carry the stamp over to the nodes they
make from it (``finn_passes``), so an error deep in FINN can name the user's node
(``describe``). The file's path is stamped into the model's metadata for the same messages.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from compiler.errors import TaperError

QUANT_OPS = {"Quant", "BipolarQuant", "MultiThreshold", "Trunc", "IntQuant"}
FINN_HW = "finn.custom_op.fpgadataflow"
# FINN HW ops that pass values through unchanged (stream plumbing FINN inserts late)
FINN_PASS_THROUGH = {"StreamingFIFO", "StreamingDataWidthConverter"}
ORIGIN = "taper-origin: "
SOURCE_KEY = "taper_source"


def load_qonnx(path: Path):
    """A cleaned-up qonnx ModelWrapper of ``path``; TaperError for anything unusable."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    path = Path(path)
    proto = _read(path)
    if not proto.graph.node or len(proto.graph.input) == 0:
        raise TaperError(f"{path}: not an ONNX model (empty graph)")
    if (
        len(
            [
                i
                for i in proto.graph.input
                if i.name not in {t.name for t in proto.graph.initializer}
            ]
        )
        != 1
    ):
        raise TaperError(f"{path}: expected exactly one graph input")
    if len(proto.graph.output) != 1:
        raise TaperError(f"{path}: expected exactly one graph output")
    ops = {n.op_type for n in proto.graph.node}
    if not ops & QUANT_OPS and not any(n.domain.startswith(FINN_HW) for n in proto.graph.node):
        raise TaperError(
            f"{path}: a float model (no Quant, BipolarQuant or MultiThreshold node); "
            "integer hardware needs a quantized (QONNX) model, e.g. from Brevitas export_qonnx"
        )
    from compiler.frontend.rnn import rnn_meta

    if rnn_meta(proto, str(path)) is not None:
        # a taper RNN export: its tensor names are the lowering's contract, and qonnx's
        # cleanup would rename them and fold the weight quantizers
        return ModelWrapper(proto)
    stamp_origins(proto)
    finn_hw_to_generic(proto, path)
    if not any(p.key == SOURCE_KEY for p in proto.metadata_props):
        entry = proto.metadata_props.add()
        entry.key, entry.value = SOURCE_KEY, str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cleanup_model(ModelWrapper(proto))
    except Exception as e:  # qonnx raises anything on malformed graphs
        raise TaperError(
            f"{path}: qonnx cannot clean up the graph ({type(e).__name__}: {_one_line(e)})"
        ) from None


def finn_hw_to_generic(proto, path: Path) -> None:
    """A FINN model that already has HW layers, as the front end takes it: specialized
    nodes (``MVAU_hls``, ``Thresholding_rtl``...) become FINN's generic ones again (taper
    specializes and folds itself, and only generic nodes execute in Python), stream FIFOs
    and width converters go (they pass values through), and a ``LabelSelect`` becomes the
    ONNX TopK it computes, which the host's output edge then takes."""
    import onnx
    from onnx import TensorProto, helper
    from qonnx.custom_op.registry import getCustomOp

    g = proto.graph
    for n in list(g.node):
        if not n.domain.startswith(FINN_HW):
            continue
        if n.op_type == "StreamingDataflowPartition":
            raise TaperError(
                f"{path}: node {describe(n)}: a FINN dataflow partition (after "
                "step_create_dataflow_partition); give taper the model before partitioning"
            )
        if n.op_type.endswith(("_hls", "_rtl")):
            n.op_type, n.domain = n.op_type.rsplit("_", 1)[0], FINN_HW
            try:
                known = getCustomOp(n).get_nodeattr_types()
            except Exception:  # not one of FINN's generic ops: lowering names it
                continue
            for a in [a for a in n.attribute if a.name not in known]:
                n.attribute.remove(a)
        if n.op_type in FINN_PASS_THROUGH:
            for c in g.node:
                for j, name in enumerate(c.input):
                    if name == n.output[0]:
                        c.input[j] = n.input[0]
            for o in g.output:
                if o.name == n.output[0]:
                    o.name = n.input[0]
            g.node.remove(n)
        elif n.op_type == "LabelSelect":
            k = getCustomOp(n).get_nodeattr("K")
            k_name, values = f"{n.name}_k", f"{n.name}_values"
            g.initializer.append(onnx.numpy_helper.from_array(np.array([k], np.int64), k_name))
            topk = helper.make_node(
                "TopK", [n.input[0], k_name], [values, n.output[0]], name=n.name, axis=-1
            )
            topk.doc_string = n.doc_string
            g.node.insert(list(g.node).index(n), topk)
            g.node.remove(n)
            for o in g.output:
                if o.name == n.output[0]:
                    o.type.tensor_type.elem_type = TensorProto.INT64


def _read(path: Path):
    """The ModelProto of ``path`` with its external data, or a one-line TaperError."""
    import onnx
    from google.protobuf.message import DecodeError

    if path.is_dir():
        raise TaperError(f"{path}: is a directory, expected a QONNX (.onnx) file")
    if not path.is_file():
        raise TaperError(f"{path}: file not found")
    try:
        if path.stat().st_size == 0:
            raise TaperError(f"{path}: empty file, not an ONNX model")
        proto = onnx.load(str(path), load_external_data=False)
    except OSError as e:
        raise TaperError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError):
        raise TaperError(f"{path}: not an ONNX model (not a valid ONNX protobuf)") from None
    _load_external_data(proto, path)
    return proto


def _load_external_data(proto, path: Path) -> None:
    """Read the tensors stored outside ``path``, which onnx allows only from files inside the
    model's directory (no absolute path, no ``..``, no symbolic link)."""
    from onnx import TensorProto
    from onnx.external_data_helper import (
        ExternalDataInfo,
        _get_all_tensors,
        load_external_data_for_tensor,
        uses_external_data,
    )

    base = str(path.parent)
    for t in _get_all_tensors(proto):
        if not uses_external_data(t):
            continue
        try:
            location = ExternalDataInfo(t).location
        except Exception as e:
            raise TaperError(
                f"{path}: tensor '{t.name}': unreadable external data entry ({_one_line(e)})"
            ) from None
        where = f"{path}: tensor '{t.name}': external data path '{location}'"
        if os.path.isabs(location) or ".." in Path(location).parts:
            raise TaperError(
                f"{where} is refused: it must be a relative path inside the model's directory"
            )
        full = Path(base) / location
        if full.is_symlink():
            raise TaperError(f"{where} is refused: it is a symbolic link")
        if not full.is_file():
            raise TaperError(f"{where} not found next to the model")
        try:
            load_external_data_for_tensor(t, base)
        except Exception as e:  # onnx's checks: outside the directory, hard links, bounds
            raise TaperError(f"{where} is refused ({_one_line(e)})") from None
        # the data is inline now
        t.data_location = TensorProto.DEFAULT
        del t.external_data[:]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


# ---------------------------------------------------------------------------- node origins


def stamp_origins(proto) -> None:
    """Stamp every node not stamped yet with its name and op as the file has them."""
    for i, n in enumerate(proto.graph.node):
        if not n.doc_string.startswith(ORIGIN):
            n.doc_string = f"{ORIGIN}{n.name or f'#{i}'} ({n.op_type})"


def origin(node) -> str | None:
    """``name (op)`` of the user's node that ``node`` is or was made from, if known."""
    if node.doc_string.startswith(ORIGIN):
        return node.doc_string[len(ORIGIN) :]
    return None


def describe(node) -> str:
    """The user's node behind ``node``: ``Gemm_1 (Gemm)``; FINN's op follows when it differs
    (``Gemm_1 (Gemm; FINN's MVAU)``), and FINN's own name when nothing is known."""
    o = origin(node)
    if o is None:
        return f"{node.name} ({node.op_type})"
    if o.endswith(f"({node.op_type})"):
        return o
    return f"{o[:-1]}; FINN's {node.op_type})"


def source_of(model) -> str:
    """The file the model was loaded from (stamped by ``load_qonnx``), for messages."""
    for p in model.model.metadata_props:
        if p.key == SOURCE_KEY:
            return p.value
    return "model"
