"""FINN's execution of its HW-layer graph (finn_hw.onnx), compared layer by layer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from compiler import build as B
from compiler.frontend.precision import as_float64
from compiler.ir.model import Model
from compiler.references.base import Inputs, Reference, RefOutput, register


@register
class FINN(Reference):
    name = "finn"

    def unavailable(self, build: Path, m: Model) -> str | None:
        from compiler.frontend.compile import load_record

        if load_record(build).rnn:
            return "FINN has no recurrent layer"
        return None

    def run(self, build: Path, m: Model, inputs: Inputs) -> RefOutput:
        from qonnx.core.modelwrapper import ModelWrapper

        from compiler.frontend import finn_passes as F
        from compiler.frontend.compile import load_record

        rec = load_record(build)
        x, q = inputs.x, inputs.q
        with tempfile.TemporaryDirectory() as tmp, F.finn_environment(Path(tmp)):
            model = ModelWrapper(str(Path(build) / B.FINN_HW_ONNX))
            e = m.input_edge
            if e.kind == "quant":  # the integers, in the layout of the model's input
                perm = e.perm or tuple(range(len(e.in_shape)))
                q = q.reshape(len(q), *(e.in_shape[p] for p in perm))
                feed = q.transpose(0, *(1 + int(i) for i in np.argsort(perm)))
            else:
                feed = x
            # FINN's HW ops compute in the dtype they are given: float64 keeps accumulators
            # wider than float32's 24-bit mantissa exact
            model = as_float64(model)
            tensors = dict(zip([layer.name for layer in m.layers], rec.hw_outputs, strict=True))
            ref = F.execute(model, feed.astype(np.float64), [rec.finn_input, *tensors.values()])
        values = {"input edge": ref[rec.finn_input]}
        values.update({name: ref[t] for name, t in tensors.items()})
        return RefOutput(values, checked=list(values))
