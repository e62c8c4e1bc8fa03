"""Calibrate the RTL cost model (compiler/backends/rtl/cost.py) against Yosys.

Synthesizes chains of random layers (``cost.random_chain``: every operand mode of the MVU,
divisor-poor sizes, memories in LUTs and block RAM, a standalone Thresholding now and then)
with the synth step's own Yosys run (``synth_xilinx -family xc7 -nodsp``), reads LUT/FF/BRAM36
per layer (with the FIFO and width converter in front of it, as the cost model counts them),
fits the model's LUT and FF coefficients by non-negative least squares on relative errors,
and writes them to compiler/backends/rtl/cost_coeffs.json. Re-run it when hw/rtl changes:

    .venv/bin/python bench/calibrate_cost.py [--chains 12] [--layers 3] [--lanes 64] [--seed 0]

Samples are cached in build/cost_samples.json (keyed by the RTL's hash), so a re-fit after
a change of the model's form needs no new Yosys runs; --fresh forgets them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.backends.rtl import cost as C  # noqa: E402
from compiler.backends.rtl import generate as G  # noqa: E402

CACHE = ROOT / "build" / "cost_samples.json"


def rtl_hash() -> str:
    h = hashlib.sha256()
    for f in G.LIBRARY_FILES:
        h.update((G.LIBRARY / f).read_bytes())
    h.update(Path(G.__file__).read_bytes())
    return h.hexdigest()[:16]


def sample_rows(m, synth: dict) -> list[dict]:
    rows, prev = [], None
    for layer in m.layers:
        p = C.params(layer)
        for k, style in synth[layer.name]["styles"].items():  # as synthesized
            p[k] = f'"{style}"'
        lut_f, ff_f, mems = C.features(layer, prev, p)
        prev = layer.out_elems
        rows.append(
            {
                "layer": describe(layer),
                "lut_f": lut_f,
                "ff_f": ff_f,
                "bram36_model": float(sum(x.bram36 for x in mems)),
                **{k: synth[layer.name][k] for k in ("lut", "ff", "bram36", "cells")},
            }
        )
    return rows


def describe(layer) -> str:
    if layer.kind == "matvec":
        return (
            f"matvec {layer.in_features}x{layer.out_features} in {layer.input_type} "
            f"w {layer.weight_type}{' xnor' if layer.xnor else ''} acc {layer.acc_type} "
            f"N {0 if layer.thresholds is None else layer.thresholds.shape[1]} "
            f"PE {layer.pe} SIMD {layer.simd}"
        )
    return (
        f"thresholding {layer.channels} in {layer.input_type} N {layer.thresholds.shape[1]} "
        f"PE {layer.pe}"
    )


def nnls(a: np.ndarray, b: np.ndarray, iters: int = 20000) -> np.ndarray:
    """Non-negative least squares (scipy's when present, else projected gradient)."""
    try:
        from scipy.optimize import nnls as sp_nnls

        return sp_nnls(a, b, maxiter=50 * a.shape[1])[0]
    except ImportError:
        x = np.zeros(a.shape[1])
        step = 1.0 / np.linalg.norm(a, 2) ** 2
        for _ in range(iters):
            x = np.maximum(0.0, x - step * (a.T @ (a @ x - b)))
        return x


def fit(
    rows: list[dict], key: str, terms: tuple[str, ...], fixed: dict[str, float] | None = None
) -> dict[str, float]:
    """Coefficients minimising the relative error (rows weighted by 1/actual); the terms in
    ``fixed`` keep their values (their part is taken off first)."""
    fixed = fixed or {}
    free = [t for t in terms if t not in fixed]
    a = np.array([[r[f"{key}_f"][t] for t in free] for r in rows], dtype=float)
    y = np.array([r[key] for r in rows], dtype=float)
    y_free = y - np.array([sum(v * r[f"{key}_f"][t] for t, v in fixed.items()) for r in rows])
    w = 1.0 / np.maximum(y, 20.0)
    x = nnls(a * w[:, None], y_free * w)
    got = {t: round(float(v), 4) for t, v in zip(free, x, strict=True)}
    return {t: fixed.get(t, got.get(t, 0.0)) for t in terms}


def errors(rows: list[dict], coeffs: dict, key: str) -> np.ndarray:
    est = np.array([sum(coeffs[key][t] * v for t, v in r[f"{key}_f"].items()) for r in rows])
    y = np.array([r[key] for r in rows], dtype=float)
    return (est - y) / np.maximum(y, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lanes", type=int, default=96, help="PE*SIMD of a layer at most")
    ap.add_argument("--fresh", action="store_true", help="forget cached samples")
    args = ap.parse_args()
    key = rtl_hash()
    cache = {} if args.fresh or not CACHE.is_file() else json.loads(CACHE.read_text())
    samples = cache.get(key, {})
    rows = []
    for i in range(args.chains):
        tag = f"{args.seed}:{i}:{args.layers}:{args.lanes}"
        rng = np.random.default_rng([args.seed, i])
        m = C.random_chain(rng, args.layers, name=f"cal{i}", lanes=args.lanes)
        if tag not in samples or samples[tag]["layers"] != [describe(x) for x in m.layers]:
            t = time.time()
            samples[tag] = {"layers": [describe(x) for x in m.layers], "synth": C.measure(m)}
            print(f"chain {tag}: {time.time() - t:.0f} s", file=sys.stderr)
            CACHE.parent.mkdir(exist_ok=True)
            CACHE.write_text(json.dumps({key: samples}, indent=0))
        rows += sample_rows(m, samples[tag]["synth"])  # features from the model as it is now
    coeffs = {
        "lut": fit(rows, "lut", C.LUT_TERMS, C.FIXED_LUT),
        "ff": fit(rows, "ff", C.FF_TERMS),
    }
    e_lut, e_ff = errors(rows, coeffs, "lut"), errors(rows, coeffs, "ff")
    e_bram = np.array([r["bram36_model"] - r["bram36"] for r in rows])
    stats = {
        "layers": len(rows),
        "rtl_hash": key,
        "lut_mean_abs_rel_error": round(float(np.mean(np.abs(e_lut))), 4),
        "lut_max_abs_rel_error": round(float(np.max(np.abs(e_lut))), 4),
        "ff_mean_abs_rel_error": round(float(np.mean(np.abs(e_ff))), 4),
        "bram36_max_abs_error": float(np.max(np.abs(e_bram))),
    }
    fixed = {k: "structural, not fitted (see compiler/backends/rtl/cost.py)" for k in C.FIXED_LUT}
    out = {**coeffs, "calibrated": True, "fixed": fixed, "fit": stats}
    C.COEFFS_FILE.write_text(json.dumps(out, indent=1) + "\n")
    for r, el in zip(rows, e_lut, strict=True):
        print(
            f"{r['layer']:<75} LUT {r['lut']:>6.0f} {el:+6.0%}  FF {r['ff']:>6.0f}  "
            f"BRAM {r['bram36']:g}/{r['bram36_model']:g}"
        )
    print(json.dumps(stats, indent=1))
    print(f"wrote {C.COEFFS_FILE}")


if __name__ == "__main__":
    main()
