"""``taper verify``: the IR simulator against every reference that can run here.

Only orchestration and comparison live here; the references are in ``compiler.references``.
All references get the same inputs; comparison is at integer level. Bit-exact means equal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from compiler import build as B
from compiler import ir
from compiler.errors import TaperError
from compiler.ir.model import Model
from compiler.references import REFERENCES, RefOutput  # noqa: F401  (REFERENCES: re-export)
from compiler.references import get as get_reference
from compiler.references.base import Inputs, output_to_int
from compiler.sim import bitexact

# hls4ml is asked for explicitly: most models break its exactness rules
DEFAULT_REFERENCES = ("qonnx", "finn", "brevitas", "rtl")
_output_to_int = output_to_int  # the name tests and benches know


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
    cycle_model: str | None = None
    cycle_model_exact: bool = True

    def to_json(self) -> dict:
        d = {"mismatches": self.mismatches, **self.measured}
        if self.cycle_model is not None:
            d["cycle_model"] = self.cycle_model
            d["cycle_model_exact"] = self.cycle_model_exact
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
        return bool(ran) and all(r.mismatches == 0 and r.cycle_model_exact for r in ran)

    def to_json(self) -> dict:
        return {
            "samples": self.samples,
            "inputs": self.inputs,
            "references": {k: v.to_json() for k, v in self.references.items()},
        }


# ---------------------------------------------------------------------------- inputs


def make_inputs(
    m: Model, n: int, data: str | None, recipe=None, seed: int = 0, data_dir: str | None = None
) -> tuple[np.ndarray, str]:
    """``n`` float inputs of the model's input shape: a data set's images (from ``data_dir``
    when given: a user's MNIST or CIFAR-10), or random values spread over the input edge's
    quantized range."""
    from compiler.qat.data import load

    if data is None and recipe is not None:
        data = recipe.dataset.name
    shape = m.input_edge.in_shape
    if data is not None and data != "random":
        split = load(
            data,
            seed=recipe.seed if recipe else 0,
            holdout=recipe.dataset.holdout if recipe else 1000,
            # the directory holds the recipe's data set (the build trained on it), not another
            data_dir=None
            if data_dir is None or (recipe is not None and data != recipe.dataset.name)
            else Path(data_dir),
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


# ---------------------------------------------------------------------------- comparing


def _compare(
    layer: str, ir_vals: np.ndarray, ref_vals: np.ndarray, exact: bool = False
) -> tuple[np.ndarray, Mismatch | None]:
    """Per-sample mismatch flags and the first mismatch (sample, element, both values).

    Float references are rounded to the nearest integer unless ``exact`` (a fixed-point
    reference must land on the integer itself)."""
    ir_vals = ir_vals.reshape(len(ir_vals), -1)
    ref_vals = np.asarray(ref_vals).reshape(len(ref_vals), -1)
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


def compare(m: Model, env: dict, q: np.ndarray, out: RefOutput) -> RefResult:
    """A reference's values against the IR simulator's: mismatching samples are counted on
    the checked layers; the first mismatch is the earliest layer (in the model) that differs."""
    ours = {layer.name: env[layer.output] for layer in m.layers}
    ours["input edge"] = q
    order = ["input edge", *(layer.name for layer in m.layers)]
    checked = out.checked or [m.layers[-1].name]
    res = RefResult(
        note=out.note,
        measured=dict(out.measured),
        cycle_model=out.cycle_model,
        cycle_model_exact=out.cycle_model_exact,
    )
    bad = np.zeros(len(q), dtype=bool)
    firsts = {}
    for name in order:
        if name not in out.values:
            continue
        rows, first = _compare(name, ours[name], out.values[name], out.exact)
        if name in checked:
            bad |= rows
        if first is not None:
            firsts[name] = first
    res.mismatches = int(bad.sum())
    if res.mismatches:
        res.first = next(firsts[n] for n in order if n in firsts)
    return res


MAX_SAMPLES = 100_000


def check_options(
    samples: int, against: list[str], data: str | None, seed: int, data_dir: str | None = None
) -> None:
    """Bad verify options fail before any work."""
    if not 1 <= samples <= MAX_SAMPLES:
        raise TaperError(f"--samples: expected 1 to {MAX_SAMPLES:,}, got {samples}")
    if not against:
        raise TaperError("--against: expected at least one reference")
    for a in against:
        get_reference(a)
    if data not in (None, "mnist", "digits", "random"):
        raise TaperError(f"--data: expected mnist, digits or random, got {data!r}")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise TaperError(f"{data_dir}: --data-dir is not a directory")


def verify(
    d: Path,
    samples: int = 1000,
    against: list[str] | None = None,
    data: str | None = None,
    seed: int = 0,
    quiet: bool = False,
    data_dir: str | None = None,
) -> Verification:
    """The IR simulator against each reference in ``against`` on the same inputs."""
    from compiler.frontend.compile import load_record

    d = Path(d)
    if not (d / B.IR_JSON).is_file():
        raise TaperError(f"{d}: not a compiled build directory (no {B.IR_JSON})")
    against = list(against or DEFAULT_REFERENCES)
    check_options(samples, against, data, seed, data_dir)
    m = ir.load(d)
    rec = load_record(d)
    recipe = None
    if rec.recipe:
        from compiler.qat.recipe import load_recipe

        recipe = load_recipe(rec.recipe)
    x, what = make_inputs(m, samples, data, recipe, seed, data_dir)
    q = bitexact.quantize_input(m.input_edge, x).reshape(len(x), -1)
    env = bitexact.run_hardware(m, q, keep=True)
    v = Verification(samples=len(x), inputs=what)
    inputs = Inputs(x=x, q=q, seed=seed)
    for name in against:
        ref = get_reference(name)
        why = ref.unavailable(d, m)
        if why:
            v.references[name] = RefResult(skipped=why)
            continue
        v.references[name] = compare(m, env, q, ref.run(d, m, inputs))
    return v
