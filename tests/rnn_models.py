"""Random Recurrent layers (LSTM and GRU) that pass ``check()``, optionally followed by a
MatVec head, for the RTL and cycle model tests."""

from __future__ import annotations

import numpy as np

from compiler.frontend.lower import accumulator_type
from compiler.ir import FIFO, InputEdge, IntType, MatVec, Model, OutputEdge
from compiler.ir.model import Recurrent


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _thresholds(rng, rows: int, n: int, r: int) -> np.ndarray:
    """Sorted int64 thresholds around 0 (spread r), sometimes far outside any sum."""
    rows = rows if rng.random() < 0.7 else 1
    t = rng.integers(-r, r + 1, size=(rows, n)).astype(np.int64)
    if n and rng.random() < 0.3:
        far = rng.integers(0, 2, size=t.shape).astype(bool) & (rng.random(t.shape) < 0.2)
        t = np.where(far, np.where(t >= 0, 1 << 40, -(1 << 40)), t)
    return np.sort(t, axis=1)


def _sub_range(rng, t: IntType) -> tuple[int, int]:
    if rng.random() < 0.5:
        return t.min, t.max
    lo = int(rng.integers(t.min, min(t.max, 0) + 1))
    hi = int(rng.integers(max(lo, 0), t.max + 1))
    return lo, hi


