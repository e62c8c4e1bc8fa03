"""Read a QONNX file and reject what cannot be compiled, with one-line reasons."""

from __future__ import annotations

import warnings
from pathlib import Path

from compiler.errors import TaperError

QUANT_OPS = {"Quant", "BipolarQuant", "MultiThreshold", "Trunc", "IntQuant"}


def load_qonnx(path: Path):
    """A cleaned-up qonnx ModelWrapper of ``path``; TaperError for anything unusable."""
    import onnx
    from google.protobuf.message import DecodeError
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    path = Path(path)
    if not path.is_file():
        raise TaperError(f"{path}: file not found")
    try:
        proto = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, RuntimeError) as e:
        raise TaperError(f"{path}: not an ONNX model ({type(e).__name__})") from None
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
    if not ops & QUANT_OPS:
        raise TaperError(
            f"{path}: a float model (no Quant, BipolarQuant or MultiThreshold node); "
            "integer hardware needs a quantized (QONNX) model, e.g. from Brevitas export_qonnx"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cleanup_model(ModelWrapper(proto))
    except Exception as e:  # qonnx raises anything on malformed graphs
        raise TaperError(
            f"{path}: qonnx cannot clean up the graph ({type(e).__name__}: {e})"
        ) from None
