"""The generated Verilog in Verilator, under random input stalls and output backpressure."""

from __future__ import annotations

from pathlib import Path

from compiler.ir.model import Model
from compiler.references.base import Inputs, Reference, RefOutput, register

STALL_PERCENT = 30
TIMING_FRAMES = 16


@register
class RTL(Reference):
    name = "rtl"

    def run(self, build: Path, m: Model, inputs: Inputs) -> RefOutput:
        """All samples under random stalls, then a stall-free run for the timing."""
        from compiler.backends.rtl import simulate

        q = inputs.q
        run = simulate.run(m, q, stall_percent=STALL_PERCENT, seed=inputs.seed)
        timing = simulate.run(m, q[:TIMING_FRAMES], stall_percent=0)
        measured = {"latency_cycles": timing.latency_cycles}
        if len(q[:TIMING_FRAMES]) >= 3:  # a steady state needs a few frames
            measured["ii_cycles"] = timing.ii_cycles
        return RefOutput(
            {m.layers[-1].name: run.outputs},
            exact=True,
            note=f"Verilator, {STALL_PERCENT}% random input stalls and output backpressure",
            measured=measured,
        )
