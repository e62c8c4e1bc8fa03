"""``taper verify``: the IR simulator against every reference that can run here.

All references get the same float inputs; comparison is at integer level. A reference's
output (before any trailing Softmax) is mapped back through the output edge's Mul/Add to the
hardware's integers; FINN's execution is compared layer by layer. Bit-exact means equal.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from compiler import ir
from compiler.errors import TaperError
from compiler.frontend.precision import as_float64
from compiler.ir.model import Model
from compiler.sim import bitexact

REFERENCES = ("qonnx", "finn", "brevitas", "rtl", "hls4ml")
# hls4ml is asked for explicitly: most models break its exactness rules
DEFAULT_REFERENCES = ("qonnx", "finn", "brevitas", "rtl")
RTL_STALL_PERCENT = 30  # random input stalls and output backpressure in the RTL check
RTL_TIMING_FRAMES = 16


@dataclass
class Mismatch:
    layer: str
    sample: int
    index: int
    ir: int
    reference: float

    def __str__(self) -> str:
        return (
            f"layer {self.layer}, sample {self.sample}, element {self.index}: "
            f"IR {self.ir}, reference {self.reference:g}"
        )


@dataclass
class RefResult:
    mismatches: int = 0
    first: Mismatch | None = None
    skipped: str | None = None
    note: str | None = None
    measured: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"mismatches": self.mismatches, **self.measured}
        if self.first is not None:
            d["first"] = asdict(self.first)
        if self.skipped:
            d["skipped"] = self.skipped
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class Verification:
    samples: int
    inputs: str
    references: dict[str, RefResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        ran = [r for r in self.references.values() if not r.skipped]
        return bool(ran) and all(r.mismatches == 0 for r in ran)

    def to_json(self) -> dict:
        return {
            "samples": self.samples,
            "inputs": self.inputs,
            "references": {k: v.to_json() for k, v in self.references.items()},
        }


# ---------------------------------------------------------------------------- inputs


def make_inputs(
    m: Model, n: int, data: str | None, recipe=None, seed: int = 0
) -> tuple[np.ndarray, str]:
    """``n`` float inputs of the model's input shape: a data set's images, or random values
    spread over the input edge's quantized range."""
    from compiler.qat.data import load

    if data is None and recipe is not None:
        data = recipe.dataset.name
    shape = m.input_edge.in_shape
    if data is not None and data != "random":
        split = load(
            data,
            seed=recipe.seed if recipe else 0,
            holdout=recipe.dataset.holdout if recipe else 1000,
        )
        x = np.concatenate([split.x_holdout, split.x_train])[:n]
        if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
            raise TaperError(
                f"--data {data}: images of shape {x.shape[1:]} do not fit the "
                f"model's input {list(shape)}"
            )
        return x.reshape(len(x), *shape).astype(np.float32), f"{split.source} ({len(x)} images)"
    rng = np.random.default_rng(seed)
    e = m.input_edge
    if e.kind == "identity":
        t = e.out_type
        vals = (
            rng.choice([-1, 1], size=(n, *shape))
            if t.bipolar
            else rng.integers(t.min, t.max + 1, size=(n, *shape))
        )
        return vals.astype(np.float32), f"random {t} values"
    if e.kind == "quant":
        lo = (e.out_type.min - e.zero_point - 0.5) * e.scale
        hi = (e.out_type.max - e.zero_point + 0.5) * e.scale
        return rng.uniform(lo, hi, size=(n, *shape)).astype(
            np.float32
        ), "random values over the input quantizer's range"
    t = e.thresholds
    span = max(float(t.max() - t.min()), 1.0)
    x = rng.uniform(t.min() - 0.25 * span, t.max() + 0.25 * span, size=(n, *shape))
    return x.astype(np.float32), "random values over the input thresholds' range"


# ---------------------------------------------------------------------------- helpers


