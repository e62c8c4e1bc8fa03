"""FIFO sizing with the cycle model: the smallest depth of every FIFO at which the pipeline
still reaches the initiation interval it has with deep FIFOs, for a given input pattern.

FINN sizes FIFOs by simulating the stitched design in Vivado's simulator; here each try is a
cycle-model run that stops at the steady state, so sizing takes seconds and needs no tool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from compiler.errors import TaperError
from compiler.ir.model import FIFO, Model
from compiler.sim import cycles
from compiler.sim.patterns import fmt_cycles

FRAMES = 32  # per try; a run stops earlier at its steady state
MAX_DEPTH = 1 << 20


@dataclass
class Sizing:
    before: dict[str, int]  # depth per FIFO (keyed by the layer input it buffers)
    after: dict[str, int]
    widths: dict[str, int]
    ii_cycles: float  # reached with deep FIFOs, and with the sized ones
    ii_before: float  # with the depths before sizing
    tries: int

    def bits(self, depths: dict[str, int]) -> int:
        return sum(depths[k] * self.widths[k] for k in depths)

    def to_json(self) -> dict:
        return {
            "ii_cycles": self.ii_cycles,
            "ii_cycles_before": self.ii_before,
            "depths_before": self.before,
            "depths": self.after,
            "bits_before": self.bits(self.before),
            "bits": self.bits(self.after),
            "tries": self.tries,
        }


def size_fifos(
    m: Model, *, in_valid: object = None, out_ready: object = None, frame_period: int = 0
) -> Sizing:
    """Coordinate descent from deep FIFOs: each FIFO in turn gets the smallest depth (binary
    search) that keeps the II, the others as they are, until no depth shrinks."""
    widths = {layer.input: layer.in_width for layer in m.layers}
    words = {layer.input: layer.in_frame // layer.in_elems for layer in m.layers}
    before = cycles.fifo_depths(m)
    tries = 0

    def run(depths: dict[str, int]) -> cycles.CycleRun:
        nonlocal tries
        tries += 1
        return cycles.run(
            m,
            FRAMES,
            in_valid=in_valid,
            out_ready=out_ready,
            frame_period=frame_period,
            fifo_depths=depths,
        )

    def ii(depths: dict[str, int]) -> float:
        return run(depths).steady_ii_cycles

    # deep enough that two frames fit: no stage waits on a full FIFO for the II
    deep = {k: max(2, 2 * words[k] + 2, before[k]) for k in before}
    r = run(deep)
    target = r.steady_ii_cycles
    ii_before = ii(before)
    # a FIFO one word deeper than the most it held is never full: every handshake as deep
    # (a CNN's deep FIFOs hold thousands of words; most hold a few)
    peaks = {layer.input: r.fifos[f"{layer.name}_fifo"].peak for layer in m.layers}
    depths = {k: min(deep[k], peaks[k] + 1) for k in deep}
    # Often every FIFO can be a register (a CNN whose stages all run at the bottleneck's
    # pace): one run settles it, where the search below costs one per FIFO and halving.
    ones = dict.fromkeys(depths, 1)
    if depths != ones and ii(ones) <= target:
        depths = ones
    changed = True
    while changed:
        changed = False
        for k in depths:
            lo, hi = 1, depths[k]  # hi keeps the II
            if lo < hi and ii({**depths, k: lo}) <= target:  # the common answer first
                hi = lo
            lo += 1
            while lo < hi:
                mid = (lo + hi) // 2
                if ii({**depths, k: mid}) <= target:
                    hi = mid
                else:
                    lo = mid + 1
            if hi < depths[k]:
                depths[k], changed = hi, True
    return Sizing(before, depths, widths, target, ii_before, tries)


def read_depths(path: Path, m: Model) -> dict[str, int]:
    """A FIFO file: JSON ``{"<layer>": depth}``, the depth of the FIFO in front of each layer
    named (others keep theirs). Returns depths keyed by the layer's input tensor."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TaperError(f"{path}: FIFO file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaperError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise TaperError(f'{path}: expected a JSON object like {{"<layer>": <depth>}}')
    layers = {layer.name: layer for layer in m.layers}
    depths = {}
    for name, v in doc.items():
        if name not in layers:
            raise TaperError(f"{path}: '{name}': no such layer (layers: {', '.join(layers)})")
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DEPTH:
            raise TaperError(f"{path}: '{name}': expected a FIFO depth 1..{MAX_DEPTH}, got {v!r}")
        depths[layers[name].input] = v
    return depths


def with_depths(m: Model, depths: dict[str, int]) -> Model:
    """``m`` with these FIFO depths (keyed by input tensor) in front of its layers."""
    full = {**cycles.fifo_depths(m), **depths}
    m.fifos = [
        FIFO(tensor=layer.input, depth=full[layer.input], width=layer.in_width)
        for layer in m.layers
    ]
    return m


REPORT_FRAMES = 16  # frames of the cycle-model run behind the report and fifo.json
TIMELINE_FRAMES = 4


def run_step(lowered: Path, stage: Path, spec: str) -> str:
    """The flow's fifo step: depths (``auto``: sized; ``default``: as lowered; else a FIFO
    file) into the IR, then the cycle model's latency, II, per-stage table (in ``fifo.json``,
    which the report step renders) and timeline."""
    from compiler import ir
    from compiler.build import FIFO_JSON, TIMELINE_PNG, write_json
    from compiler.sim import timeline

    m = ir.load(lowered)
    sizing = None
    if spec == "auto":
        sizing = size_fifos(m)
        depths = sizing.after
    elif spec == "default":
        depths = {}
    else:
        depths = read_depths(Path(spec), m)
    before = {f.tensor: (f.depth, f.width) for f in m.fifos}
    with_depths(m, depths)
    run = cycles.run(m, REPORT_FRAMES)
    horizon = int(run.last_cycles[min(TIMELINE_FRAMES, REPORT_FRAMES) - 1]) + 1
    traced = cycles.run(m, TIMELINE_FRAMES, record_cycles=horizon)
    ir.save(m, stage)
    bits_before = sum(d * w for d, w in before.values())
    bits = sum(f.depth * f.width for f in m.fifos)
    names = {layer.input: layer.name for layer in m.layers}
    write_json(
        stage / FIFO_JSON,
        {
            "mode": spec if spec in ("auto", "default") else "file",
            "depths": {names[f.tensor]: f.depth for f in m.fifos},
            "bits": bits,
            "bits_before": bits_before,
            "sizing": None if sizing is None else sizing.to_json(),
            "cycles": run.to_json(),
        },
    )
    timeline.plot(traced, stage / TIMELINE_PNG, m.name, horizon)
    return (
        f"FIFOs {bits_before:,} -> {bits:,} bits; latency {run.latency_cycles:,} cycles, "
        f"II {fmt_cycles(run.ii_cycles)} cycles ({run.fps:,.0f} FPS)"
    )
