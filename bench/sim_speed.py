"""Speed of the bit-accurate IR simulator against qonnx, FINN and the machine's roofline.

    .venv/bin/python bench/sim_speed.py [--batch 10000] [--finn-samples 200]

For TFC_1W1A and TFC_2W2A (../shared/zoo), on the same MNIST inputs: samples/s of
- the IR simulator (input edge, hardware layers, output edge) at the batch size;
- qonnx execute_onnx on the QONNX model, batched (the model's batch dimension widened) and at
  batch 1;
- FINN's execution of its HW-layer graph (batch 1 only: FINN's layers reshape to one sample);
- the roofline: numpy float64 matmuls of the same layer shapes at the batch size.
Prints a table with the ratios. All timings in one process, one after another.

Then, for the models hls4ml reproduces exactly (the recipe tfc_w2a2_hls, trained if missing,
and qkeras_jettagging with --input-type fixed<16,6>), on the same host-quantized inputs:
samples/s of the IR simulator and of hls4ml's g++ C-simulation (checked equal first), and the
hls4ml compile time: project conversion + write, and the g++ build (cold, its cache empty).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"


def rate(fn, n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def bench_model(name: str, batch: int, finn_samples: int) -> dict:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from compiler.frontend import finn_passes as F
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.data import load
    from compiler.references.qonnx import with_batch
    from compiler.sim import bitexact

    d = Path(tempfile.mkdtemp()) / name
    m = compile_model(ZOO / f"{name}.onnx", d, CompileOptions(), quiet=True)
    split = load("mnist", seed=0, holdout=1000)
    x = np.concatenate([split.x_train, split.x_holdout])
    x = np.concatenate([x] * (batch // len(x) + 1))[:batch].reshape(batch, 1, 28, 28)

    out = {"model": name}
    out["ir"] = rate(lambda: bitexact.run(m, x), batch)

    ref = ModelWrapper(str(d / "reference.onnx"))
    big = with_batch(ref, batch)
    iname = big.graph.input[0].name
    y_ir = bitexact.run(m, x)
    y_q = execute_onnx(big, {iname: x})[big.graph.output[0].name]
    assert np.allclose(y_ir, y_q, rtol=1e-5, atol=1e-4), "IR and qonnx disagree"
    out["qonnx"] = rate(lambda: execute_onnx(big, {iname: x}), batch)
    few = x[:finn_samples]
    out["qonnx_b1"] = rate(
        lambda: [execute_onnx(ref, {iname: xi[None]}) for xi in few], len(few), repeat=1
    )

    with F.finn_environment(d / ".bench"):
        hw = ModelWrapper(str(d / "finn_hw.onnx"))
        feed = few
        if m.input_edge.kind == "quant":
            feed = bitexact.quantize_input(m.input_edge, few).reshape(few.shape).astype(np.float32)
        out["finn_b1"] = rate(lambda: F.execute(hw, feed), len(few), repeat=1)

    shapes = [(layer.in_features, layer.out_features) for layer in m.layers]
    rng = np.random.default_rng(0)
    acts = [rng.standard_normal((batch, k)) for k, _ in shapes]
    ws = [rng.standard_normal((k, n)) for k, n in shapes]
    out["roofline"] = rate(lambda: [a @ w for a, w in zip(acts, ws, strict=True)], batch)
    return out


def bench_hls4ml(name: str, source: Path, input_type: str | None, data: str, n: int) -> dict:
    from compiler.backends.hls4ml import csim
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.sim import bitexact
    from compiler.verify import _output_to_int, make_inputs

    tmp = Path(tempfile.mkdtemp())
    d = tmp / name
    m = compile_model(source, d, CompileOptions(input_type=input_type), quiet=True)
    t = time.perf_counter()
    from compiler import flow

    flow.run(d, None, flow.Options(backend="hls4ml"), only=["hls4ml"], quiet=True)
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    csim.library(d, cache=tmp / "cache")
    gxx_s = time.perf_counter() - t
    x, _ = make_inputs(m, n, data if data != "random" else None)
    x = np.concatenate([x] * (n // len(x) + 1))[:n]
    q = bitexact.quantize_input(m.input_edge, x).reshape(n, -1)
    xin = (q - m.input_edge.zero_point) * m.input_edge.scale
    got = _output_to_int(m, csim.run(d, xin, cache=tmp / "cache"))
    want = bitexact.run_hardware(m, q)[m.output_tensor]
    assert np.array_equal(got, want), "IR and hls4ml disagree"
    return {
        "model": name,
        "ir": rate(lambda: bitexact.run_hardware(m, q), n),
        "hls4ml": rate(lambda: csim.run(d, xin, cache=tmp / "cache"), n),
        "write_s": write_s,
        "gxx_s": gxx_s,
    }


def hls4ml_rows(n: int) -> list[dict]:
    from compiler.qat.recipe import load_recipe
    from compiler.qat.train import train

    recipe = load_recipe("tfc_w2a2_hls")
    out = ROOT / "build" / recipe.name
    train(recipe, out, quiet=True)
    return [
        bench_hls4ml("tfc_w2a2_hls", out / "model.onnx", None, "mnist", n),
        bench_hls4ml(
            "qkeras_jettagging", ZOO / "qkeras_jettagging.onnx", "fixed<16,6>", "random", n
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--finn-samples", type=int, default=200)
    ap.add_argument("--hls4ml-samples", type=int, default=2000)
    args = ap.parse_args()
    rows = [bench_model(n, args.batch, args.finn_samples) for n in ("TFC_1W1A", "TFC_2W2A")]
    print(
        f"samples/s (batch {args.batch:,}; qonnx_b1 and finn_b1 at batch 1 on "
        f"{args.finn_samples} samples)\n"
    )
    print(
        "| model | IR sim | qonnx | qonnx b1 | FINN b1 | f64 matmul roofline "
        "| IR/qonnx | IR/FINN | IR/roofline |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['ir']:,.0f} | {r['qonnx']:,.0f} | {r['qonnx_b1']:,.0f} "
            f"| {r['finn_b1']:,.0f} | {r['roofline']:,.0f} | {r['ir'] / r['qonnx']:.1f}x "
            f"| {r['ir'] / r['finn_b1']:,.0f}x | {r['ir'] / r['roofline']:.2f}x |"
        )

    print(f"\nhls4ml C-simulation, {args.hls4ml_samples:,} samples (same inputs, checked equal)\n")
    print("| model | IR sim samples/s | hls4ml csim samples/s | IR/hls4ml | project write | g++ |")
    print("|---|---|---|---|---|---|")
    for r in hls4ml_rows(args.hls4ml_samples):
        print(
            f"| {r['model']} | {r['ir']:,.0f} | {r['hls4ml']:,.0f} | {r['ir'] / r['hls4ml']:,.0f}x "
            f"| {r['write_s']:.1f} s | {r['gxx_s']:.1f} s |"
        )


if __name__ == "__main__":
    main()
