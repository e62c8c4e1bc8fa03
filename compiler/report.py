"""``DIR/report.md`` and ``DIR/report.png``: what the compiled accelerator is and costs."""

from __future__ import annotations

import math
from pathlib import Path

from compiler.build import REPORT_MD, REPORT_PNG, TIMELINE_PNG, atomic_write, write_text
from compiler.ir.model import MatVec, MaxPool, Model, Recurrent, SlidingWindow, Thresholding
from compiler.sim.patterns import fmt_cycles


def _pixels(n: int) -> str:
    side = math.isqrt(n)
    return f"{side}x{side}" if side * side == n and n > 1 else ""


def _vectors(n: int, elems: int) -> str:
    """A stream of n vectors of elems each: 6x6x27 for 36 pixels, 144 for one vector."""
    px = _pixels(n)
    return f"{px}x{elems}" if px else (f"{n}x{elems}" if n > 1 else f"{elems}")


def _matvec_row(layer: MatVec) -> dict:
    n = layer.n_vectors
    return {
        "op": "MatVec-XNOR" if layer.xnor else "MatVec",
        "shape": f"{_vectors(n, layer.in_features)} -> {_vectors(n, layer.out_features)}",
        "kernel": "-",
        "pixels": n,
        "weight": layer.weight_type.name,
        "acc": layer.acc_type.name,
        "PE": layer.pe,
        "SIMD": layer.simd,
    }


def _thresholding_row(layer: Thresholding) -> dict:
    return {
        "op": "Thresholding",
        "shape": _vectors(layer.n_vectors, layer.channels),
        "kernel": "-",
        "pixels": layer.n_vectors,
        "weight": "-",
        "acc": "-",
        "PE": layer.pe,
        "SIMD": "-",
    }


def _window_row(layer: SlidingWindow) -> dict:
    d, o, c, k = layer.ifm_dim, layer.ofm_dim, layer.channels, layer.kernel
    return {
        "op": "SlidingWindow",
        "shape": f"{d}x{d}x{c} -> {o}x{o}x{k * k * c}",
        "kernel": f"{k}x{k} s{layer.stride}" + (f" p{layer.pad}" if layer.pad else ""),
        "pixels": o * o,
        "weight": "-",
        "acc": "-",
        "PE": "-",
        "SIMD": layer.simd,
    }


def _maxpool_row(layer: MaxPool) -> dict:
    d, o, c, k = layer.ifm_dim, layer.ofm_dim, layer.channels, layer.kernel
    return {
        "op": "MaxPool",
        "shape": f"{d}x{d}x{c} -> {o}x{o}x{c}",
        "kernel": f"{k}x{k} s{k}",
        "pixels": o * o,
        "weight": "-",
        "acc": "-",
        "PE": layer.pe,
        "SIMD": "-",
    }


def _recurrent_row(layer: Recurrent) -> dict:
    T, F, H = layer.steps, layer.in_features, layer.hidden
    out = f"{T}x{H}" if layer.return_sequences else f"{H}"
    return {
        "op": f"{layer.cell.upper()} ({T} steps)",
        "shape": f"{T}x{F} -> {out}",
        # the time step's cycles: the state loop (h_t feeds step t+1) bounds the step's II
        "kernel": f"step {layer.step_cycles:,} cycles",
        "pixels": T,
        "weight": layer.weight_type.name,
        "acc": layer.acc_type.name,
        "PE": layer.pe,
        "SIMD": layer.simd,
    }


# The kind-specific report columns, one entry per IR layer kind.
ROWS = {
    "matvec": _matvec_row,
    "thresholding": _thresholding_row,
    "window": _window_row,
    "maxpool": _maxpool_row,
    "recurrent": _recurrent_row,
}


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
                "cycles": layer.cycles,
                "weight_bits": layer.weight_memory_bits,
                "threshold_bits": layer.threshold_memory_bits,
                "finn_lut": est.get("LUT"),
                "finn_bram18": est.get("BRAM_18K"),
            }
        )
    return rows


