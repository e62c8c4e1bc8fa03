"""The generated Verilog in Verilator, under random input stalls and output backpressure;
the cycle model (`sim/cycles.py`) must give the same cycle for every handshake."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler.ir.model import Model
from compiler.references.base import Inputs, Reference, RefOutput, register

STALL_PERCENT = 30
TIMING_FRAMES = 16


def cycle_difference(m: Model, rtl, **patterns) -> str | None:
    """The first handshake where the cycle model and a Verilator run differ, or None."""
    from compiler.sim import cycles

    frames = len(rtl.outputs)
    c = cycles.run(m, frames, **patterns)
    # the testbench stops at the last output word: input words taken later (rows a window or
    # pool never reads) are not recorded
    end = c.output_cycles[-1]
    for port, ours, theirs in (
        ("input", c.input_cycles[c.input_cycles <= end], rtl.input_word_cycles),
        ("output", c.output_cycles, rtl.output_word_cycles),
    ):
        theirs = np.asarray(theirs, dtype=np.int64)
        if len(ours) != len(theirs):
            return f"{port} port: {len(ours)} handshakes in the cycle model, {len(theirs)} in Verilator"
        bad = np.flatnonzero(ours != theirs)
        if bad.size:
            k = int(bad[0])
            return (
                f"{port} word {k}: cycle model at cycle {int(ours[k])}, Verilator at "
                f"{int(theirs[k])}"
            )
    return None


@register
class RTL(Reference):
    name = "rtl"

    def run(self, build: Path, m: Model, inputs: Inputs) -> RefOutput:
        """All samples under random stalls, then a stall-free run for the timing; the cycle
        model is checked against both, handshake by handshake."""
        from compiler.backends.rtl import simulate
        from compiler.sim.patterns import READY, VALID, Pattern

        q = inputs.q
        stalls = {
            "in_valid": Pattern.random(STALL_PERCENT, inputs.seed, VALID),
            "out_ready": Pattern.random(STALL_PERCENT, inputs.seed, READY),
        }
        run = simulate.run(m, q, **stalls)
        timing = simulate.run(m, q[:TIMING_FRAMES])
        measured = {"latency_cycles": timing.latency_cycles}
        if len(q[:TIMING_FRAMES]) >= 3:  # a steady state needs a few frames
            measured["ii_cycles"] = timing.ii_cycles
        diff = cycle_difference(m, timing) or cycle_difference(m, run, **stalls)
        handshakes = len(run.input_word_cycles) + len(run.output_word_cycles)
        handshakes += len(timing.input_word_cycles) + len(timing.output_word_cycles)
        return RefOutput(
            {m.layers[-1].name: run.outputs},
            exact=True,
            note=f"Verilator, {STALL_PERCENT}% random input stalls and output backpressure",
            measured=measured,
            cycle_model=diff or f"same cycle for all {handshakes:,} handshakes",
            cycle_model_exact=diff is None,
        )
