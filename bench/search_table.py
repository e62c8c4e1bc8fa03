"""Searched against uniform and progressive bitwidths at equal budgets (taper search).

    .venv/bin/python bench/search_table.py [--recipe tfc_w2a2] [--budget weight_bits=200000]
                                           [--seeds 0 1 2] [--trials 12]

For each seed: `taper search` (sensitivity + exact allocation and Bayesian optimisation); the
chosen bits and the uniform and progressive bits at the same budget are each trained on the
whole training split and scored on the holdout. Prints bits, cost and accuracy per seed and
the mean +- std.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    from compiler.qat.recipe import load_recipe
    from compiler.qat.search import parse_budget, search

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recipe", default="tfc_w2a2")
    ap.add_argument("--budget", default="weight_bits=200000")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=12)
    args = ap.parse_args()
    kind, value = parse_budget(args.budget)
    r = load_recipe(args.recipe)
    rows = []
    for seed in args.seeds:
        out = Path(tempfile.mkdtemp()) / "s"
        rows.append(search(r, args.recipe, out, kind, value, args.trials, seed=seed, quiet=True))
    print(f"{args.recipe}, budget {kind} <= {value:,.0f}, {args.trials} trials\n")
    print("| seed | method | bits | cost | holdout acc. |")
    print("|---|---|---|---|---|")
    acc = {"searched": [], "uniform": [], "progressive": []}
    for m in rows:
        print(f"| {m['seed']} | searched ({m['method']}) | {m['bits']} | {m['cost']:,.0f} | "
              f"{m['accuracy']:.2%} |")  # fmt: skip
        acc["searched"].append(m["accuracy"])
        for name, b in m["baselines"].items():
            print(
                f"| {m['seed']} | {name} | {b['bits']} | {b['cost']:,.0f} | {b['accuracy']:.2%} |"
            )
            acc[name].append(b["accuracy"])
    print("\n| method | holdout acc. (%) mean ± std |")
    print("|---|---|")
    for name, v in acc.items():
        v = 100 * np.asarray(v)
        print(f"| {name} | {v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:.2f} |")


if __name__ == "__main__":
    main()
