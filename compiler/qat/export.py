"""Brevitas model -> QONNX file, cleaned with qonnx."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from compiler.build import atomic_write


def export_qonnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """Export ``model`` (eval mode) as QONNX with a batch-1 input of ``input_shape``."""
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    from compiler.qat.linear import for_export

    # The exporter warns about torchvision ops this project never uses.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    was_training = model.training
    model.eval()
    try:
        # torch.onnx prints its progress to stdout; a build log wants none of it.
        with (
            tempfile.TemporaryDirectory() as tmp,
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            raw = Path(tmp) / "raw.onnx"
            brevitas_export_qonnx(
                for_export(model), input_t=torch.zeros(1, *input_shape), export_path=str(raw)
            )
            clean = cleanup_model(ModelWrapper(str(raw)))
            atomic_write(Path(path), lambda p: clean.save(str(p)))
    finally:
        model.train(was_training)
    return Path(path)


def execute_qonnx(path: Path, x, output: str | None = None):
    """Run a QONNX file on a batch ``x`` one sample at a time with qonnx's executor."""
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    model = ModelWrapper(str(path))
    iname = model.graph.input[0].name
    oname = output or model.graph.output[0].name
    outs = [execute_onnx(model, {iname: xi[None]})[oname] for xi in np.asarray(x)]
    return np.concatenate(outs)
