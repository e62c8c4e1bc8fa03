"""What FIFO sizing saves: FIFO bits and Yosys LUT/FF/BRAM with the default depths (2 words
before every layer) against the sized ones (the fifo step's `auto`), at the same II.

    .venv/bin/python bench/fifo_sizing.py [--work DIR] [--json FILE]

For zoo models (../shared/zoo) at the foldings named below, each built twice through the
flow up to `synth` (Yosys synth_xilinx for the pynq-z2's xc7z020). Sizing time is the fifo
step's seconds (cycle-model runs only).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
DESIGNS = [  # (zoo model, target FPS or None for the default folding)
    ("TFC_1W1A", None),
    ("TFC_2W2A", 1_000_000),
    ("unsw_nb15-mlp-w2a2", 1_000_000),
]


def build(work: Path, name: str, fps: float | None, depths: str) -> dict:
    from compiler import build as B
    from compiler import flow

    out = work / f"{name}-{fps or 'default'}-{depths}"
    b = flow.run(
        out,
        flow.Source.onnx(ZOO / f"{name}.onnx"),
        flow.Options(target_fps=fps, fifo_depths=depths),
        until="synth",
        quiet=True,
    )
    fifo = json.loads((b / B.FIFO_JSON).read_text())
    synth = json.loads((b / B.SYNTH_JSON).read_text())
    seconds = B.Build(out).state().steps["fifo"].seconds
    return {
        "bits": fifo["bits"],
        "ii_cycles": fifo["cycles"]["ii_cycles"],
        "latency_cycles": fifo["cycles"]["latency_cycles"],
        "lut": synth["lut"],
        "ff": synth["ff"],
        "bram36": synth["bram36"],
        "fifo_step_seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="Build directories (reused by reruns).")
    ap.add_argument("--json", type=Path, help="Save the rows as JSON.")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="fifo-bench-"))
    rows = []
    head = (
        f"{'design':28s} {'FIFO bits':>15s} {'LUT':>17s} {'FF':>15s} {'BRAM36':>11s} "
        f"{'II':>9s} {'latency':>11s} {'sizing s':>8s}"
    )
    print(head)
    for name, fps in DESIGNS:
        d = build(work, name, fps, "default")
        s = build(work, name, fps, "auto")
        label = f"{name} @ {f'{fps:,.0f} FPS' if fps else 'default'}"
        rows.append({"design": label, "default": d, "sized": s})
        print(
            f"{label:28s} {d['bits']:>6,} -> {s['bits']:<6,} {d['lut']:>7,} -> {s['lut']:<7,} "
            f"{d['ff']:>6,} -> {s['ff']:<6,} {d['bram36']:>4g} -> {s['bram36']:<4g} "
            f"{d['ii_cycles']:>4g}/{s['ii_cycles']:<4g} {d['latency_cycles']:>5}/"
            f"{s['latency_cycles']:<5} {s['fifo_step_seconds']:8.1f}"
        )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
