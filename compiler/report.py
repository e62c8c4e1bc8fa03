"""``DIR/report.md`` and ``DIR/report.png``: what the compiled accelerator is and costs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from compiler.build import REPORT_MD, REPORT_PNG, TIMELINE_PNG, atomic_write, write_text
from compiler.ir.model import MatVec, Model, Thresholding
from compiler.sim.patterns import fmt_cycles

if TYPE_CHECKING:
    from compiler.sim.cycles import CycleRun


def _matvec_row(layer: MatVec) -> dict:
    return {
        "op": "MatVec-XNOR" if layer.xnor else "MatVec",
        "shape": f"{layer.in_features}x{layer.out_features}",
        "weight": layer.weight_type.name,
        "acc": layer.acc_type.name,
        "SIMD": layer.simd,
    }


def _thresholding_row(layer: Thresholding) -> dict:
    return {
        "op": "Thresholding",
        "shape": f"{layer.channels}",
        "weight": "-",
        "acc": "-",
        "SIMD": "-",
    }


# The kind-specific report columns, one entry per IR layer kind.
ROWS = {"matvec": _matvec_row, "thresholding": _thresholding_row}


def layer_rows(m: Model) -> list[dict]:
    rows = []
    for layer in m.layers:
        est = m.estimates.get(layer.name, {})
        rows.append(
            {
                "layer": layer.name,
                **ROWS[layer.kind](layer),
                "in": layer.input_type.name,
                "out": layer.out_type.name,
                "PE": layer.pe,
                "cycles": layer.cycles,
                "weight_bits": layer.weight_memory_bits,
                "threshold_bits": layer.threshold_memory_bits,
                "finn_lut": est.get("LUT"),
                "finn_bram18": est.get("BRAM_18K"),
            }
        )
    return rows


def render_markdown(
    m: Model, run: CycleRun | None = None, fifo_bits_before: int | None = None
) -> str:
    rows = layer_rows(m)
    e = m.input_edge
    lines = [
        f"# {m.name}",
        "",
        f"Source `{m.source}` · board {m.board} ({m.part}) · clock {m.clock_mhz:g} MHz",
        "",
        *(
            [
                f"- **II** {fmt_cycles(run.ii_cycles)} cycles per frame -> **{run.fps:,.0f} FPS** "
                f"(cycle model of the RTL; slowest stage {m.ii_cycles:,} cycles)",
                f"- **latency** (first frame) {run.latency_cycles:,} cycles "
                f"= {run.latency_cycles / m.clock_mhz:,.2f} µs",
                f"- FIFOs: {sum(f.depth * f.width for f in m.fifos):,} bits"
                + (f" (before sizing {fifo_bits_before:,})" if fifo_bits_before is not None else "")
                + ", depths "
                + ", ".join(f"{f.depth}" for f in m.fifos),
            ]
            if run is not None
            else [
                f"- **II** {m.ii_cycles:,} cycles per frame -> **{m.fps:,.0f} FPS**",
                f"- **latency** (first frame, stages in sequence) {m.latency_cycles:,} cycles "
                f"= {m.latency_cycles / m.clock_mhz:,.2f} µs",
            ]
        ),
        f"- weight memory {sum(r['weight_bits'] for r in rows):,} bits, threshold memory "
        f"{sum(r['threshold_bits'] for r in rows):,} bits",
        f"- FINN estimate (total): {_fmt(sum(r['finn_lut'] or 0 for r in rows))} LUT, "
        f"{_fmt(sum(r['finn_bram18'] or 0 for r in rows))} BRAM18",
        f"- host input edge: {e.kind} {list(e.in_shape)} -> {e.out_type} x {list(e.shape)}"
        + (f" (scale {e.scale:g}, {e.rounding})" if e.kind == "quant" else ""),
        f"- host output edge: {' -> '.join(s.op for s in m.output_edge.steps) or 'none'}",
        "",
        "| layer | op | shape | in | weight | acc | out | PE | SIMD | cycles | weight bits "
        "| threshold bits | FINN LUT | FINN BRAM18 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['op']} | {r['shape']} | {r['in']} | {r['weight']} | {r['acc']} "
            f"| {r['out']} | {r['PE']} | {r['SIMD']} | {r['cycles']:,} | {r['weight_bits']:,} "
            f"| {r['threshold_bits']:,} | {_fmt(r['finn_lut'])} | {_fmt(r['finn_bram18'])} |"
        )
    if run is not None:
        lines += [
            "",
            "| stage | busy | starved | blocked |",
            "|---|---|---|---|",
            *(
                f"| {k} | {v.busy:,} | {v.starved:,} | {v.blocked:,} |"
                for k, v in run.stages.items()
            ),
            "",
            f"Cycles over {run.frames} frames. ![pipeline timeline]({TIMELINE_PNG})",
        ]
    lines += ["", f"![per-layer cycles and memory]({REPORT_PNG})", ""]
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def plot(m: Model, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = layer_rows(m)
    names = [r["layer"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows)), 4))
    ax1.bar(names, [r["cycles"] for r in rows], color="tab:blue")
    ax1.axhline(m.ii_cycles, color="tab:red", ls="--", label=f"II = {m.ii_cycles}")
    ax1.set_ylabel("cycles per frame")
    ax1.set_title("Cycles per layer")
    ax1.legend()
    ax2.bar(names, [r["weight_bits"] / 8192 for r in rows], label="weights", color="tab:green")
    ax2.bar(
        names,
        [r["threshold_bits"] / 8192 for r in rows],
        bottom=[r["weight_bits"] / 8192 for r in rows],
        label="thresholds",
        color="tab:orange",
    )
    ax2.set_ylabel("KiB")
    ax2.set_title("Parameter memory per layer")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{m.name}: {m.fps:,.0f} FPS at {m.clock_mhz:g} MHz")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def write_report(
    m: Model, out_dir: Path, run: CycleRun | None = None, fifo_bits_before: int | None = None
) -> None:
    out_dir = Path(out_dir)
    plot(m, out_dir / REPORT_PNG)
    write_text(out_dir / REPORT_MD, render_markdown(m, run, fifo_bits_before))
