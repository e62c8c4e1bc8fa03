"""taper's RTL against FINN's estimates and BNN-PYNQ's published LFC-W1A1, CNV-W1A1, CNV-W2A2.

    .venv/bin/python bench/rtl_vs_finn.py [--skip-synth] [--skip-path] [--finn-folding]
        [--models tfc,tfc_w2a2,lfc,lfc_bin,cnv_w1a1,cnv_w2a2]

For TFC_1W1A (../shared/zoo) and the tfc_w2a2 recipe at 1,000,000 img/s, the lfc_w1a1 recipe
(8-bit input) and lfc_w1a1_bin (binarized input, as BNN-PYNQ's) at 356,633 img/s (BNN-PYNQ's
measured LFC-W1A1 rate), folded by taper's cost model for that target at 100 MHz, or with
--finn-folding as FINN's SetFolding folded them (bench/foldings/, recorded when taper still
used it; the numbers in commit messages before the cost model are at these foldings): our
measured II (Verilator) against FINN's estimated cycles, our Yosys LUT/FF/BRAM against
FINN's estimate, taper's cost model's estimate (its error against Yosys) and BNN-PYNQ's
published numbers (28,360 LUT, 110 BRAM36 on the xc7z020), and the memory style the
generator chose per layer (W weights, T thresholds; S the weights' part in LUTs) beside
the layer's Yosys LUTs (its own module) and the cost model's (FIFO and width converter in
front included). Then the time of the whole path QONNX -> bit-exact Verilator run of 1,000
inputs for TFC_1W1A, cold (empty Verilator cache) and warm. Yosys and Vivado count differently.

cnv_w1a1 and cnv_w2a2 (not default: Yosys takes 10+ minutes each) are Brevitas' own bnn_pynq
`cnv_1w1a` and `cnv_2w2a` (3x32x32) against BNN-PYNQ's CNV-W1A1 at 9,150 img/s (26,072 LUT)
and CNV-W2A2 at 2,580 img/s (37,302 LUT), both on the xc7z020 at 100 MHz, Vivado. There is no
CIFAR-10 here: their weights are random and their BatchNorm statistics those of a random
batch (tests/cnn_models.py `random_batchnorm`), so the resources are those of random weights
(trained binary weights need not compress differently, but are not these). A target the cost
model finds no fitting folding for is a row with its error, followed by the fastest folding
that fits (--target-fps max).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
BNN_PYNQ_LFC = {"lut": 28_360, "bram36": 110, "fps": 356_633}
# published, xc7z020 at 100 MHz, Vivado
BNN_PYNQ = {
    "lfc_w1a1": BNN_PYNQ_LFC,
    "lfc_w1a1_bin": BNN_PYNQ_LFC,
    "cnv_1w1a": {"lut": 26_072, "fps": 9_150},
    "cnv_2w2a": {"lut": 37_302, "fps": 2_580},
}
BREVITAS_CNV = ("cnv_1w1a", "cnv_2w2a")  # brevitas_examples.bnn_pynq, random weights
FOLDINGS = Path(__file__).resolve().parent / "foldings"


def brevitas_cnv(name: str) -> Path:
    """Brevitas' bnn_pynq ``name`` with random weights and BatchNorm statistics, as QONNX."""
    out = ROOT / "build" / "bench" / f"{name}.onnx"
    if out.is_file():
        return out
    import torch
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    from compiler.qat.export import export_qonnx

    sys.path.insert(0, str(ROOT / "tests"))
    from cnn_models import random_batchnorm

    torch.manual_seed(0)
    model, _ = model_with_cfg(name, pretrained=False)
    model = random_batchnorm(model, torch.rand(8, 3, 32, 32))
    out.parent.mkdir(parents=True, exist_ok=True)
    return export_qonnx(model, (3, 32, 32), out)


def model_source(name: str) -> Path:
    if name.endswith(".onnx"):
        return ZOO / name
    if name in BREVITAS_CNV:
        return brevitas_cnv(name)
    from compiler.qat.recipe import load_recipe
    from compiler.qat.train import train

    out = ROOT / "build" / name
    if not (out / "model.onnx").is_file():
        train(load_recipe(name), out)
    return out / "model.onnx"


