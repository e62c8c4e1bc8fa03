"""Brevitas model -> QONNX file, cleaned with qonnx."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from compiler.artifacts import atomic_write


def export_qonnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """Export ``model`` (eval mode) as QONNX with a batch-1 input of ``input_shape``."""
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    from qonnx.util.cleanup import cleanup_model
    from qonnx.core.modelwrapper import ModelWrapper

    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = Path(tmp) / "raw.onnx"
            brevitas_export_qonnx(model, input_t=torch.zeros(1, *input_shape), export_path=str(raw))
            clean = cleanup_model(ModelWrapper(str(raw)))
            atomic_write(Path(path), lambda p: clean.save(str(p)))
    finally:
        model.train(was_training)
    return Path(path)
