"""Pruned against unpruned (taper prune), TFC on MNIST-5k, several seeds.

    .venv/bin/python bench/prune_table.py [--recipe tfc_w2a2] [--seeds 0 1 2] [--trials 20]
                                          [--max-drop 0.01]

For each seed: `taper prune` (the unpruned model is trained on the training split minus 500
validation images; the pruned one is fine-tuned on the whole split). Both are exported and
compiled at the recipe's target FPS; prints holdout accuracy, weight memory, IR cycles per
frame (II) and FINN's LUT estimate, per seed and as mean +- std.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def compiled(onnx: Path, fps: float) -> tuple[int, float]:
    from compiler.frontend.compile import CompileOptions, compile_model

    d = Path(tempfile.mkdtemp())
    m = compile_model(onnx, d, CompileOptions(target_fps=fps), quiet=True)
    return m.ii_cycles, float(sum(e.get("LUT", 0) for e in m.estimates.values()))


def main() -> None:
    from compiler.qat.export import export_qonnx
    from compiler.qat.prune import _context, prune
    from compiler.qat.recipe import load_recipe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recipe", default="tfc_w2a2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--max-drop", type=float, default=0.01)
    args = ap.parse_args()
    r = load_recipe(args.recipe)
    rows = []
    for seed in args.seeds:
        out = Path(tempfile.mkdtemp()) / "p"
        m = prune(r, args.recipe, out, args.max_drop, args.trials, seed=seed, quiet=True)
        _, data, base = _context(args.recipe, str(out / "base"), seed)
        export_qonnx(base, data.input_shape, out / "base" / "model.onnx")
        b_ii, b_lut = compiled(out / "base" / "model.onnx", r.target.fps)
        p_ii, p_lut = compiled(out / "model.onnx", r.target.fps)
        rows.append((seed, m, b_ii, b_lut, p_ii, p_lut))
    print(
        f"{args.recipe}, max validation accuracy drop {args.max_drop:g}, {args.trials} trials, "
        f"compiled at {r.target.fps:,.0f} FPS target\n"
    )
    print(
        "| seed | model | hidden | holdout acc. | weight memory (bits) | II (cycles) | FINN LUT |"
    )
    print("|---|---|---|---|---|---|---|")
    for seed, m, b_ii, b_lut, p_ii, p_lut in rows:
        print(f"| {seed} | unpruned | {m['base_hidden']} | {m['base_accuracy']:.2%} | "
              f"{m['base_weight_memory_bits']:,} | {b_ii:,} | {b_lut:,.0f} |")  # fmt: skip
        print(f"| {seed} | pruned | {m['hidden']} | {m['accuracy']:.2%} | "
              f"{m['weight_memory_bits']:,} | {p_ii:,} | {p_lut:,.0f} |")  # fmt: skip

    def ms(v):
        v = np.asarray(v, dtype=float)
        return f"{v.mean():,.4g} ± {v.std(ddof=1) if len(v) > 1 else 0:,.3g}"

    print("\n| model | holdout acc. (%) | weight memory (bits) | II (cycles) | FINN LUT |")
    print("|---|---|---|---|---|")
    print(f"| unpruned | {ms([100 * x[1]['base_accuracy'] for x in rows])} | "
          f"{ms([x[1]['base_weight_memory_bits'] for x in rows])} | {ms([x[2] for x in rows])} "
          f"| {ms([x[3] for x in rows])} |")  # fmt: skip
    print(f"| pruned | {ms([100 * x[1]['accuracy'] for x in rows])} | "
          f"{ms([x[1]['weight_memory_bits'] for x in rows])} | {ms([x[4] for x in rows])} "
          f"| {ms([x[5] for x in rows])} |")  # fmt: skip


if __name__ == "__main__":
    main()