def with_batch(model, n: int):
    """A copy of a qonnx model whose batch dimension is ``n`` (Reshape targets included), so
    that a whole batch runs in one execution and weight quantizers run once."""
    import copy

    from qonnx.core.modelwrapper import ModelWrapper

    m = ModelWrapper(copy.deepcopy(model.model))
    # Only tensors computed from the input carry the batch (a [1, K] weight does not).
    live = {m.graph.input[0].name}
    for node in m.graph.node:
        if any(i in live for i in node.input):
            live.update(node.output)
    for vi in [*m.graph.input, *m.graph.output, *m.graph.value_info]:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in live and len(dims) > 1 and dims[0].dim_value == 1:
            dims[0].dim_value = n
    for node in m.graph.node:
        if node.op_type == "Reshape":
            shape = m.get_initializer(node.input[1])
            if shape is not None and shape.size and shape[0] == 1:
                shape = shape.copy()
                shape[0] = n
                m.set_initializer(node.input[1], shape)
    return m


def default_opset(model) -> int:
    """The ONNX (default-domain) opset: Brevitas exports list the qonnx domain first, and
    onnxruntime asked for Gemm at the qonnx domain's version 2 fails."""
    for o in model.model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 11


def _execute(model, x: np.ndarray, names: list[str], chunk: int = 500) -> dict[str, np.ndarray]:
    """qonnx's node-by-node execution of ``model`` in float64 on ``x`` in batches; returns
    ``names`` per sample.

    The reference runs in float64 so that its own rounding (float32 sums of wide products,
    BatchNorm) cannot make a mismatch: the IR's thresholds are derived in float64 too. qonnx's
    custom ops (Quant...) hand back float32 whatever their input; their values are exact in
    float32 (quantized), so each result is widened again before the onnxruntime ops that
    follow see it.
    """
    from qonnx.core.onnx_exec import execute_node

    model = as_float64(model)
    opset = default_opset(model)
    x = x.astype(np.float64)
    got: dict[str, list] = {t: [] for t in names}
    batched: dict[int, object] = {}
    for start in range(0, len(x), chunk):
        xb = x[start : start + chunk]
        if len(xb) not in batched:  # one copy per batch size, not one per chunk
            batched[len(xb)] = with_batch(model, len(xb))
        mb = batched[len(xb)]
        g = mb.graph
        ctx = mb.make_empty_exec_context()
        ctx[g.input[0].name] = xb
        for node in g.node:
            execute_node(node, ctx, g, opset)
            if node.domain not in ("", "ai.onnx"):
                for o in node.output:
                    ctx[o] = np.asarray(ctx[o], dtype=np.float64)
        for t in names:
            got[t].append(np.asarray(ctx[t], dtype=np.float64).reshape(len(xb), -1))
    return {t: np.concatenate(v) for t, v in got.items()}


def _output_to_int(m: Model, r: np.ndarray) -> np.ndarray:
    """Invert the output edge's Mul/Add (in float64) to recover the hardware's integers."""
    v = r.astype(np.float64).reshape(len(r), -1)
    for step in reversed([s for s in m.output_edge.steps if s.op != "softmax"]):
        if step.op == "add":
            v = v - step.value.astype(np.float64)
        elif step.op == "mul":
            v = v / step.value.astype(np.float64)
    return v


def _compare(
    layer: str, ir_vals: np.ndarray, ref_vals: np.ndarray, exact: bool = False
) -> tuple[np.ndarray, Mismatch | None]:
    """Per-sample mismatch flags and the first mismatch (sample, element, both values).

    Float references are rounded to the nearest integer unless ``exact`` (a fixed-point
    reference must land on the integer itself)."""
    ir_vals = ir_vals.reshape(len(ir_vals), -1)
    ref_vals = ref_vals.reshape(len(ref_vals), -1)
    if ir_vals.shape != ref_vals.shape:
        raise TaperError(
            f"layer {layer}: IR gives {ir_vals.shape[1:]}, reference {ref_vals.shape[1:]}"
        )
    bad = ir_vals != (ref_vals if exact else np.round(ref_vals))
    rows = bad.any(axis=1)
    if not rows.any():
        return rows, None
    s = int(np.flatnonzero(rows)[0])
    i = int(np.flatnonzero(bad[s])[0])
    return rows, Mismatch(layer, s, i, int(ir_vals[s, i]), float(ref_vals[s, i]))


