"""Speed of the cycle-accurate simulator (compiler/sim/cycles.py) against Verilator.

    nice .venv/bin/python bench/cycle_speed.py [--work DIR] [--frames 1000] [--repeat 3]
                                              [--epochs 1] [--json FILE]

For three designs, each compiled through the flow (`taper compile`: train if a recipe,
export, frontend, lower, fifo) into DIR/<design> (reused on reruns; default: a temp dir):
TFC_1W1A (../shared/zoo) at its default folding, TFC_1W1A folded for 1,000,000 FPS, and the
lfc_w1a1 recipe's network (trained for --epochs epochs: only timing is measured, so its
accuracy does not matter; the recipe's own target sets its folding).

On the same design and the same frames (random inputs; timing does not depend on data):
- the cycle model with its steady-state fill (it stops simulating once the pipeline repeats
  and fills in the remaining frames exactly), and without it (every frame simulated);
- Verilator simulation only: `simulate.run` once its binary is built (one untimed warm-up
  call first); a call still generates the RTL and hashes it to find the cached binary;
- Verilator including its build: `simulate.build` into a fresh empty cache directory, then
  `simulate.run`;
- both again with random port stalls (in_valid=30, out_ready=30, seed=1), where the
  steady-state fill cannot apply (the pattern does not repeat).
Each cycle-model run is checked handshake for handshake against Verilator's (every input and
output word's cycle: "exact"), and the II and latency of both are printed. The cycle model
and Verilator-only timings are the best of --repeat runs; the build is timed once.
Also prints each design's FIFO bits: sum(depth * width) of the IR's FIFOs, and fifo.json's
`bits` (after sizing) and `bits_before` (as lowered). --json FILE saves every number.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
STALLS = {"in_valid": 30, "out_ready": 30, "seed": 1}

# (name, model as `taper compile` takes it, --target-fps or None for the default folding)
DESIGNS = [
    ("TFC_1W1A default", str(ZOO / "TFC_1W1A.onnx"), None),
    ("TFC_1W1A @1M FPS", str(ZOO / "TFC_1W1A.onnx"), 1e6),
    ("lfc_w1a1", "lfc_w1a1", None),
]


def best(fn, repeat: int):
    """(result of the last call, best seconds of ``repeat`` calls)."""
    secs = float("inf")
    out = None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        secs = min(secs, time.perf_counter() - t)
    return out, secs


def compile_design(model: str, target_fps: float | None, out: Path, epochs: int):
    """Compile as `taper compile MODEL --out OUT [--target-fps F]` does:
    (model, seconds, of which training, whether it was not built before)."""
    from compiler import flow, ir
    from compiler.build import CHECKPOINT, IR_JSON

    source = flow.Source.parse(model)
    opts = flow.Options(target_fps=target_fps)
    if source.kind == "recipe":
        opts.epochs = epochs
    fresh = not (out / IR_JSON).is_file()
    t = time.perf_counter()
    train_s = None  # seconds of training, when it ran now
    if source.kind == "recipe":
        trained = (out / CHECKPOINT).is_file()
        flow.run(out, source, opts, until="train", quiet=True)
        train_s = None if trained else time.perf_counter() - t
    flow.run(out, source, opts, until="fifo", quiet=True)
    return ir.load(out), time.perf_counter() - t, train_s, fresh


def exact(c, r) -> bool:
    """Every input and output handshake of the cycle model's run equals Verilator's."""
    return np.array_equal(c.input_cycles, np.asarray(r.input_word_cycles)) and np.array_equal(
        c.output_cycles, np.asarray(r.output_word_cycles)
    )


def cyc_row(run: str, c, r, secs: float, frames: int) -> dict:
    return {
        "run": run,
        "ii_cycles": c.ii_cycles,
        "latency_cycles": c.latency_cycles,
        "exact": exact(c, r),
        "steady_state": None if c.period is None else list(c.period),
        "simulated_frames": c.simulated_frames,
        "seconds": secs,
        "fps": frames / secs,
    }


def rtl_row(run: str, r, secs: float, frames: int) -> dict:
    return {
        "run": run,
        "ii_cycles": r.ii_cycles,
        "latency_cycles": r.latency_cycles,
        "exact": None,
        "steady_state": None,
        "simulated_frames": frames,
        "seconds": secs,
        "fps": frames / secs,
    }


def bench_design(name: str, model: str, target_fps, work: Path, args) -> dict:
    from compiler.backends.rtl import simulate
    from compiler.build import FIFO_JSON
    from compiler.sim import bitexact, cycles

    slug = name.replace(" ", "_").replace("@", "").replace("/", "_")
    out = work / slug
    m, compile_s, train_s, fresh = compile_design(model, target_fps, out, args.epochs)
    fifo = json.loads((out / FIFO_JSON).read_text())
    n = args.frames
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(n, *m.input_edge.in_shape)).astype(np.float32)
    q = bitexact.quantize_input(m.input_edge, x)

    steady, steady_s = best(lambda: cycles.run(m, n), args.repeat)
    full, full_s = best(lambda: cycles.run(m, n, steady_state=False), args.repeat)
    with tempfile.TemporaryDirectory(dir=work, prefix=".verilator-") as tmp:
        cache = Path(tmp)
        t = time.perf_counter()
        simulate.build(m, cache=cache)
        build_s = time.perf_counter() - t
        rtl = simulate.run(m, q, cache=cache)
        with_build_s = time.perf_counter() - t
        simulate.run(m, q, cache=cache)  # warm-up: binary built, files in the page cache
        rtl, sim_s = best(lambda: simulate.run(m, q, cache=cache), args.repeat)
        _, lookup_s = best(lambda: simulate.build(m, cache=cache), args.repeat)
        st_c, st_c_s = best(lambda: cycles.run(m, n, **STALLS), args.repeat)
        st_r, st_r_s = best(lambda: simulate.run(m, q, cache=cache, **STALLS), args.repeat)

    rows = [
        cyc_row("cycle model, steady-state fill", steady, rtl, steady_s, n),
        cyc_row("cycle model, every frame", full, rtl, full_s, n),
        rtl_row("Verilator, sim only", rtl, sim_s, n),
        rtl_row(f"Verilator, with build ({build_s:.1f} s)", rtl, with_build_s, n),
        cyc_row("30% stalls: cycle model", st_c, st_r, st_c_s, n),
        rtl_row("30% stalls: Verilator, sim only", st_r, st_r_s, n),
    ]
    for r in rows:
        if r["run"].startswith("Verilator"):
            r["speedup"] = [r["seconds"] / steady_s, r["seconds"] / full_s]
        elif r["run"] == "30% stalls: Verilator, sim only":
            r["speedup"] = [r["seconds"] / st_c_s]
    return {
        "design": name,
        "model": model,
        "target_fps": target_fps,
        "build_dir": str(out),
        "compile_seconds": compile_s,
        "train_seconds": train_s,
        "compiled_now": fresh,
        "folding": [(layer.pe, layer.simd) for layer in m.layers],
        "fifo_bits": sum(f.depth * f.width for f in m.fifos),
        "fifo_json_bits": fifo["bits"],
        "fifo_json_bits_before": fifo["bits_before"],
        "frames": n,
        "verilator_build_seconds": build_s,
        "verilator_generate_lookup_seconds": lookup_s,
        "ii_equal": steady.ii_cycles == rtl.ii_cycles and st_c.ii_cycles == st_r.ii_cycles,
        "latency_equal": steady.latency_cycles == rtl.latency_cycles
        and st_c.latency_cycles == st_r.latency_cycles,
        "exact": all(r["exact"] for r in rows if r["exact"] is not None),
        "rows": rows,
    }


def print_tables(results: list[dict], args) -> None:
    n = args.frames
    print(
        f"\n{n:,} frames per run; cycle model and Verilator sim-only: best of {args.repeat}; "
        f"load average at start {args.load[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(
        "| design | PE,SIMD per layer | compile | FIFO bits (IR) | fifo.json bits "
        "| fifo.json bits_before | II equal | latency equal | handshakes exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d in results:
        how = f"{d['compile_seconds']:.1f} s"
        if d["train_seconds"] is not None:
            how += f" (training {d['train_seconds']:.1f} s)"
        if not d["compiled_now"]:
            how += " (reused build)"
        print(
            f"| {d['design']} | {d['folding']} | {how} | {d['fifo_bits']:,} "
            f"| {d['fifo_json_bits']:,} | {d['fifo_json_bits_before']:,} "
            f"| {yn(d['ii_equal'])} | {yn(d['latency_equal'])} | {yn(d['exact'])} |"
        )
    print(
        "\n| design | run | II cycles | latency cycles | exact | simulated frames | seconds "
        "| frames/s | cycle model x faster (steady / every frame) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d in results:
        for r in d["rows"]:
            sim = f"{r['simulated_frames']:,}"
            if r["steady_state"]:
                sim += f" (period {r['steady_state'][0]} fr / {r['steady_state'][1]:,} cyc)"
            speed = " / ".join(f"{rate(s)}x" for s in r.get("speedup", [])) or "-"
            ex = "-" if r["exact"] is None else yn(r["exact"])
            print(
                f"| {d['design']} | {r['run']} | {r['ii_cycles']:,.6g} | {r['latency_cycles']:,} "
                f"| {ex} | {sim} | {r['seconds']:.4g} | {r['fps']:,.0f} | {speed} |"
            )
    print(
        "\nexact: every input and output handshake cycle equals Verilator's (same ports). "
        "Verilator sim only includes RTL generation + hashing to find the cached binary "
        "(per design: "
        + ", ".join(f"{d['verilator_generate_lookup_seconds']:.2f} s" for d in results)
        + "). The stall rows' speed-up is cycle model vs Verilator, both with the stalls."
    )


def rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def yn(b: bool) -> str:
    return "yes" if b else "no"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, help="build directories (default: a temp dir)")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs of lfc_w1a1")
    ap.add_argument("--json", type=Path, metavar="FILE", help="save the numbers as JSON")
    args = ap.parse_args()
    args.load = os.getloadavg()
    work = args.work or Path(tempfile.mkdtemp(prefix="cycle_speed."))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name, model, fps in DESIGNS:
        print(f"[cycle_speed] {name} ...", flush=True)
        results.append(bench_design(name, model, fps, work, args))
    print_tables(results, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "frames": args.frames,
                    "repeat": args.repeat,
                    "epochs": args.epochs,
                    "load_average": args.load,
                    "cpus": os.cpu_count(),
                    "work": str(work),
                    "designs": results,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
