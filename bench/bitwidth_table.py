"""Accuracy against weight memory for uniform and progressive bitwidths (same seed, split, epochs).

    .venv/bin/python bench/bitwidth_table.py [--epochs N] [--out build/bench] [recipes...]

Trains each recipe (reusing checkpoints already in OUT) and prints a Markdown table of holdout
accuracy and total weight memory, with the saving of each progressive network against the
uniform network at its first-layer precision.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compiler.qat.recipe import load_recipe
from compiler.qat.train import train

DEFAULT = [
    "tfc_w2a2",
    "tfc_w4a4",
    "tfc_w8a8",
    "tfc_mixed_progressive",
    "lfc_w2a2",
    "lfc_w4a4",
    "lfc_w8a8",
    "lfc_mixed_progressive",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("recipes", nargs="*", default=DEFAULT)
    ap.add_argument("--epochs", type=int, default=None, help="same for every row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    args = ap.parse_args()
    rows = {}
    for name in args.recipes:
        r = load_recipe(name)
        m = train(r, args.out / name, epochs=args.epochs, seed=args.seed, quiet=True)
        rows[name] = (r, m)
        print(f"{name}: {m['accuracy']:.2%} {m['weight_memory_bits']:,} bits", flush=True)
    print()
    print(
        "| recipe | W bits | A bits | holdout acc. | weight memory (bits) | vs uniform at first-layer bits |"
    )
    print("|---|---|---|---|---|---|")
    for name, (r, m) in rows.items():
        family = name.split("_")[0]
        ref_name = f"{family}_w{r.weight_bits[0]}a{r.weight_bits[0]}"
        cmp = ""
        if "progressive" in name and ref_name in rows:
            ref = rows[ref_name][1]
            saving = 1 - m["weight_memory_bits"] / ref["weight_memory_bits"]
            dacc = (m["accuracy"] - ref["accuracy"]) * 100
            cmp = f"{saving:.1%} less memory than {ref_name}, {dacc:+.1f} pt"
        print(
            f"| {name} | {r.weight_bits} | {r.act_bits} | {m['accuracy']:.2%} | "
            f"{m['weight_memory_bits']:,} | {cmp} |"
        )
    first = next(iter(rows.values()))[1]
    print(
        f"\n{first['data']}; {first['train_samples']} train / {first['holdout_samples']} holdout; "
        f"epochs {first['epochs']}; seed {first['seed']}"
    )


if __name__ == "__main__":
    main()
