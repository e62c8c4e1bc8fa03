"""hls4ml's g++ C-simulation of the build's hls4ml project (the ``hls4ml`` step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler import build as B
from compiler.ir.model import Model
from compiler.references.base import Inputs, Reference, RefOutput, output_to_int, register


@register
class HLS4ML(Reference):
    name = "hls4ml"

    def unavailable(self, build: Path, m: Model) -> str | None:
        if not (Path(build) / B.HLS4ML_DIR).is_dir():
            return "no hls4ml project in this build (build it with --backend hls4ml)"
        if m.input_edge.kind != "quant":
            return "hls4ml needs the model input to go through a Quant (--input-type)"
        return None

    def run(self, build: Path, m: Model, inputs: Inputs) -> RefOutput:
        from compiler.backends.hls4ml import csim

        e = m.input_edge
        # The project starts at the input quantizer: its exact values pass through unchanged.
        # ``inputs.q`` is in stream order, a CNN's image channels-last (the edge's ``perm``),
        # as hls4ml's channels-last project reads it.
        y = csim.run(Path(build), (inputs.q.astype(np.float64) - e.zero_point) * e.scale)
        return RefOutput(
            {m.layers[-1].name: output_to_int(m, y)}, exact=True, note="g++ C-simulation"
        )
