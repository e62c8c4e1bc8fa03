"""Fuzz: random Brevitas MLPs (tests/fuzz_models.py) exported with export_qonnx, compiled and
verified. Every case ends bit-exact against QONNX and FINN (and Verilator for the first few
exact ones), or refused with a one-line TaperError that names the user's node and is one of
taper's deliberate refusals; any other exception, or any other refusal, is a bug.

``TAPER_FUZZ_CASES`` (default 10) cases from seed ``TAPER_FUZZ_SEED`` (default 0), the first
``TAPER_FUZZ_RTL`` (default 1) small exact ones also against the RTL. A large local run with
counts: ``.venv/bin/python tests/test_fuzz_models.py --cases 200 [--seed S] [--rtl N]``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_models import random_model  # noqa: E402

from compiler.errors import TaperError  # noqa: E402

CASES = int(os.environ.get("TAPER_FUZZ_CASES", "10"))
FIRST_SEED = int(os.environ.get("TAPER_FUZZ_SEED", "0"))
RTL_CASES = int(os.environ.get("TAPER_FUZZ_RTL", "1"))
RTL_MAX_WEIGHTS = 600
SAMPLES = 200

# taper's deliberate refusals of models FINN cannot make exact integer hardware of
REFUSALS = {
    "1-bit unsigned activation": re.compile(
        r"node \S+ \(BipolarQuant\) after \S+ \(Relu\): a 1-bit unsigned activation"
    ),
    "per-channel activation scales before a layer": re.compile(
        r"node \S+ \(Quant\): per-channel activation scales before \S+ \(Gemm\)"
    ),
    "bipolar input before a non-binary layer": re.compile(
        r"node \S+ \(BipolarQuant\): a bipolar \(±1\) model input needs a first layer with "
        r"bipolar weights"
    ),
}


def run_case(seed: int, d: Path, rtl: bool) -> tuple[str, str]:
    """("exact", references) or ("refused", reason) for seed's model; raises on a bug."""
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.export import export_qonnx
    from compiler.verify import verify

    model, shape, desc = random_model(seed)
    onnx = export_qonnx(model, shape, d / "model.onnx")
    try:
        m = compile_model(onnx, d / "hw", CompileOptions(), quiet=True)
        v = verify(d / "hw", samples=SAMPLES, against=["qonnx", "finn"], seed=seed, quiet=True)
        mv = [layer for layer in m.layers if hasattr(layer, "weights")]
        # a Verilator build of a small design takes ~20 s; the RTL takes 8-bit weights at most
        if (
            rtl
            and sum(layer.weights.size for layer in mv) <= RTL_MAX_WEIGHTS
            and all(layer.weight_type.bits <= 8 for layer in mv)
        ):
            r = verify(d / "hw", samples=SAMPLES, against=["rtl"], seed=seed, quiet=True)
            v.references.update(r.references)
    except TaperError as e:
        msg = str(e)
        assert "\n" not in msg, (desc, msg)
        assert msg.startswith(f"{onnx}: "), (desc, msg)
        reason = next((k for k, r in REFUSALS.items() if r.search(msg)), None)
        assert reason is not None, f"{desc}: unexpected refusal: {msg}"
        return "refused", reason
    for name, res in v.references.items():
        assert res.skipped is None, (desc, name, res.skipped)
        if res.mismatches:
            return "mismatch", f"{desc}: {name}: {res.mismatches} samples, first {res.first}"
    return "exact", ",".join(v.references)


def input_rounding_differs(d: Path, seed: int) -> bool:
    """Whether some input of the case in ``d`` quantizes differently in float32 (the IR's
    host edge, as Brevitas) and in float64 (the qonnx reference widens the whole graph)."""
    import numpy as np

    from compiler import ir
    from compiler.sim import bitexact
    from compiler.verify import make_inputs

    m = ir.load(d / "hw")
    e = m.input_edge
    if e.kind != "quant" or e.pre:
        return False
    x, _ = make_inputs(m, SAMPLES, None, seed=seed)
    q = bitexact.quantize_input(e, x).reshape(len(x), -1)
    v = x.reshape(len(x), -1).astype(np.float64) / np.float64(np.float32(e.scale)) + e.zero_point
    q64 = np.clip(np.round(v), e.out_type.min + int(e.narrow and e.out_type.signed), e.out_type.max)
    return bool((q != q64).any())


_rtl_checked: list[int] = []


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + CASES))
def test_random_model_is_exact_or_refused(tmp_path, seed):
    outcome, what = run_case(seed, tmp_path, len(_rtl_checked) < RTL_CASES)
    assert outcome != "mismatch", what
    if "rtl" in what:
        _rtl_checked.append(seed)