def render_markdown(
    m: Model,
    cycles: dict | None = None,
    fifo_bits_before: int | None = None,
    verify: dict | None = None,
    synth: dict | None = None,
    bitstream: dict | None = None,
) -> str:
    """The report of a build: the IR, and of the later steps whatever has run — the cycle
    model's run (``fifo.json``'s ``cycles``), verification, Yosys and the board's tools."""
    rows = layer_rows(m)
    e = m.input_edge
    lines = [
        f"# {m.name}",
        "",
        f"Source `{m.source}` · board {m.board} ({m.part}) · clock {m.clock_mhz:g} MHz",
        "",
        *(
            [
                f"- **II** {fmt_cycles(cycles['ii_cycles'])} cycles per frame -> "
                f"**{cycles['fps']:,.0f} FPS** "
                f"(cycle model of the RTL; slowest stage {m.ii_cycles:,} cycles)",
                f"- **latency** (first frame) {cycles['latency_cycles']:,} cycles "
                f"= {cycles['latency_cycles'] / m.clock_mhz:,.2f} µs",
                f"- FIFOs: {sum(f.depth * f.width for f in m.fifos):,} bits"
                + (f" (before sizing {fifo_bits_before:,})" if fifo_bits_before is not None else "")
                + ", depths "
                + ", ".join(f"{f.depth}" for f in m.fifos),
            ]
            if cycles is not None
            else [
                f"- **II** {m.ii_cycles:,} cycles per frame -> **{m.fps:,.0f} FPS**",
                f"- **latency** (first frame, stages in sequence) {m.latency_cycles:,} cycles "
                f"= {m.latency_cycles / m.clock_mhz:,.2f} µs",
            ]
        ),
        f"- weight memory {sum(r['weight_bits'] for r in rows):,} bits, threshold memory "
        f"{sum(r['threshold_bits'] for r in rows):,} bits",
        (
            f"- FINN estimate (total): {_fmt(sum(r['finn_lut'] or 0 for r in rows))} LUT, "
            f"{_fmt(sum(r['finn_bram18'] or 0 for r in rows))} BRAM18"
            if any(r["finn_lut"] is not None for r in rows)
            else "- FINN estimate: none (FINN does not take this model)"
        ),
        f"- host input edge: {e.kind} {list(e.in_shape)} -> {e.out_type} x {list(e.shape)}"
        + (f" (scale {e.scale:g}, {e.rounding})" if e.kind == "quant" else ""),
        f"- host output edge: {' -> '.join(s.op for s in m.output_edge.steps) or 'none'}",
        *_verify_lines(verify),
        *_synth_lines(synth),
        *_bitstream_lines(bitstream),
        "",
        "| layer | op | stream | kernel | out pixels | in | weight | acc | out | PE | SIMD "
        "| cycles | weight bits | threshold bits | FINN LUT | FINN BRAM18 |"
        + (f" Yosys {synth.get('labels', LABELS)['lut']} | Yosys BRAM36 |" if synth else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        + ("---|---|" if synth else ""),
    ]
    for r in rows:
        y = (synth or {}).get("layers", {}).get(r["layer"])
        lines.append(
            f"| {r['layer']} | {r['op']} | {r['shape']} | {r['kernel']} | {r['pixels']:,} "
            f"| {r['in']} | {r['weight']} | {r['acc']} "
            f"| {r['out']} | {r['PE']} | {r['SIMD']} | {r['cycles']:,} | {r['weight_bits']:,} "
            f"| {r['threshold_bits']:,} | {_fmt(r['finn_lut'])} | {_fmt(r['finn_bram18'])} |"
            + ((f" {y['lut']:,} | {y['bram36']:g} |" if y else " - | - |") if synth else "")
        )
    if cycles is not None:
        lines += [
            "",
            "| stage | busy | starved | blocked |",
            "|---|---|---|---|",
            *(
                f"| {k} | {v['busy']:,} | {v['starved']:,} | {v['blocked']:,} |"
                for k, v in cycles["stages"].items()
            ),
            "",
            f"Cycles over {cycles['frames']} frames. ![pipeline timeline]({TIMELINE_PNG})",
        ]
    lines += ["", f"![per-layer cycles and memory]({REPORT_PNG})", ""]
    return "\n".join(lines)


def _verify_lines(v: dict | None) -> list[str]:
    if not v:
        return []
    refs = v.get("references", {})
    ran = [k for k, r in refs.items() if not r.get("skipped")]
    bad = [k for k in ran if refs[k].get("mismatches")]
    line = (
        f"- **verified** {v['samples']:,} samples bit-exact against {', '.join(ran)}"
        if not bad
        else f"- **verification failed** against {', '.join(bad)} ({v['samples']:,} samples)"
    )
    rtl = refs.get("rtl", {})
    if rtl.get("cycle_model_exact"):
        line += f"; cycle model exact against Verilator ({rtl.get('cycle_model', '')})"
    return [line]


def _synth_lines(r: dict | None) -> list[str]:
    if not r:
        return []
    u, n = r["utilization"], r.get("labels", LABELS)
    used = ", ".join(f"{r[k]:,g} {n[k]} ({u[k]:.1%})" for k in ("lut", "ff", "bram36", "dsp"))
    return [f"- **Yosys**: {used} of the {r['device']['part']} [{r['tool']}]"]


def _bitstream_lines(r: dict | None) -> list[str]:
    """nextpnr's (ECP5) or Vivado's (PYNQ) results, when the bitstream step has them."""
    if not r:
        return []
    if "fmax_mhz" in r:  # ECP5: compiler/backends/rtl/ecp5.py's bitstream.json
        u = r["utilization"]
        met = "met" if r["timing_met"] else "NOT met"
        return [
            f"- **bitstream** `{r['bitstream']}` for {r['board']} ({r['part']}): "
            f"Fmax {r['fmax_mhz']} MHz (nextpnr), timing {met} at {r['clock_mhz']:g} MHz; "
            + ", ".join(f"{v['used']:,} {k} ({v['fraction']:.1%})" for k, v in u.items())
        ]
    return [  # Vivado: compiler/backends/rtl/vivado.py's vivado.json
        f"- **bitstream** `{Path(r['bitstream']).name}` (Vivado): {r['lut']:,.0f} LUT, "
        f"{r['ff']:,.0f} FF, {r['bram36']:g} BRAM36, {r['dsp']:.0f} DSP; WNS {r['wns_ns']} ns, "
        f"{r['achieved_mhz']:.1f} MHz achieved"
    ]


LABELS = {"lut": "LUT", "ff": "FF", "bram36": "BRAM36", "dsp": "DSP"}


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


def _read(p: Path) -> dict | None:
    import json

    return json.loads(p.read_text()) if p.is_file() else None


def write_report(build_dir: Path, out_dir: Path) -> None:
    """``report.md`` and ``report.png`` into ``out_dir`` from the artifacts of ``build_dir``:
    the IR and whatever later steps have written."""
    from compiler import ir
    from compiler.build import BITSTREAM_DIR, FIFO_JSON, SYNTH_JSON, VERIFY_JSON

    d = Path(build_dir)
    m = ir.load(d)
    fifo = _read(d / FIFO_JSON) or {}
    bit = d / BITSTREAM_DIR
    bitstream = _read(bit / "bitstream.json") or _read(bit / "vivado.json")
    plot(m, Path(out_dir) / REPORT_PNG)
    text = render_markdown(
        m, fifo.get("cycles"), fifo.get("bits_before"), _read(d / VERIFY_JSON),
        _read(d / SYNTH_JSON), bitstream,
    )  # fmt: skip
    write_text(Path(out_dir) / REPORT_MD, text)