# ---------------------------------------------------------------------------- references


def _activation_quants(model) -> list:
    inits = {t.name for t in model.graph.initializer}
    return [
        n
        for n in model.graph.node
        if n.op_type in ("Quant", "BipolarQuant") and n.input[0] not in inits
    ]


def ref_qonnx(m: Model, d: Path, x: np.ndarray, env: dict) -> RefResult:
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(str(d / "reference.onnx"))
    softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
    out_name = softmax[-1].input[0] if softmax else model.graph.output[0].name
    # Per-layer localization: thresholded layers map onto the last activation quantizers.
    acts = _activation_quants(model)
    thr_layers = [layer for layer in m.layers if getattr(layer, "thresholds", None) is not None]
    pairs = list(zip(reversed(thr_layers), reversed(acts), strict=False))
    names = list(dict.fromkeys([out_name, *(q.output[0] for _, q in pairs)]))
    ref = _execute(model, x, names)
    res = RefResult()
    rows, res.first = _compare(
        m.layers[-1].name, env[m.output_tensor], _output_to_int(m, ref[out_name])
    )
    res.mismatches = int(rows.sum())
    if res.mismatches:
        for layer, q in reversed(pairs):
            scale = model.get_initializer(q.input[1]) if q.op_type == "Quant" else 1.0
            r = ref[q.output[0]] / np.asarray(scale, dtype=np.float64).reshape(1, -1)
            y = env[layer.output]
            if layer.out_type.name == "BINARY":
                y = 2 * y - 1
            rows, first = _compare(layer.name, y, r)
            if rows.any():
                res.first = first
                break
    return res


def ref_finn(m: Model, d: Path, x: np.ndarray, q: np.ndarray, env: dict, info: dict) -> RefResult:
    from qonnx.core.modelwrapper import ModelWrapper

    from compiler.frontend import finn_passes as F

    with F.finn_environment(d / ".finn-exec"):
        model = ModelWrapper(str(d / "finn_hw.onnx"))
        feed = q.reshape(len(q), *m.input_edge.in_shape) if m.input_edge.kind == "quant" else x
        # FINN's HW ops compute in the dtype they are given: float64 keeps accumulators
        # wider than float32's 24-bit mantissa exact
        model = as_float64(model)
        feed = feed.astype(np.float64)
        tensors = info["finn_tensors"]
        wanted = [info["finn_input"], *tensors.values()]
        ref = F.execute(model, feed, wanted)
    # Every layer is compared: a sample counts once if any of its tensors differs.
    res = RefResult()
    bad = np.zeros(len(q), dtype=bool)
    checks = [("input edge", q, info["finn_input"])]
    checks += [(layer.name, env[layer.output], tensors[layer.name]) for layer in m.layers]
    for name, ours, theirs in checks:
        rows, first = _compare(name, ours, ref[theirs])
        bad |= rows
        if first is not None and res.first is None:
            res.first = first
    res.mismatches = int(bad.sum())
    return res