@pytest.mark.slow
def test_generator_covers_the_distribution():
    """The generator keeps drawing every kind of layer the fuzz is meant to cover."""
    text = " ".join(random_model(s)[2] for s in range(40))
    for feature in [
        "bias=none",
        "bias=float",
        "bias=int",
        " bn",
        "w1 bipolar",
        "w2 ternary",
        " pc ",
        " pt ",
        " float",
        " pot",
        "narrow",
        "relu-uint1 ",
        "relu-uint",
        "| int",
        "| bipolar",
        "| ternary",
        "out ",
        "in bipolar",
        "in uint1 ",
        "in uint16 ",
        "in int",
        "->1 ",
        "->3 ",
        "->7 ",
        "->33 ",
    ]:
        assert feature in text, feature


# ---------------------------------------------------------------------------- regressions
# Bugs the fuzz found, each as one fixed model.


def _const(base, bits: int, scale: float):
    from brevitas.inject.enum import ScalingImplType

    return base.let(bit_width=bits, scaling_impl_type=ScalingImplType.CONST, scaling_init=scale)


def _exact(model, shape, d: Path):
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.export import export_qonnx
    from compiler.verify import verify

    m = compile_model(export_qonnx(model, shape, d / "m.onnx"), d / "hw", CompileOptions(), True)
    v = verify(d / "hw", samples=SAMPLES, against=["qonnx", "finn"], quiet=True)
    assert {k: r.mismatches for k, r in v.references.items()} == {"qonnx": 0, "finn": 0}, {
        k: str(r.first) for k, r in v.references.items()
    }
    return m


@pytest.mark.slow
@pytest.mark.parametrize("bits", [3, 8])
def test_full_range_weights_with_negative_batchnorm_scale(tmp_path, bits):
    """FINN leaves the ±1 Mul of a negative BatchNorm scale unabsorbed when negating the
    weights leaves their type (-4 of INT3 is +4): taper absorbs it into INT4 weights (INT9
    for INT8: the RTL back end, which takes 8 bits, says so when the compile costs the layer)."""
    import torch
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant.fixed_point import (
        Int8WeightPerTensorFixedPoint,
        Uint8ActPerTensorFixedPoint,
    )
    from torch import nn

    from compiler.qat.quantizers import input_quant, weight_quant

    torch.manual_seed(0)
    wq = Int8WeightPerTensorFixedPoint.let(bit_width=bits, narrow_range=False)
    lin = QuantLinear(8, 6, bias=False, weight_quant=wq, return_quant_tensor=True)
    bn = nn.BatchNorm1d(6)
    top = 2 ** (bits - 1)
    with torch.no_grad():
        lin.weight.copy_(torch.randint(-top, top, (6, 8)).float() / top)
        lin.weight[:, 0] = -1.0  # the most negative level in every row
        bn.weight.copy_(torch.tensor([-1.5, 1.0, -0.5, 2.0, -1.0, 1.0]))
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
    model = nn.Sequential(
        QuantIdentity(act_quant=input_quant(4), return_quant_tensor=True),
        lin,
        bn,
        QuantReLU(act_quant=_const(Uint8ActPerTensorFixedPoint, 4, 0.25), return_quant_tensor=True),
        QuantLinear(6, 3, bias=True, weight_quant=weight_quant(4)),
    ).eval()
    if bits + 1 > 8:  # a one-line refusal, not a crash (the folding's cost of the RTL asks)
        with pytest.raises(TaperError, match=r"9-bit weights, the RTL library takes at most 8$"):
            _exact(model, (8,), tmp_path)
        return
    m = _exact(model, (8,), tmp_path)
    assert (str(m.layers[0].weight_type), int(m.layers[0].weights.max())) == (f"INT{bits + 1}", top)


@pytest.mark.slow
def test_output_edge_with_large_offset_maps_back_exactly(tmp_path):
    """A BatchNorm before the float output: the output edge's Mul is tiny against its Add,
    and the reference's output mapped back through float32 constants was off by far more
    than 1/2 (IR -557, reference -588.8); the edge keeps the float64 constants."""
    import torch
    from brevitas.nn import QuantIdentity, QuantLinear
    from brevitas.quant.scaled_int import Int8ActPerTensorFloat
    from torch import nn

    from compiler.qat.quantizers import weight_quant

    torch.manual_seed(0)
    bn = nn.BatchNorm1d(5)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.fill_(100.0)
    model = nn.Sequential(
        QuantIdentity(
            act_quant=_const(Int8ActPerTensorFloat, 8, 0.00265), return_quant_tensor=True
        ),
        QuantLinear(4, 5, bias=False, weight_quant=weight_quant(7)),
        bn,
    ).eval()
    m = _exact(model, (4,), tmp_path)
    assert [s.op for s in m.output_edge.steps] == ["mul", "add"]
    assert all(s.value.dtype == np.float64 for s in m.output_edge.steps)


