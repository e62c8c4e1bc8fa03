"""The CNN library units in Verilator against numpy: hw/rtl/taper_swg.sv (sliding windows,
im2col with padding) and hw/rtl/taper_maxpool.sv, every output word, with random stalls on
both sides; and every handshake, stalled or not, at the cycle the cycle model
(`compiler/sim/cycles.py`, the rules their headers document) gives.

One Verilated model holds every parameter set (a generated top selects one by `sel`), driven
by hw/tb/taper_stream_tb.cpp; the build is cached by content like the generator's."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import stream_units
from stream_units import build, patterns, select_top

from compiler.ir import IntType, MaxPool, SlidingWindow
from compiler.sim import cycles

ROOT = Path(__file__).resolve().parents[1]
RTL = ROOT / "hw" / "rtl"
FRAMES = 3


@dataclass(frozen=True)
class SWG:
    ifm: int
    c: int
    simd: int
    bits: int
    k: int
    s: int
    pad: int
    pad_value: int = 0
    lines_param: int = 0  # LINES; 0: the unit's default

    @property
    def cf(self) -> int:
        return self.c // self.simd

    @property
    def ofm(self) -> int:
        return (self.ifm + 2 * self.pad - self.k) // self.s + 1

    def hi(self, r: int) -> int:
        return min(max(r * self.s - self.pad + self.k, 0), self.ifm)

    def layer(self) -> SlidingWindow:
        t = IntType(self.bits, False)
        return SlidingWindow(
            name="swg",
            input="x",
            output="y",
            input_type=t,
            out_type=t,
            ifm_dim=self.ifm,
            channels=self.c,
            kernel=self.k,
            stride=self.s,
            pad=self.pad,
            pad_value=self.pad_value,
            simd=self.simd,
        )

    def verilog(self) -> str:
        return (
            f"taper_swg #(.IFM_DIM({self.ifm}), .C({self.c}), .SIMD({self.simd}), "
            f".ELEM_BITS({self.bits}), .K({self.k}), .S({self.s}), .PAD({self.pad}), "
            f".PAD_VALUE({self.pad_value}), .LINES({self.lines_param}))"
        )


@dataclass(frozen=True)
class Pool:
    ifm: int
    c: int
    pe: int
    bits: int
    k: int
    signed: int

    simd = property(lambda self: self.pe)
    cf = property(lambda self: self.c // self.pe)
    ofm = property(lambda self: self.ifm // self.k)

    def layer(self) -> MaxPool:
        t = IntType(self.bits, bool(self.signed))
        return MaxPool(
            name="pool",
            input="x",
            output="y",
            input_type=t,
            out_type=t,
            ifm_dim=self.ifm,
            channels=self.c,
            kernel=self.k,
            pe=self.pe,
        )

    def verilog(self) -> str:
        return (
            f"taper_maxpool #(.IFM_DIM({self.ifm}), .C({self.c}), .PE({self.pe}), "
            f".ELEM_BITS({self.bits}), .SIGNED({self.signed}), .K({self.k}))"
        )


SWGS = [
    SWG(4, 1, 1, 1, 1, 1, 0),  # 1x1: input and output rates equal
    SWG(5, 3, 3, 2, 3, 1, 1),  # 3x3 same-padding, SIMD = C
    SWG(6, 4, 1, 3, 3, 2, 1),  # stride 2, SIMD 1
    SWG(7, 3, 1, 4, 5, 1, 2, pad_value=5),  # 5x5, pad 2 with a non-zero pad value
    SWG(8, 4, 4, 2, 2, 2, 0),  # 2x2 stride 2
    SWG(9, 1, 1, 4, 3, 2, 0),  # odd size: the last row and column are never read
    SWG(4, 4, 4, 1, 1, 2, 1),  # pad >= K: output rows wholly in the padding
    SWG(5, 3, 1, 3, 5, 2, 2),
    SWG(6, 1, 1, 2, 2, 1, 1),
    SWG(9, 4, 4, 3, 3, 1, 0),  # no padding: the window slides over the whole line buffer
    SWG(9, 4, 4, 3, 3, 1, 0, lines_param=4),  # K + 1 lines: slower at frame starts
    SWG(6, 4, 1, 3, 3, 2, 1, lines_param=4),
    SWG(5, 1, 1, 2, 1, 2, 2, lines_param=2),
]
POOLS = [
    Pool(4, 1, 1, 1, 2, 0),
    Pool(5, 3, 3, 3, 2, 1),  # odd: the last row and column are dropped
    Pool(9, 4, 1, 4, 3, 1),
    Pool(8, 4, 2, 2, 4, 0),
    Pool(6, 3, 1, 4, 1, 0),  # K = 1: identity
    Pool(7, 4, 4, 4, 2, 1),
]
UNITS = SWGS + POOLS


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("cnn_rtl_src")
    for f in ("taper_swg.sv", "taper_maxpool.sv"):
        (src / f).write_bytes((RTL / f).read_bytes())
    (src / "cnn_top.sv").write_text(
        select_top("cnn_top", [(u.verilog(), u.simd * u.bits, u.simd * u.bits) for u in UNITS])
    )
    files = ["taper_swg.sv", "taper_maxpool.sv", "cnn_top.sv"]
    return build(src, "cnn_top", files, b"cnn_rtl")


def pack(codes: np.ndarray, lanes: int, bits: int) -> list[int]:
    """Elements (already unsigned codes) in stream order -> words of `lanes`, lane 0 low."""
    codes = codes.reshape(-1, lanes).astype(np.int64)
    return [sum(int(v) << (k * bits) for k, v in enumerate(row)) for row in codes]


def drive(exe: Path, tmp: Path, sel: int, words: list[int], n_out: int, stall: int, seed: int):
    """Run unit `sel`: returns (input handshake cycles, [(cycle, word)] of the output)."""
    budget = 100 * (len(words) + n_out) + 1000
    return stream_units.drive(exe, tmp, sel, words, n_out, stall, seed, budget, exe.parent)


def swg_reference(u: SWG, x: np.ndarray) -> np.ndarray:
    """x (frames, ifm, ifm, c) codes -> (frames, ofm, ofm, k, k, c): im2col, (ky, kx, c)."""
    p = u.pad
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=u.pad_value)
    out = np.empty((len(x), u.ofm, u.ofm, u.k, u.k, u.c), dtype=np.int64)
    for oy in range(u.ofm):
        for ox in range(u.ofm):
            out[:, oy, ox] = xp[:, oy * u.s : oy * u.s + u.k, ox * u.s : ox * u.s + u.k, :]
    return out


def swg_reference_strided(u: SWG, x: np.ndarray) -> np.ndarray:
    """The same windows by stride tricks (a second, independent reading)."""
    p = u.pad
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=u.pad_value)
    w = np.lib.stride_tricks.sliding_window_view(xp, (u.k, u.k), axis=(1, 2))
    w = w[:, :: u.s, :: u.s][:, : u.ofm, : u.ofm]  # (f, oy, ox, c, ky, kx)
    return w.transpose(0, 1, 2, 4, 5, 3)


def model_cycles(u, n_in: int, n_out: int, stall: int, seed: int):
    """The cycle model's handshakes of the first n_in input and n_out output words, under
    the patterns `drive` gives the testbench."""
    lines = getattr(u, "lines_param", 0)
    ins, outs = cycles.run_unit(u.layer(), n_in, n_out, lines=lines, **patterns(stall, seed))
    return ins.tolist(), outs.tolist()


def frames_of(u, rng) -> np.ndarray:
    return rng.integers(0, 1 << u.bits, size=(FRAMES, u.ifm, u.ifm, u.c))


def test_swg_period_model():
    """The cycle rules with the default LINES give one frame per max(IN_WORDS, OUT_WORDS)
    cycles in the steady state, over the whole range the header states."""
    frames = 4
    for ifm, k, s, pad, cf in itertools.product(
        range(4, 10), range(1, 6), (1, 2), (0, 1, 2), range(1, 5)
    ):
        if ifm + 2 * pad < k:
            continue
        u = SWG(ifm, cf, 1, 1, k, s, pad)
        in_words, out_words = ifm * ifm * cf, u.ofm**2 * k * k * cf
        _, outs = model_cycles(u, frames * in_words, frames * out_words, 0, 0)
        last = [outs[(f + 1) * out_words - 1] for f in range(frames)]
        assert np.diff(last)[1:].tolist() == [max(in_words, out_words)] * 2, u
        assert outs[0] == u.hi(0) * ifm * cf + 1


@pytest.mark.parametrize("i", range(len(SWGS)), ids=[str(u) for u in SWGS])
@pytest.mark.slow
@pytest.mark.xdist_group("cnn_rtl")
def test_swg(binary, tmp_path, i):
    u = SWGS[i]
    rng = np.random.default_rng(i)
    x = frames_of(u, rng)
    ref = swg_reference(u, x)
    np.testing.assert_array_equal(ref, swg_reference_strided(u, x))
    words = pack(x, u.simd, u.bits)
    want = pack(ref, u.simd, u.bits)
    in_words, out_words = len(words) // FRAMES, len(want) // FRAMES
    assert out_words == u.ofm**2 * u.k**2 * u.cf
    pad_word = pack(np.full(u.simd, u.pad_value), u.simd, u.bits)[0]
    for stall, seed in [(0, 0), (30, 1), (60, 2)]:
        ins, outs = drive(binary, tmp_path, i, words, len(want), stall, seed)
        got = [w for _, w in outs]
        assert got[: len(want)] == want, f"stall {stall}"
        assert len(ins) == len(words)
        # after the last frame only outputs wholly in the padding may come (the next frame's)
        assert all(w == pad_word for w in got[len(want) :])
        # every handshake, the extra outputs too
        assert (ins, [c for c, _ in outs]) == model_cycles(u, len(ins), len(outs), stall, seed)
        if stall == 0:
            last = [outs[(f + 1) * out_words - 1][0] for f in range(FRAMES)]
            assert outs[0][0] == u.hi(0) * u.ifm * u.cf + 1
            if not u.lines_param:  # the default line buffer: as fast as the busier side
                assert last[2] - last[1] == max(in_words, out_words)


def pool_reference(u: Pool, x: np.ndarray) -> np.ndarray:
    n, k = u.ofm * u.k, u.k
    v = x[:, :n, :n].reshape(len(x), u.ofm, k, u.ofm, k, u.c)
    return v.max(axis=(2, 4))


@pytest.mark.parametrize("i", range(len(POOLS)), ids=[str(u) for u in POOLS])
@pytest.mark.slow
@pytest.mark.xdist_group("cnn_rtl")
def test_maxpool(binary, tmp_path, i):
    u = POOLS[i]
    sel = len(SWGS) + i
    rng = np.random.default_rng(100 + i)
    lo, hi = (-(1 << (u.bits - 1)), 1 << (u.bits - 1)) if u.signed else (0, 1 << u.bits)
    x = rng.integers(lo, hi, size=(FRAMES, u.ifm, u.ifm, u.c))
    mask = (1 << u.bits) - 1
    words = pack(x & mask, u.pe, u.bits)
    want = pack(pool_reference(u, x) & mask, u.pe, u.bits)
    in_words, out_words = len(words) // FRAMES, len(want) // FRAMES
    assert out_words == u.ofm**2 * u.cf
    for stall, seed in [(0, 0), (30, 1), (60, 2)]:
        ins, outs = drive(binary, tmp_path, sel, words, len(want), stall, seed)
        assert [w for _, w in outs] == want, f"stall {stall}"
        assert len(ins) == len(words)
        assert (ins, [c for c, _ in outs]) == model_cycles(u, len(ins), len(outs), stall, seed)
        if stall == 0:
            # one input word per cycle from cycle 0; a window's word one cycle after its last
            assert ins == list(range(len(words)))
            n = u.ofm * u.k
            last_of = [
                f * in_words + ((oy * u.k + u.k - 1) * u.ifm + ox * u.k + u.k - 1) * u.cf + c
                for f in range(FRAMES)
                for oy in range(u.ofm)
                for ox in range(u.ofm)
                for c in range(u.cf)
            ]
            assert n <= u.ifm
            assert [c for c, _ in outs] == [t + 1 for t in last_of]