def random_rnn(
    rng: np.random.Generator,
    cell: str | None = None,
    *,
    steps: int | None = None,
    hidden: int | None = None,
    in_features: int | None = None,
    ternary: bool | None = None,
    name: str = "rnn",
    input: str = "input",
) -> Recurrent:
    cell = cell or ("lstm" if rng.random() < 0.5 else "gru")
    T = steps or int(rng.integers(1, 7))
    H = hidden or int(rng.integers(1, 9))
    F = in_features or int(rng.integers(1, 9))
    ng = 4 if cell == "lstm" else 3
    ternary = bool(rng.random() < 0.6) if ternary is None else ternary
    it = IntType(int(rng.integers(1, 5)), bool(rng.random() < 0.6))
    if ternary:
        wt = IntType(2, True)
        w = rng.integers(-1, 2, size=(ng * H, F + H))
    else:
        wt = IntType(int(rng.integers(2, 5)), bool(rng.random() < 0.8))
        w = rng.integers(wt.min, wt.max + 1, size=(ng * H, F + H))
    ot = IntType(int(rng.integers(2, 5)), bool(rng.random() < 0.8))
    h_min, h_max = _sub_range(rng, ot)
    x_shift, h_shift = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    # the sums' scale, for thresholds that cut through them
    vmag = max(abs(it.min), abs(it.max)) << x_shift
    hmag = max(abs(h_min), abs(h_max)) << h_shift
    r = max(2, int(np.sqrt(F + H) * max(vmag, hmag) * max(abs(wt.min), wt.max) // 2))
    gt = IntType(int(rng.integers(1, 4)), False)
    ng_thr = int(rng.integers(0, gt.max + 1))
    ct = IntType(int(rng.integers(2, 4)), True)
    nc = int(rng.integers(0, ct.max - ct.min + 1))
    cand_bias = int(rng.integers(ct.min, ct.max - nc + 1))
    v = np.concatenate([np.full(F, vmag), np.full(H, hmag)])
    bound = int((np.abs(w) @ v).max())
    acc = IntType.for_range(-bound, bound)
    kw = {}
    if cell == "lstm":
        cet = IntType(int(rng.integers(3, 7)), True)
        cmin, cmax = _sub_range(rng, cet)
        cat = IntType(int(rng.integers(2, 4)), bool(rng.random() < 0.7))
        n_ct = int(rng.integers(0, cat.max - cat.min + 1))
        cell_bias = int(rng.integers(cat.min, cat.max - n_ct + 1))
        kw = dict(
            cell_type=cet,
            cell_exp=int(rng.integers(-4, 1)),
            cell_min=cmin,
            cell_max=cmax,
            cell_act_type=cat,
            cell_act_exp=int(rng.integers(-3, 1)),
            cell_thresholds=_thresholds(rng, H, n_ct, max(2, max(abs(cmin), cmax) // 2)),
            cell_bias=cell_bias,
        )
    layer = Recurrent(
        name=name,
        input=input,
        output=f"{name}_out",
        input_type=it,
        out_type=ot,
        cell=cell,  # type: ignore[arg-type]
        steps=T,
        in_features=F,
        hidden=H,
        weight_type=wt,
        acc_type=acc,
        weights=w.astype(np.int64),
        gate_type=gt,
        gate_exp=int(rng.integers(-3, 1)),
        gate_thresholds=_thresholds(rng, (ng - 1) * H, ng_thr, r),
        cand_type=ct,
        cand_exp=int(rng.integers(-3, 1)),
        cand_thresholds=_thresholds(rng, H, nc, r),
        cand_bias=cand_bias,
        h_exp=int(rng.integers(-3, 1)),
        h_min=h_min,
        h_max=h_max,
        x_shift=x_shift,
        h_shift=h_shift,
        return_sequences=bool(rng.random() < 0.5),
        pe=int(rng.choice(_divisors(H))),
        simd=int(rng.choice(_divisors(F + H))),
        **kw,
    )
    layer.check()
    return layer


def rnn_model(rng: np.random.Generator, layer: Recurrent, head: bool, fifo: int = 2) -> Model:
    layers: list = [layer]
    if head:
        m = int(rng.integers(1, 5))
        w = rng.integers(-1, 2, size=(m, layer.hidden))
        at = accumulator_type(w, layer.out_type, False)
        layers.append(
            MatVec(
                name="head",
                input=layer.output,
                output="head_out",
                input_type=layer.out_type,
                out_type=at,
                weight_type=IntType(2, True),
                acc_type=at,
                weights=w,
                pe=int(rng.choice(_divisors(m))),
                simd=int(rng.choice(_divisors(layer.hidden))),
                n_vectors=layer.out_frame // layer.hidden,
            )
        )
    n = layer.in_frame
    m = Model(
        name="r",
        input_edge=InputEdge(kind="identity", in_shape=(n,), shape=(n,), out_type=layer.input_type),
        layers=layers,
        output_edge=OutputEdge(out_shape=()),
        fifos=[FIFO(x.input, fifo, x.in_width) for x in layers],
    )
    m.check()
    return m


def rnn_inputs(layer: Recurrent, frames: int, rng: np.random.Generator) -> np.ndarray:
    t = layer.input_type
    return rng.integers(t.min, t.max + 1, size=(frames, layer.in_frame))


def hitnet_like(
    rng: np.random.Generator,
    cell: str,
    steps: int,
    in_features: int,
    hidden: int,
    pe: int = 1,
    simd: int = 1,
    weight_bits: int = 2,
    return_sequences: bool = False,
) -> Recurrent:
    """A Recurrent layer shaped as a trained HitNet cell would be (every output value in
    use): INT4 inputs and hidden state, ternary (or ``weight_bits``) weights, UINT3 gates,
    INT3 candidate and tanh(c), INT8 cell, thresholds spread over the sums' spread."""
    T, F, H = steps, in_features, hidden
    ng = 4 if cell == "lstm" else 3
    it, ot = IntType(4, True), IntType(4, True)
    if weight_bits == 2:
        wt, w = IntType(2, True), rng.integers(-1, 2, size=(ng * H, F + H))
    else:
        wt = IntType(weight_bits, True)
        w = rng.integers(wt.min, wt.max + 1, size=(ng * H, F + H))
    sigma = np.sqrt((F + H) * np.mean(w.astype(float) ** 2)) * 4

    def spread(rows: int, n: int, s: float) -> np.ndarray:
        return np.sort(np.round(rng.normal(0, s, size=(rows, n))).astype(np.int64), axis=1)

    bound = int((np.abs(w) @ np.full(F + H, 8)).max())
    kw = {}
    if cell == "lstm":
        kw = dict(
            cell_type=IntType(8, True),
            cell_exp=-4,
            cell_min=-128,
            cell_max=127,
            cell_act_type=IntType(3, True),
            cell_act_exp=-2,
            cell_thresholds=spread(H, 7, 20.0),
            cell_bias=-4,
        )
    layer = Recurrent(
        name="rnn",
        input="input",
        output="rnn_out",
        input_type=it,
        out_type=ot,
        cell=cell,  # type: ignore[arg-type]
        steps=T,
        in_features=F,
        hidden=H,
        weight_type=wt,
        acc_type=IntType.for_range(-bound, bound),
        weights=w.astype(np.int64),
        gate_type=IntType(3, False),
        gate_exp=-3,
        gate_thresholds=spread((ng - 1) * H, 7, sigma),
        cand_type=IntType(3, True),
        cand_exp=-2,
        cand_thresholds=spread(H, 7, sigma),
        cand_bias=-4,
        h_exp=-3,
        h_min=-8,
        h_max=7,
        return_sequences=return_sequences,
        pe=pe,
        simd=simd,
        **kw,
    )
    layer.check()
    return layer