def _lanes(layer) -> tuple[int, int] | str:
    """PE, SIMD of a MatVec; a window's SIMD, a pool's (or thresholding's) PE."""
    if layer.kind == "matvec":
        return (layer.pe, layer.simd)
    return f"{layer.kind} {layer.simd if layer.kind == 'window' else layer.pe}"


def row(name: str, fps: float | str, synth: bool, folding: Path | None = None) -> dict:
    from compiler.backends.rtl import cost, simulate
    from compiler.boards import board as get_board
    from compiler.errors import TaperError
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.sim import bitexact

    d = Path(tempfile.mkdtemp()) / "hw"
    recipe = None if name.endswith(".onnx") or name in BREVITAS_CNV else name
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
        "folding": [_lanes(layer) for layer in m.layers],
    }
    # as the generator sizes the memories: within the board's block RAMs
    est = cost.estimate(m, get_board(m.board).bram36)
    out["cost_lut"] = est["lut"]
    out["layer_lut"] = {k: {"est": v["lut"]} for k, v in est["layers"].items()}
    if synth:
        from compiler import flow

        b = flow.run(d, None, flow.Options(backend="rtl"), only=("rtl", "synth"), quiet=True)
        s = b.results["synth"]
        out.update(
            yosys_lut=s["lut"], yosys_bram36=s["bram36"], yosys_ff=s["ff"], yosys_dsp=s["dsp"]
        )
        for k, v in s["layers"].items():
            out["layer_lut"][k]["yosys"] = v["lut"]
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


def _fps(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--skip-synth", action="store_true", help="no Yosys runs (minutes for LFC)")
    ap.add_argument(
        "--models",
        default="tfc,tfc_w2a2,lfc,lfc_bin",
        help="comma-separated subset of tfc, tfc_w2a2, lfc, lfc_bin, cnv_w1a1, cnv_w2a2 "
        "(default all but the CNVs)",
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
        "cnv_w1a1": ("cnv_1w1a", BNN_PYNQ["cnv_1w1a"]["fps"], None),
        "cnv_w2a2": ("cnv_2w2a", BNN_PYNQ["cnv_2w2a"]["fps"], None),
    }
    rows = []
    for k in args.models.split(","):
        name, fps, folding = cases[k]
        if args.finn_folding and folding is None:
            continue
        rows.append(row(name, fps, not args.skip_synth, folding if args.finn_folding else None))
        if "(--target-fps max)" in rows[-1].get("error", ""):
            rows.append(row(name, "max", not args.skip_synth))
    print(
        "| model | target img/s | PE,SIMD per layer | FINN est. cycles | IR II | measured II "
        "| latency | img/s @100 MHz | Yosys LUT | taper est. LUT | FINN LUT est. | Yosys FF "
        "| Yosys BRAM36 | FINN BRAM36 est. | BNN-PYNQ LUT @ img/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {_fps(r['target_fps'])} | {r['error']} |")
            continue
        y = r.get("yosys_lut")
        est = f"{r['cost_lut']:,.0f}" + (f" ({r['cost_lut'] / y - 1:+.0%})" if y else "")
        pub = BNN_PYNQ.get(r["model"])
        pub = f"{pub['lut']:,} @ {pub['fps']:,}" if pub else "-"
        print(
            f"| {r['model']} | {_fps(r['target_fps'])} | {r['folding']} | {r['finn_cycles']} | {r['ir_ii']} "
            f"| {r['rtl_ii']:g} | {r['rtl_latency']} | {100e6 / r['rtl_ii']:,.0f} "
            f"| {_n(y)} | {est} | {r['finn_lut']:,.0f} | {_n(r.get('yosys_ff'))} "
            f"| {r.get('yosys_bram36', '-')} | {r['finn_bram36']:g} "
            f"| {pub} |"
        )
        mems = r.get("memories", {})
        for name, lut in r["layer_lut"].items():
            yl = lut.get("yosys")
            text = "" if yl is None else f"Yosys {yl:,.0f} LUT, "
            text += f"est. {lut['est']:,.0f} LUT"
            text += "".join(f", {k} {v}" for k, v in mems.get(name, {}).items())
            print(f"    {name}: {text}")
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