def ref_brevitas(m: Model, x: np.ndarray, env: dict, info: dict) -> RefResult:
    recipe_name, ckpt = info.get("recipe"), info.get("checkpoint")
    if not recipe_name or not ckpt or not Path(ckpt).is_file():
        return RefResult(skipped="no recipe and checkpoint for this model")
    import torch

    from compiler.qat.data import load
    from compiler.qat.recipe import load_recipe
    from compiler.qat.train import build_model, predict

    recipe = load_recipe(recipe_name)
    split = load(recipe.dataset.name, seed=recipe.seed, holdout=recipe.dataset.holdout)
    model = build_model(recipe, split, recipe.seed)
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    r = predict(model, x.astype(np.float32))
    res = RefResult()
    rows, res.first = _compare(m.layers[-1].name, env[m.output_tensor], _output_to_int(m, r))
    res.mismatches = int(rows.sum())
    return res


def ref_rtl(m: Model, q: np.ndarray, env: dict, seed: int) -> RefResult:
    """Verilator: all samples under random stalls, then a stall-free run for the timing."""
    from compiler.backends.rtl import simulate

    run = simulate.run(m, q, stall_percent=RTL_STALL_PERCENT, seed=seed)
    res = RefResult(
        note=f"Verilator, {RTL_STALL_PERCENT}% random input stalls and output backpressure"
    )
    rows, res.first = _compare(m.layers[-1].name, env[m.output_tensor], run.outputs)
    res.mismatches = int(rows.sum())
    timing = simulate.run(m, q[:RTL_TIMING_FRAMES], stall_percent=0)
    res.measured = {"latency_cycles": timing.latency_cycles, "ii_cycles": timing.ii_cycles}
    return res


def ref_hls4ml(m: Model, d: Path, q: np.ndarray, env: dict, quiet: bool) -> RefResult:
    """hls4ml's C-simulation (project written when missing), fed the host-quantized inputs."""
    from compiler.backends.hls4ml import convert, csim

    convert.write_project(d, quiet=quiet)  # checks hls4ml's exactness rules first
    e = m.input_edge
    if e.kind != "quant":
        raise TaperError(
            f"{m.source}: hls4ml needs the model input to go through a Quant "
            "(hls4ml rule: quantized inputs)"
        )
    # The project starts at the input quantizer: its exact values pass through unchanged.
    y = csim.run(d, (q.astype(np.float64) - e.zero_point) * e.scale)
    res = RefResult(note="g++ C-simulation of the HLS C++")
    rows, res.first = _compare(m.layers[-1].name, env[m.output_tensor], _output_to_int(m, y), True)
    res.mismatches = int(rows.sum())
    return res


def verify(
    d: Path,
    samples: int = 1000,
    against: list[str] | None = None,
    data: str | None = None,
    seed: int = 0,
    quiet: bool = False,
) -> Verification:
    d = Path(d)
    if not (d / ir.serialize.IR_JSON).is_file():
        raise TaperError(f"{d}: not a compiled build directory (no {ir.serialize.IR_JSON})")
    m = ir.load(d)
    info = json.loads((d / "compile.json").read_text())
    against = against or list(DEFAULT_REFERENCES)
    unknown = [a for a in against if a not in REFERENCES]
    if unknown:
        raise TaperError(
            f"--against: unknown reference '{unknown[0]}': expected {', '.join(REFERENCES)}"
        )
    recipe = None
    if info.get("recipe"):
        from compiler.qat.recipe import load_recipe

        recipe = load_recipe(info["recipe"])
    x, what = make_inputs(m, samples, data, recipe, seed)
    q = bitexact.quantize_input(m.input_edge, x).reshape(len(x), -1)
    env = bitexact.run_hardware(m, q, keep=True)
    v = Verification(samples=len(x), inputs=what)
    for a in against:
        if a == "qonnx":
            v.references[a] = ref_qonnx(m, d, x, env)
        elif a == "finn":
            v.references[a] = ref_finn(m, d, x, q, env, info)
        elif a == "brevitas":
            v.references[a] = ref_brevitas(m, x, env, info)
        elif a == "rtl":
            v.references[a] = ref_rtl(m, q, env, seed)
        elif a == "hls4ml":
            v.references[a] = ref_hls4ml(m, d, q, env, quiet)
    return v