@pytest.mark.slow
def test_bipolar_quantizers_with_scales_other_than_one(tmp_path):
    """FINN takes bipolar activations of scale 1 only; Brevitas exports a 1-bit unsigned input
    quantizer as BipolarQuant of scale 1/2. taper splits the scale off into a Mul."""
    import torch
    from brevitas.nn import QuantIdentity, QuantLinear
    from brevitas.quant.binary import SignedBinaryActPerTensorConst
    from torch import nn

    from compiler.qat.quantizers import weight_quant

    torch.manual_seed(0)
    model = nn.Sequential(
        QuantIdentity(
            act_quant=SignedBinaryActPerTensorConst.let(scaling_const=0.5),
            return_quant_tensor=True,
        ),
        QuantLinear(8, 7, bias=False, weight_quant=weight_quant(1), return_quant_tensor=True),
        QuantIdentity(
            act_quant=SignedBinaryActPerTensorConst.let(scaling_const=2.0),
            return_quant_tensor=True,
        ),
        QuantLinear(7, 3, bias=True, weight_quant=weight_quant(4)),
    ).eval()
    m = _exact(model, (8,), tmp_path)
    assert [layer.xnor for layer in m.layers] == [True, False]


@pytest.mark.slow
def test_bias_below_1e_5_in_the_float_domain_is_kept(tmp_path):
    """With a small accumulator scale (a 14-bit input of step 8e-9, 8-bit weights of step
    2^-9) an integer bias of ±2047 is ±3e-8 in the float domain, and qonnx's
    RemoveIdentityOps (atol 1e-5, inside FINN's passes) dropped it from the thresholds."""
    import torch
    from brevitas.nn import QuantIdentity, QuantLinear
    from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint
    from brevitas.quant.scaled_int import Int8ActPerTensorFloat, IntBias
    from torch import nn

    torch.manual_seed(0)
    lin = QuantLinear(
        16,
        7,
        bias=True,
        weight_quant=Int8WeightPerChannelFixedPoint.let(narrow_range=False),
        bias_quant=IntBias.let(bit_width=12),
        return_quant_tensor=True,
    )
    model = nn.Sequential(
        QuantIdentity(
            act_quant=_const(Int8ActPerTensorFloat, 14, 6.45e-5), return_quant_tensor=True
        ),
        lin,
        QuantIdentity(act_quant=_const(Int8ActPerTensorFloat, 7, 0.00131)),
    ).eval()
    m = _exact(model, (16,), tmp_path)
    t = m.layers[0].thresholds
    assert not np.array_equal(t, -t[:, ::-1] + 1)  # the bias shifts them off symmetry


def test_qonnx_remove_identity_ops_still_drops_near_identities():
    """Upstream behaviour taper works around (finn_passes.exact_identity_ops); this test
    fails when qonnx stops removing an Add of 5e-6 or a Mul of 1 + 5e-6."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.remove import RemoveIdentityOps

    from compiler.frontend.finn_passes import exact_identity_ops

    def graph():
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
        nodes = [
            helper.make_node("Add", ["x", "a"], ["t"], name="add"),
            helper.make_node("Mul", ["t", "m"], ["u"], name="mul"),
            helper.make_node("Mul", ["u", "one"], ["v"], name="one"),
            helper.make_node("Relu", ["v"], ["y"], name="relu"),
        ]
        m = ModelWrapper(helper.make_model(helper.make_graph(nodes, "g", [x], [y])))
        m.set_initializer("a", np.full((1, 2), 5e-6, dtype=np.float32))
        m.set_initializer("m", np.full((1, 2), 1 + 5e-6, dtype=np.float32))
        m.set_initializer("one", np.ones((1, 2), dtype=np.float32))
        return m

    assert [n.name for n in graph().transform(RemoveIdentityOps()).graph.node] == ["relu"]
    with exact_identity_ops():
        kept = graph().transform(RemoveIdentityOps())
    assert [(n.name, n.op_type) for n in kept.graph.node] == [
        ("add", "Add"),
        ("mul", "Mul"),
        ("relu", "Relu"),
    ]


def main(argv: list[str]) -> None:
    """A large local run: counts of exact, refused (by reason) and mismatching cases, and
    every bug (exit code 1 if any)."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtl", type=int, default=5, help="exact cases also checked in Verilator")
    a = p.parse_args(argv)
    counts: Counter = Counter()
    bugs: list[str] = []
    rtl_done = 0
    t0 = time.time()
    for seed in range(a.seed, a.seed + a.cases):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                outcome, what = run_case(seed, Path(tmp), rtl_done < a.rtl)
                if outcome == "mismatch":
                    bugs.append(f"seed {seed}: {what}")
                    if ": qonnx:" in what and input_rounding_differs(Path(tmp), seed):
                        what = "qonnx reference quantizes the input in float64"
                    else:
                        outcome, what = "BUG", what
            except Exception as e:
                outcome, what = "BUG", f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
                bugs.append(f"seed {seed}: {what}")
        if outcome == "exact" and "rtl" in what:
            rtl_done += 1
        counts[(outcome, what if outcome != "exact" else "")] += 1
        print(f"seed {seed}: {outcome} {what}", flush=True)
    print(f"\n{a.cases} cases from seed {a.seed} in {time.time() - t0:.0f} s")
    for (outcome, what), n in sorted(counts.items()):
        print(f"  {n:4d} {outcome} {what}")
    print(f"  ({rtl_done} exact cases also against the RTL)")
    if bugs:
        print("bugs:\n  " + "\n  ".join(bugs))
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
