"""taper's RTL against FINN's estimates and BNN-PYNQ's published LFC-W1A1.

    .venv/bin/python bench/rtl_vs_finn.py [--skip-synth] [--models tfc,tfc_w2a2,lfc,lfc_bin]
                                          [--skip-path] [--finn-folding]

For TFC_1W1A (../shared/zoo) and the tfc_w2a2 recipe at 1,000,000 img/s, the lfc_w1a1 recipe
(8-bit input) and lfc_w1a1_bin (binarized input, as BNN-PYNQ's) at 356,633 img/s (BNN-PYNQ's
measured LFC-W1A1 rate), folded by taper's cost model for that target at 100 MHz, or with
--finn-folding as FINN's SetFolding folded them (bench/foldings/, recorded when taper still
used it; the numbers in commit messages before the cost model are at these foldings): our
measured II (Verilator) against FINN's estimated cycles, our Yosys LUT/FF/BRAM against
FINN's estimate, taper's cost model's estimate (its error against Yosys) and BNN-PYNQ's
published numbers (28,360 LUT, 110 BRAM36 on the xc7z020), and the memory style the
generator chose per layer (W weights, T thresholds; S the weights' part in LUTs). Then the time of the whole path QONNX -> bit-exact Verilator run of 1,000 inputs
for TFC_1W1A, cold (empty Verilator cache) and warm. Yosys and Vivado count differently.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
BNN_PYNQ_LFC = {"lut": 28_360, "bram36": 110, "fps": 356_633}
FOLDINGS = Path(__file__).resolve().parent / "foldings"


def model_source(name: str) -> Path:
    if name.endswith(".onnx"):
        return ZOO / name
    from compiler.qat.recipe import load_recipe
    from compiler.qat.train import train

    out = ROOT / "build" / name
    if not (out / "model.onnx").is_file():
        train(load_recipe(name), out)
    return out / "model.onnx"


def row(name: str, fps: float, synth: bool, folding: Path | None = None) -> dict:
    from compiler.backends.rtl import cost, simulate
    from compiler.boards import board as get_board
    from compiler.errors import TaperError
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.sim import bitexact

    d = Path(tempfile.mkdtemp()) / "hw"
    recipe = None if name.endswith(".onnx") else name
    opts = CompileOptions(
        target_fps=None if folding else fps,
        folding=str(folding) if folding else None,
        recipe=recipe,
    )
    try:
        m = compile_model(model_source(name), d, opts, quiet=True)
    except TaperError as e:  # the cost model finds no folding reaching the target that fits
        return {"model": name, "target_fps": fps, "error": str(e)}
    finn_cycles = max(e["cycles"] for e in m.estimates.values())
    finn_lut = sum(e.get("LUT", 0) for e in m.estimates.values())
    finn_bram18 = sum(e.get("BRAM_18K", 0) for e in m.estimates.values())
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(16, *m.input_edge.in_shape)).astype(np.float32)
    q = bitexact.quantize_input(m.input_edge, x)
    run = simulate.run(m, q, stall_percent=0)
    assert np.array_equal(run.outputs, bitexact.run_hardware(m, q)[m.output_tensor])
    out = {
        "model": name,
        "target_fps": fps,
        "ir_ii": m.ii_cycles,
        "rtl_ii": run.ii_cycles,
        "rtl_latency": run.latency_cycles,
        "finn_cycles": finn_cycles,
        "finn_lut": finn_lut,
        "finn_bram36": finn_bram18 / 2,
        "folding": [(layer.pe, layer.simd) for layer in m.layers],
        # as the generator sizes the memories: within the board's block RAMs
        "cost_lut": cost.estimate(m, get_board(m.board).bram36)["lut"],
    }
    if synth:
        from compiler import flow

        b = flow.run(d, None, flow.Options(backend="rtl"), only=("rtl", "synth"), quiet=True)
        s = b.results["synth"]
        out.update(
            yosys_lut=s["lut"], yosys_bram36=s["bram36"], yosys_ff=s["ff"], yosys_dsp=s["dsp"]
        )
        # the generator's memory style per layer (weights W, thresholds T) and its estimate
        design = json.loads((d / "rtl" / "design.json").read_text())
        out["memories"] = {
            layer["name"]: {
                {"W_SPLIT": "S"}.get(k, k[0]): f"{v['depth']}x{v['width']} {v['style']}"
                for k, v in layer["memories"].items()
            }
            for layer in design["layers"]
        }
    return out


def path_time(cache: Path) -> float:
    """QONNX file -> compile -> generate -> verilate -> simulate 1,000 inputs -> compare."""
    from compiler.backends.rtl import simulate
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.data import load
    from compiler.sim import bitexact

    t = time.perf_counter()
    d = Path(tempfile.mkdtemp()) / "hw"
    m = compile_model(ZOO / "TFC_1W1A.onnx", d, CompileOptions(target_fps=1e6), quiet=True)
    split = load("mnist", seed=0, holdout=1000)
    q = bitexact.quantize_input(m.input_edge, split.x_holdout.reshape(-1, *m.input_edge.in_shape))
    run = simulate.run(m, q, stall_percent=30, seed=1, cache=cache)
    assert np.array_equal(run.outputs, bitexact.run_hardware(m, q)[m.output_tensor])
    return time.perf_counter() - t


def _n(v) -> str:
    return "-" if v is None else f"{v:,}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--skip-synth", action="store_true", help="no Yosys runs (minutes for LFC)")
    ap.add_argument(
        "--models",
        default="tfc,tfc_w2a2,lfc,lfc_bin",
        help="comma-separated subset of tfc, tfc_w2a2, lfc, lfc_bin (default all)",
    )
    ap.add_argument("--skip-path", action="store_true", help="no QONNX -> Verilator timing")
    ap.add_argument(
        "--finn-folding", action="store_true", help="FINN's SetFolding folding (bench/foldings/)"
    )
    args = ap.parse_args()
    cases = {
        "tfc": ("TFC_1W1A.onnx", 1e6, FOLDINGS / "TFC_1W1A_finn_1M.json"),
        "tfc_w2a2": ("tfc_w2a2", 1e6, None),
        "lfc": ("lfc_w1a1", BNN_PYNQ_LFC["fps"], FOLDINGS / "lfc_w1a1_finn_356633.json"),
        "lfc_bin": ("lfc_w1a1_bin", BNN_PYNQ_LFC["fps"], None),
    }
    rows = []
    for k in args.models.split(","):
        name, fps, folding = cases[k]
        if args.finn_folding and folding is None:
            continue
        rows.append(row(name, fps, not args.skip_synth, folding if args.finn_folding else None))
    print(
        "| model | target img/s | PE,SIMD per layer | FINN est. cycles | IR II | measured II "
        "| latency | img/s @100 MHz | Yosys LUT | taper est. LUT | FINN LUT est. | Yosys FF "
        "| Yosys BRAM36 | FINN BRAM36 est. |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['target_fps']:,.0f} | {r['error']} |")
            continue
        y = r.get("yosys_lut")
        est = f"{r['cost_lut']:,.0f}" + (f" ({r['cost_lut'] / y - 1:+.0%})" if y else "")
        print(
            f"| {r['model']} | {r['target_fps']:,.0f} | {r['folding']} | {r['finn_cycles']} | {r['ir_ii']} "
            f"| {r['rtl_ii']:g} | {r['rtl_latency']} | {100e6 / r['rtl_ii']:,.0f} "
            f"| {_n(y)} | {est} | {r['finn_lut']:,.0f} | {_n(r.get('yosys_ff'))} "
            f"| {r.get('yosys_bram36', '-')} | {r['finn_bram36']:g} |"
        )
        for name, mems in r.get("memories", {}).items():
            print(f"    {name}: " + ", ".join(f"{k} {v}" for k, v in mems.items()))
    print(
        f"\nBNN-PYNQ LFC-W1A1 on xc7z020 (Vivado): {BNN_PYNQ_LFC['lut']:,} LUT, "
        f"{BNN_PYNQ_LFC['bram36']} BRAM36, {BNN_PYNQ_LFC['fps']:,} img/s. "
        "Yosys counts differ from Vivado's (no cross-boundary optimisation, own packing)."
    )
    if args.skip_path:
        return
    with tempfile.TemporaryDirectory() as cache:
        cold = path_time(Path(cache))
        warm = path_time(Path(cache))
    print(
        f"\nTFC_1W1A QONNX -> bit-exact Verilator run of 1,000 inputs (30% stalls): "
        f"cold {cold:.1f} s, warm {warm:.1f} s"
    )


if __name__ == "__main__":
    main()
