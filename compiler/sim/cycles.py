"""Cycle-accurate simulation of the generated dataflow pipeline, word by word.

The pipeline of ``backends/rtl/generate.py`` is a chain: the input port, then per layer an
optional width converter, a FIFO and the layer's unit (`UNITS`: MVU, thresholding, sliding
window, max pool), then the output port. Every link between two of them is an AXI stream
whose words are each accepted at one cycle, the handshake. Each element is modelled by the exact rules its Verilog follows, written as
"from which cycle is output word k valid" and "from which cycle is input word k accepted"
(see each class), so the handshake of word k on a link is the first cycle at which both
hold; nothing is simulated cycle by cycle, and a fully folded layer's thousands of compute
cycles cost one addition. When the port patterns repeat, the run stops as soon as the whole
pipeline's recent history repeats (a steady state: every later frame is the same, shifted
by the period's cycles) and the remaining frames are filled in exactly.

Cycle 0 is the first cycle after reset, as in the Verilator testbench (`hw/tb/taper_tb.cpp`)
against which tests compare every handshake; `run_unit` models one unit alone between the
ports, as `hw/tb/taper_stream_tb.cpp` drives a library unit.
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import TaperError
from compiler.ir.model import (
    Layer,
    MatVec,
    MaxPool,
    Model,
    Recurrent,
    SlidingWindow,
    Thresholding,
)
from compiler.sim.patterns import READY, VALID, Pattern

HISTORY_FRAMES = 3  # lookback of the rules (an MVU waits two vectors back; a window: its own)
MAX_PERIOD = 8  # frames


class Deadlock(TaperError):
    """No handshake on a link for the deadlock bound: names the stage and its FIFO."""


@dataclass
class StageStats:
    # cycles doing work: an MVU issuing a step, a thresholding unit or a pool taking a word,
    # a sliding window issuing an element (its writer fills the line buffer alongside)
    busy: int
    starved: int  # cycles neither busy nor blocked: waiting for input (or done)
    # cycles held up by the next stage: its output word waited (a pool: a window's last
    # input word waited for the output register)
    blocked: int


@dataclass
class FifoStats:
    depth: int
    width: int
    peak: int  # most words it held at once

    @property
    def bits(self) -> int:
        return self.depth * self.width


@dataclass
class CycleRun:
    """Every handshake of a run. Cycles count from the first cycle after reset."""

    frames: int
    input_cycles: np.ndarray  # every input word accepted
    output_cycles: np.ndarray  # every output word taken
    in_words: int  # per frame
    out_words: int
    clock_mhz: float
    stages: dict[str, StageStats]
    fifos: dict[str, FifoStats]
    links: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (valid from, handshake) per word
    period: tuple[int, int] | None = None  # (frames, cycles) of the steady state, if reached
    simulated_frames: int = 0  # frames simulated before the steady state filled the rest
    # stage -> (input link, output link, [first, last] cycles it issued work, up to `record`)
    busy: dict[str, tuple[str, str, np.ndarray]] = field(default_factory=dict)

    @property
    def frame_start_cycles(self) -> np.ndarray:
        return self.input_cycles[:: self.in_words]

    @property
    def last_cycles(self) -> np.ndarray:
        """Each frame's last output word (TLAST)."""
        return self.output_cycles[self.out_words - 1 :: self.out_words]

    @property
    def latency_cycles(self) -> int:
        """First frame: first input word accepted -> last output word taken, inclusive."""
        return int(self.last_cycles[0] - self.input_cycles[0] + 1)

    @property
    def steady_ii_cycles(self) -> float:
        """Cycles per frame in the steady state (exact when it was reached), else as
        `ii_cycles`."""
        if self.period is not None:
            return self.period[1] / self.period[0]
        return self.ii_cycles

    @property
    def ii_cycles(self) -> float:
        """Cycles per frame as `RTLRun.ii_cycles` measures it: the spacing of the frames'
        last output words over the second half of the run."""
        t = self.last_cycles
        if len(t) < 3:
            return float("nan")
        half = len(t) // 2
        return float((t[-1] - t[half]) / (len(t) - 1 - half))

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.steady_ii_cycles

    def to_json(self) -> dict:
        return {
            "frames": self.frames,
            "latency_cycles": self.latency_cycles,
            "ii_cycles": self.ii_cycles,
            "steady_ii_cycles": self.steady_ii_cycles,
            "fps": self.fps,
            "clock_mhz": self.clock_mhz,
            "steady_state": None
            if self.period is None
            else {"frames": self.period[0], "cycles": self.period[1]},
            "stages": {k: vars(v) for k, v in self.stages.items()},
            "fifos": {k: {**vars(v), "bits": v.bits} for k, v in self.fifos.items()},
        }


# ---------------------------------------------------------------------------- the engine


class _Link:
    __slots__ = ("name", "words", "times", "valid", "producer", "consumer", "busy")

    def __init__(self, name: str, words: int):
        self.name = name
        self.words = words  # per frame
        self.times: list[int] = []  # handshake cycle of each word
        self.valid: list[int] = []  # cycle from which each word was valid
        self.producer: _Element
        self.consumer: _Element
        self.busy = False


class _Sim:
    def __init__(self, bound: int):
        self.bound = bound

    def get(self, link: _Link, k: int) -> int:
        """Handshake cycle of word k on ``link``, computing earlier words first."""
        times = link.times
        while len(times) <= k:
            n = len(times)
            if link.busy:  # a rule asked for its own result: a bug in a rule, not in the design
                raise RuntimeError(f"cycle model: word {n} of {link.name} depends on itself")
            link.busy = True
            v = link.producer.valid_from(n)
            h = link.consumer.first_ready(n, v)
            link.busy = False
            if h - v > self.bound:
                raise Deadlock(
                    f"deadlock: {link.consumer.stage} took no word from {link.name} for "
                    f"{self.bound:,} cycles (word {n} valid from cycle {v:,}); "
                    f"{link.consumer.blame(n)}"
                )
            link.valid.append(v)
            times.append(h)
        return times[k]


class _Element:
    stage = ""
    inp: _Link
    out: _Link

    def __init__(self, sim: _Sim):
        self.sim = sim

    def valid_from(self, k: int) -> int:
        raise NotImplementedError

    def first_ready(self, k: int, t0: int) -> int:
        raise NotImplementedError

    def blame(self, k: int) -> str:
        return f"{self.stage} is blocked"

    def series(self) -> list[tuple[list[int], int]]:
        """Internal per-word state (list, words per frame) that the steady state must repeat."""
        return []


class _Source(_Element):
    """The input port (the testbench): offers word k from the first cycle its pattern allows
    after word k-1 was taken (and, with a frame period K, not before frame f's cycle f*K),
    and holds it until taken."""

    stage = "input"

    def __init__(self, sim: _Sim, pattern: Pattern, frame_period: int):
        super().__init__(sim)
        self.pattern = pattern
        self.period = frame_period

    def valid_from(self, k: int) -> int:
        t = self.out.times[k - 1] + 1 if k else 0
        if self.period and k % self.out.words == 0:
            t = max(t, (k // self.out.words) * self.period)
        r = self.pattern.first(t, t + self.sim.bound)
        if r is None:
            raise Deadlock(f"deadlock: the input port's valid pattern stays 0 from cycle {t:,}")
        return r


class _Sink(_Element):
    """The output port: takes a word at every cycle its ready pattern is 1."""

    stage = "output"

    def __init__(self, sim: _Sim, pattern: Pattern):
        super().__init__(sim)
        self.pattern = pattern

    def first_ready(self, k: int, t0: int) -> int:
        r = self.pattern.first(t0, t0 + self.sim.bound)
        if r is None:
            raise Deadlock(
                f"deadlock: output took no word from {self.inp.name} for {self.sim.bound:,} "
                f"cycles (word {k} valid from cycle {t0:,}); the output port's ready pattern "
                "stays 0"
            )
        return r

    def blame(self, k: int) -> str:
        return "the output port's ready pattern"


class _Fifo(_Element):
    """`taper_fifo.sv`: registered count; a word pushed at t is visible at t+1; s_tready is
    count != DEPTH, so word k enters once word k-DEPTH left (the cycle after)."""

    def __init__(self, sim: _Sim, name: str, depth: int, width: int):
        super().__init__(sim)
        self.stage, self.depth, self.width = name, depth, width

    def valid_from(self, k: int) -> int:
        t = self.sim.get(self.inp, k)
        if k:
            t = max(t, self.out.times[k - 1])
        return t + 1

    def first_ready(self, k: int, t0: int) -> int:
        t = t0
        if k:
            t = max(t, self.inp.times[k - 1] + 1)
        if k >= self.depth:
            t = max(t, self.sim.get(self.out, k - self.depth) + 1)
        return t

    def blame(self, k: int) -> str:
        return f"FIFO {self.stage} ({self.depth} words) is full"


class _Dwc(_Element):
    """`taper_dwc.sv`: a count of elements; ready while count <= OUT + IN - 1, valid while
    count >= OUT; a words of IN elements in, b words of OUT elements out."""

    def __init__(self, sim: _Sim, name: str, a: int, b: int):
        super().__init__(sim)
        self.stage, self.a, self.b = name, a, b

    def valid_from(self, j: int) -> int:
        need = -(-self.b * (j + 1) // self.a)  # input words in before output word j
        t = self.sim.get(self.inp, need - 1) + 1
        if j:
            t = max(t, self.out.times[j - 1] + 1)
        return t

    def first_ready(self, k: int, t0: int) -> int:
        t = t0
        if k:
            t = max(t, self.inp.times[k - 1] + 1)
        # output words out before input word k: a*k - b*o <= a + b - 1
        need = -(-(self.a * (k - 1) + 1) // self.b) - 1
        if need > 0:
            t = max(t, self.sim.get(self.out, need - 1) + 1)
        return t


class _Unit(_Element):
    """A layer's unit. Its statistics: ``busy`` cycles (doing work), ``blocked`` cycles
    (held up by its output), the rest starved; ``spans`` are the cycles it was busy."""

    lookback = HISTORY_FRAMES  # frames back that its rules read (the steady state's window)
    words_in = 1  # per frame
    words_out = 1

    def __init__(self, sim: _Sim, name: str):
        super().__init__(sim)
        self.stage = name

    def busy(self, frames: int) -> int:
        raise NotImplementedError

    def blocked(self, times: dict[str, np.ndarray], valid: dict[str, np.ndarray]) -> int:
        """Default: the cycles each output word waited for the next stage."""
        return int((times[self.out.name] - valid[self.out.name]).sum())

    def spans(self, times: dict[str, np.ndarray], valid: dict[str, np.ndarray], record: int):
        """Default: the cycles it took an input word."""
        return _spans(times[self.inp.name], record)


def _spans(cycles: np.ndarray, record: int) -> np.ndarray:
    """Sorted cycles before ``record`` as [first, last] runs of consecutive cycles."""
    c = cycles[cycles < record]
    if not len(c):
        return np.zeros((0, 2), dtype=np.int64)
    cut = np.flatnonzero(np.diff(c) != 1) + 1
    return np.stack([c[np.r_[0, cut]], c[np.r_[cut - 1, len(c) - 1]]], axis=1)


class _Stalling(_Unit):
    """A unit whose pipeline stalls as a whole while its output word is not taken: stall
    windows [valid, taken) of its output words are the cycles it does nothing."""

    def __init__(self, sim: _Sim, name: str):
        super().__init__(sim, name)
        self.vout: list[int] = []
        self.ws: list[int] = []  # window starts (non-empty windows only)
        self.we: list[int] = []  # window ends: the handshake cycle (not stalled)
        self.nwin = 0

    def _sync_windows(self, upto: int) -> None:
        """Know the stall windows of output words < upto."""
        for j in range(self.nwin, upto):
            h = self.sim.get(self.out, j)
            if h > self.vout[j]:
                self.ws.append(self.vout[j])
                self.we.append(h)
        self.nwin = max(self.nwin, upto)

    def next_enabled(self, t: int) -> int:
        we = self.we
        if not we or t >= we[-1]:  # after every known window (the usual case)
            return t
        i = bisect_right(self.ws, t) - 1
        if i >= 0 and t < self.we[i]:
            return self.we[i]
        return t

    def advance(self, t: int, n: int) -> int:
        """The n-th (n >= 1) not-stalled cycle after t."""
        t = self.next_enabled(t + 1)
        n -= 1
        ws, we = self.ws, self.we
        i = bisect_right(ws, t)
        while n:
            if i < len(ws) and ws[i] <= t + n:
                n -= ws[i] - 1 - t
                t = we[i]
                n -= 1
                i += 1
            else:
                return t + n
        return t


class _Mvu(_Stalling):
    """`taper_mvu.sv`, which knows vectors only (a frame is ``n_vectors`` of them, back to
    back). Writer: input words fill one of two buffers; vector f goes to buffer f%2, which it
    enters the cycle after vector f-1 is complete and vector f-2 released (the switch happens
    in the cycle of the later of the two). Compute: one (nf, sf) step per not-stalled cycle
    once its input word is in the buffer (the cycle after it was written), NF x SF steps per
    vector, the last step of a vector releasing its buffer. The last sf step of each nf gives
    an output word valid after PIPE more not-stalled cycles (+1): the pipeline is issue -> R1
    (weight address) -> R2 (weight read) -> R3 (first compressor level) -> R4 (dot product)
    -> R5 (accumulator) -> output register."""

    PIPE = 5  # registers between the issue stage and the output register

    def __init__(self, sim: _Sim, layer: MatVec):
        super().__init__(sim, layer.name)
        self.NF = layer.out_features // layer.pe
        self.SF = layer.in_features // layer.simd
        self.words_in = layer.n_vectors * self.SF
        self.words_out = layer.n_vectors * self.NF
        self.last: list[int] = []  # cycle of the last step of each output word
        self.spans_: list[list[int]] = []  # [first, last] cycles of issued steps (windows cut)
        self.record = 0  # record spans before this cycle

    def _compute(self, j: int) -> None:
        NF, SF, last, get = self.NF, self.SF, self.last, self.sim.get
        while len(last) <= j:
            n = len(last)
            f, nf = divmod(n, NF)  # f: the vector
            if n:
                self._sync_windows(n)
            t = last[n - 1] if n else -1
            t0 = t
            if nf == 0:
                base = f * SF
                inp = self.inp
                itimes = inp.times
                for i in range(base, base + SF):
                    x = (itimes[i] if i < len(itimes) else get(inp, i)) + 1
                    t = self.next_enabled(x if x > t + 1 else t + 1)
                    if t < self.record:
                        sp = self.spans_
                        if sp and sp[-1][1] + 1 >= t:
                            sp[-1][1] = t
                        else:
                            sp.append([t, t])
            else:
                t = self.advance(t, SF)
                if t0 < self.record:
                    self.spans_.append([t0 + 1, t])
            last.append(t)
            for _ in range(self.PIPE):
                t = self.next_enabled(t + 1)
            self.vout.append(t + 1)

    def valid_from(self, j: int) -> int:
        self._compute(j)
        return self.vout[j]

    def first_ready(self, w: int, t0: int) -> int:
        f, s = divmod(w, self.SF)  # f: the vector
        if w == 0:
            return t0
        t = max(t0, self.inp.times[w - 1] + 1)
        if s == 0 and f >= 2:
            r = (f - 1) * self.NF - 1  # the last output word of vector f-2
            self._compute(r)
            t = max(t, self.last[r] + 1)
        return t

    def series(self) -> list[tuple[list[int], int]]:
        return [(self.last, self.words_out), (self.vout, self.words_out)]

    def busy(self, frames: int) -> int:
        return frames * self.words_out * self.SF

    def spans(self, times, valid, record: int) -> np.ndarray:
        return np.asarray(self.spans_, dtype=np.int64).reshape(-1, 2)


class _Thresholding(_Stalling):
    """`taper_thresholding.sv`: takes a word at every not-stalled cycle (s_tready = !stall);
    the word is in the output register after the next not-stalled cycle. It knows no
    frames: ``n_vectors`` vectors of C/PE words each are just words."""

    def __init__(self, sim: _Sim, layer: Thresholding):
        super().__init__(sim, layer.name)
        self.words_in = self.words_out = layer.n_vectors * (layer.channels // layer.pe)

    def valid_from(self, k: int) -> int:
        t = self.sim.get(self.inp, k)
        if k:
            self._sync_windows(k)
        v = self.next_enabled(t + 1) + 1
        self.vout.append(v)
        return v

    def first_ready(self, k: int, t0: int) -> int:
        t = t0
        if k:
            t = max(t, self.inp.times[k - 1] + 1)
            self._sync_windows(k)
        return self.next_enabled(t)

    def series(self) -> list[tuple[list[int], int]]:
        return [(self.vout, self.words_out)]

    def busy(self, frames: int) -> int:
        return frames * self.words_in


def swg_lines(layer: SlidingWindow) -> int:
    """The line buffer rows `taper_swg.sv` takes by default (LINES = 0): the smallest power
    of two >= max(K + S, IFM_DIM + hi(0) - lo(OFM_DIM - 1))."""
    ifm, k, s, pad = layer.ifm_dim, layer.kernel, layer.stride, layer.pad
    hi0 = min(max(k - pad, 0), ifm)
    lo_last = min(max((layer.ofm_dim - 1) * s - pad, 0), ifm)
    need = max(k + s, ifm + hi0 - lo_last)
    return 1 << (need - 1).bit_length()


class _Swg(_Stalling):
    """`taper_swg.sv` (its header states these rules). Rows are counted over frames: input
    row g holds input words g*IFM*CF .. (g+1)*IFM*CF - 1; output row R = f*OFM + oy holds
    OFM*K*K*CF words and reads input rows f*IFM + lo(oy) .. f*IFM + hi(oy) - 1.
    Reader: one element per not-stalled cycle; the first of row R once input row
    f*IFM + hi(oy) - 1 is complete (from the cycle after its last word); valid the cycle
    after it issued. Writer: input word k of row g is taken once the reader's current row R
    (the row after the last one it finished) has f*IFM + lo(oy) > g - LINES: a row slot is
    overwritten only when no current or later output row needs it."""

    def __init__(self, sim: _Sim, layer: SlidingWindow, lines: int = 0):
        super().__init__(sim, layer.name)
        ifm, k, s, pad, ofm = layer.ifm_dim, layer.kernel, layer.stride, layer.pad, layer.ofm_dim
        cf = layer.channels // layer.simd
        self.ifm, self.ofm = ifm, ofm
        self.row_in = ifm * cf  # input words per row
        self.row_out = ofm * k * k * cf  # output words per output row
        self.words_in, self.words_out = ifm * self.row_in, ofm * self.row_out
        self.lo = [min(max(r * s - pad, 0), ifm) for r in range(ofm)]
        self.hi = [min(max(r * s - pad + k, 0), ifm) for r in range(ofm)]
        self.lines = lines or swg_lines(layer)
        if self.lines <= k:  # the writer's rule would wait for the row it completes
            raise TaperError(f"layer {layer.name}: {self.lines} line buffer rows for K={k}")
        # the first output row of a frame whose lo exceeds x (OFM: the next frame's first)
        self.after = [next((r for r in range(ofm) if self.lo[r] > x), ofm) for x in range(ifm)]
        # the writer reads the reader's row LINES input rows back, the history must hold it
        self.lookback = max(HISTORY_FRAMES, -(-self.lines // ifm) + 3)
        self.issue: list[int] = []  # cycle each output element issued (valid the cycle after)

    def _compute(self, j: int) -> None:
        issue, row_out = self.issue, self.row_out
        while len(issue) <= j:
            n = len(issue)
            t = issue[-1] + 1 if n else 0
            if n:
                self._sync_windows(n)
            R, pos = divmod(n, row_out)
            if pos == 0:
                f, oy = divmod(R, self.ofm)
                rows = f * self.ifm + self.hi[oy]  # input rows complete before it issues
                if rows:
                    t = max(t, self.sim.get(self.inp, rows * self.row_in - 1) + 1)
            t = self.next_enabled(t)
            issue.append(t)
            self.vout.append(t + 1)

    def valid_from(self, j: int) -> int:
        self._compute(j)
        return self.vout[j]

    def first_ready(self, k: int, t0: int) -> int:
        t = max(t0, self.inp.times[k - 1] + 1) if k else t0
        x = k // self.row_in - self.lines
        if x >= 0:
            f, rem = divmod(x, self.ifm)
            R = f * self.ofm + self.after[rem]  # the first row that leaves row g's slot free
            if R:
                e = R * self.row_out - 1  # the last element of row R-1
                self._compute(e)
                t = max(t, self.issue[e] + 1)
        return t

    def series(self) -> list[tuple[list[int], int]]:
        return [(self.issue, self.words_out)]

    def busy(self, frames: int) -> int:
        return frames * self.words_out

    def spans(self, times, valid, record: int) -> np.ndarray:
        return _spans(valid[self.out.name] - 1, record)  # the cycles it issued an element


class _MaxPool(_Unit):
    """`taper_maxpool.sv` (its header states these rules): takes input word k from the cycle
    after word k-1, except that a word completing a window (its last pixel, each channel
    fold) waits until the previous output word is taken (the same cycle will do); a window's
    output word is valid the cycle after its last input word was taken."""

    def __init__(self, sim: _Sim, layer: MaxPool):
        super().__init__(sim, layer.name)
        ifm, k, ofm = layer.ifm_dim, layer.kernel, layer.ofm_dim
        cf = layer.channels // layer.pe
        self.words_in, self.words_out = ifm * ifm * cf, ofm * ofm * cf
        # each output word's last input word within a frame, and back
        self.emit = [
            ((oy * k + k - 1) * ifm + ox * k + k - 1) * cf + c
            for oy in range(ofm)
            for ox in range(ofm)
            for c in range(cf)
        ]
        self.out_of = [-1] * self.words_in
        for e, i in enumerate(self.emit):
            self.out_of[i] = e

    def valid_from(self, e: int) -> int:
        f, i = divmod(e, self.words_out)
        return self.sim.get(self.inp, f * self.words_in + self.emit[i]) + 1

    def first_ready(self, k: int, t0: int) -> int:
        t = max(t0, self.inp.times[k - 1] + 1) if k else t0
        f, i = divmod(k, self.words_in)
        o = self.out_of[i]
        if o >= 0 and f * self.words_out + o:
            t = max(t, self.sim.get(self.out, f * self.words_out + o - 1))
        return t

    def busy(self, frames: int) -> int:
        return frames * self.words_in

    def blocked(self, times, valid) -> int:
        """The cycles s_tready was low: a window's last word waiting for the output."""
        h_in, h_out = times[self.inp.name], times[self.out.name]
        n = len(h_out) // self.words_out
        emit = np.asarray(self.emit, dtype=np.int64)
        k = (np.arange(n, dtype=np.int64)[:, None] * self.words_in + emit).reshape(-1)[1:]
        wait = np.minimum(h_in[k], h_out[:-1]) - h_in[k - 1] - 1
        return int(np.maximum(wait, 0).sum())


class _Rnn(_Unit):
    """`taper_rnn.sv` (its header states these rules). Steps s = frame*T + t, IF input words
    each, into two x buffers: a step's first word is taken from the cycle after step s-2
    committed (the others the cycle after the previous word). Step s starts at
    S = max(its last input word + 1, commit of step s-1 + 1) and is ready to commit at
    R = S + step_cycles - 1; a step that emits h_t commits at max(R, the cycle the previous
    emission's last word was taken), else at R. An emission's first word is valid the cycle
    after its commit, each next word the cycle after the previous one was taken. Nothing in
    the unit stalls."""

    def __init__(self, sim: _Sim, layer: Recurrent):
        super().__init__(sim, layer.name)
        self.T, self.IF, self.H = layer.steps, layer.in_features, layer.hidden
        self.seq = layer.return_sequences
        self.step = layer.step_cycles
        self.issues = layer.step_cycles - (7 if layer.cell == "lstm" else 9)
        self.words_in = self.T * self.IF
        self.words_out = (self.T if self.seq else 1) * self.H
        self.start: list[int] = []  # S of every step
        self.commit: list[int] = []  # C of every step

    def _compute(self, s: int) -> None:
        start, commit, get = self.start, self.commit, self.sim.get
        while len(commit) <= s:
            n = len(commit)
            t = get(self.inp, (n + 1) * self.IF - 1) + 1
            if n:
                t = max(t, commit[n - 1] + 1)
            start.append(t)
            c = t + self.step - 1
            if self.seq or n % self.T == self.T - 1:
                e = n if self.seq else n // self.T  # this step's emission
                if e:
                    c = max(c, get(self.out, e * self.H - 1))
            commit.append(c)

    def _emitter(self, e: int) -> int:
        return e if self.seq else e * self.T + self.T - 1

    def valid_from(self, j: int) -> int:
        e, i = divmod(j, self.H)
        if i:
            return self.out.times[j - 1] + 1
        s = self._emitter(e)
        self._compute(s)
        return self.commit[s] + 1

    def first_ready(self, k: int, t0: int) -> int:
        t = max(t0, self.inp.times[k - 1] + 1) if k else t0
        s, i = divmod(k, self.IF)
        if i == 0 and s >= 2:
            self._compute(s - 2)
            t = max(t, self.commit[s - 2] + 1)
        return t

    def series(self) -> list[tuple[list[int], int]]:
        return [(self.start, self.T), (self.commit, self.T)]

    def busy(self, frames: int) -> int:
        return frames * self.T * self.issues

    def spans(self, times, valid, record: int) -> np.ndarray:
        s = np.asarray(self.start, dtype=np.int64)
        sp = np.stack([s, s + self.issues - 1], axis=1) if len(s) else np.zeros((0, 2), np.int64)
        return sp[sp[:, 0] < record]


UNITS: dict[str, type[_Unit]] = {
    "matvec": _Mvu,
    "thresholding": _Thresholding,
    "window": _Swg,
    "maxpool": _MaxPool,
    "recurrent": _Rnn,
}
"""The cycle model of each IR layer kind (a new kind registers its rules here)."""


# ---------------------------------------------------------------------------- building


def fifo_depths(m: Model) -> dict[str, int]:
    """The FIFO depth in front of every layer, keyed by the layer's input tensor."""
    given = {f.tensor: f.depth for f in m.fifos}
    return {layer.input: given.get(layer.input, 2) for layer in m.layers}


def _unit(sim: _Sim, layer: Layer, **options: int) -> _Unit:
    try:
        cls = UNITS[layer.kind]
    except KeyError:
        raise TaperError(f"layer {layer.name}: no cycle model for {layer.kind} layers") from None
    return cls(sim, layer, **options)  # type: ignore[arg-type]


def _build(m: Model, depths: dict[str, int], src: _Source, sink: _Sink, sim: _Sim):
    elements: list[_Element] = [src]
    links: list[_Link] = []
    fifos: list[_Fifo] = []
    units: list[_Unit] = []

    def connect(e: _Element, name: str, words: int) -> None:
        link = _Link(name, words)
        link.producer = elements[-1]
        elements[-1].out = link
        link.consumer = e
        e.inp = link
        links.append(link)
        elements.append(e)

    first = m.layers[0]
    elems, bits = first.in_elems, first.input_type.bits
    name = "s_axis"
    for layer in m.layers:
        if layer.input_type.bits != bits:
            raise TaperError(
                f"layer {layer.name}: {layer.input_type.bits}-bit inputs after a {bits}-bit stream"
            )
        words = layer.in_frame // elems
        if elems != layer.in_elems:
            dwc = _Dwc(sim, f"{layer.name}_dwc", elems, layer.in_elems)
            connect(dwc, name, words)
            name, words = f"{layer.name}_dwc", layer.in_frame // layer.in_elems
        depth = depths[layer.input]
        if depth < 1:
            raise TaperError(f"FIFO before layer {layer.name}: depth {depth}, expected >= 1")
        fifo = _Fifo(sim, f"{layer.name}_fifo", depth, layer.in_width)
        connect(fifo, name, words)
        fifos.append(fifo)
        unit = _unit(sim, layer)
        connect(unit, fifo.stage, words)
        units.append(unit)
        name, elems, bits = layer.name, layer.out_elems, layer.out_type.bits
    last = m.layers[-1]
    connect(sink, name, last.out_frame // last.out_elems)
    return links, fifos, units


# ---------------------------------------------------------------------------- the API


def run(
    m: Model,
    frames: int | np.ndarray = 10,
    *,
    in_valid: object = None,
    out_ready: object = None,
    seed: int = 0,
    frame_period: int = 0,
    fifo_depths: dict[str, int] | None = None,
    deadlock_cycles: int | None = None,
    steady_state: bool = True,
    record_cycles: int = 0,
) -> CycleRun:
    """Simulate ``frames`` frames (a count, or an array of frames whose length is used:
    timing does not depend on the data) through the generated pipeline of ``m``.

    ``in_valid`` and ``out_ready`` are the ports' patterns: None (every cycle), a stall
    percentage 0-99 (seeded random, the same bits as the Verilator testbench's) or a 0/1
    sequence repeated cyclically. ``frame_period`` K > 0 offers frame f not before cycle
    f*K. ``fifo_depths`` overrides the IR's depths (keyed by a layer's input tensor).
    ``steady_state`` stops simulating once the pipeline repeats (exact; off: simulate all).
    Raises `Deadlock` when a link sees no handshake for ``deadlock_cycles``. The cycles each
    stage was busy are kept for the first ``record_cycles`` cycles (for `timeline`).

    Every link's words of all ``frames`` frames are simulated, also input words taken after
    the last output word (rows a sliding window or a pool never reads still take a cycle).
    """
    n = frames if isinstance(frames, (int, np.integer)) else len(np.asarray(frames))
    if isinstance(n, bool) or int(n) < 1:
        raise TaperError(f"frames: expected at least 1 frame, got {frames!r}")
    n = int(n)
    if not isinstance(frame_period, (int, np.integer)) or frame_period < 0:
        raise TaperError(f"frame_period: expected cycles >= 0, got {frame_period!r}")
    pin = Pattern.of(in_valid, "in_valid", VALID, seed)
    pout = Pattern.of(out_ready, "out_ready", READY, seed)
    depths = fifo_depths_of(m, fifo_depths)
    sim = _Sim(_bound(m.layers, (pin, pout), frame_period, deadlock_cycles))
    src, sink = _Source(sim, pin, int(frame_period)), _Sink(sim, pout)
    links, fifos, units = _build(m, depths, src, sink, sim)
    out_link = links[-1]
    for u in units:
        if isinstance(u, _Mvu):
            u.record = record_cycles
    series = [(lk.times, lk.words) for lk in links] + [(lk.valid, lk.words) for lk in links]
    for u in units:
        series += u.series()
    history = max(u.lookback for u in units)
    history_words = {id(s): history * w for s, w in series}
    for fi in fifos:  # a FIFO takes word k once word k - depth left: its output's lookback
        for s in (fi.out.times, fi.out.valid):
            history_words[id(s)] = max(history_words[id(s)], fi.depth + 2)
    patterns = (pin, pout)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    period = None
    full: dict[int, np.ndarray] = {}
    done = n
    try:
        for f in range(n):
            sim.get(out_link, (f + 1) * out_link.words - 1)
            if steady_state and f + 1 < n and f + 1 > history:
                period = _steady(
                    series, history_words, f, out_link, patterns, frame_period, history
                )
                if period is not None:
                    done = f + 1
                    full = _extrapolate(series, f, period, n)
                    break
        if period is None:  # the words after the last output word
            for lk in links:
                sim.get(lk, n * lk.words - 1)
    finally:
        sys.setrecursionlimit(old)
    return _result(m, n, done, period, links, fifos, units, record_cycles, full)


def _bound(layers: list[Layer], patterns, frame_period: int, given: int | None) -> int:
    return given or (
        64 * sum(layer.cycles + 4 for layer in layers)
        + 100_000
        + sum(len(p.bits) for p in patterns if p.bits is not None)
        + frame_period
    )


def run_unit(
    layer: Layer,
    in_words: int,
    out_words: int,
    *,
    in_valid: object = None,
    out_ready: object = None,
    seed: int = 0,
    lines: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One layer's unit alone between the ports, no FIFO or converter in front (as
    `hw/tb/taper_stream_tb.cpp` drives a library unit): the handshake cycles of its first
    ``in_words`` input and ``out_words`` output words. The source offers words without end;
    ``lines`` sets a sliding window's line buffer rows (LINES; 0: the unit's default)."""
    pin = Pattern.of(in_valid, "in_valid", VALID, seed)
    pout = Pattern.of(out_ready, "out_ready", READY, seed)
    sim = _Sim(_bound([layer], (pin, pout), 0, None))
    src, sink = _Source(sim, pin, 0), _Sink(sim, pout)
    unit = _unit(sim, layer, **({"lines": lines} if lines else {}))
    inp, out = _Link("s_axis", unit.words_in), _Link(layer.name, unit.words_out)
    src.out, unit.inp, inp.producer, inp.consumer = inp, inp, src, unit
    unit.out, sink.inp, out.producer, out.consumer = out, out, unit, sink
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        if out_words:
            sim.get(out, out_words - 1)
        if in_words:
            sim.get(inp, in_words - 1)
    finally:
        sys.setrecursionlimit(old)
    return (
        np.asarray(inp.times[:in_words], dtype=np.int64),
        np.asarray(out.times[:out_words], dtype=np.int64),
    )


def fifo_depths_of(m: Model, override: dict[str, int] | None) -> dict[str, int]:
    depths = fifo_depths(m)
    for k, v in (override or {}).items():
        if k not in depths:
            raise TaperError(f"fifo_depths: no FIFO before a layer reading '{k}'")
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise TaperError(f"fifo_depths: '{k}': expected a depth >= 1, got {v!r}")
        depths[k] = int(v)
    return depths


def _steady(
    series, history_words, f: int, out_link: _Link, patterns, frame_period: int, history: int
):
    """(frames, cycles) when the last frames repeat the ones P frames before, shifted."""
    end = out_link.words * (f + 1)
    for p in range(1, MAX_PERIOD + 1):
        if f + 1 < p + history:
            break
        T = out_link.times[end - 1] - out_link.times[end - 1 - p * out_link.words]
        if T <= 0 or not all(pt.shift_invariant(T) for pt in patterns):
            continue
        if frame_period and T % frame_period:
            continue
        if all(_repeats(s, w, history_words[id(s)], f, p, T) for s, w in series):
            return p, T
    return None


def _repeats(s: list[int], w: int, h: int, f: int, p: int, T: int) -> bool:
    # a series may lag the output's frame f (input rows a window or pool does not need yet):
    # its window ends where it is
    end = min((f + 1) * w, len(s))
    lo = end - h
    if lo - p * w < 0:
        return False
    a = np.asarray(s[lo - p * w :], dtype=np.int64)
    # the history, and whatever was computed beyond it, repeats with period (p, T)
    return bool((a[p * w :] - a[: len(a) - p * w] == T).all())


def _extrapolate(series, f: int, period: tuple[int, int], n: int) -> dict[int, np.ndarray]:
    """Every series over all n frames (as arrays, keyed by the list's id): the words after
    those simulated repeat the last period, shifted by its cycles."""
    p, T = period
    full = {}
    for s, w in series:
        total = n * w
        a = np.asarray(s[:total], dtype=np.int64)
        end = len(a)
        reps = -(-(total - end) // (p * w))
        tail = a[end - p * w :] + T * np.arange(1, reps + 1, dtype=np.int64)[:, None]
        full[id(s)] = np.concatenate([a, tail.reshape(-1)[: total - end]])
    return full


def _result(m, n, done, period, links, fifos, units, record: int, full) -> CycleRun:
    def arr(s: list[int], k: int) -> np.ndarray:
        a = full.get(id(s))
        return a if a is not None else np.asarray(s[:k], dtype=np.int64)

    times = {lk.name: arr(lk.times, n * lk.words) for lk in links}
    valid = {lk.name: arr(lk.valid, n * lk.words) for lk in links}
    inp, out = links[0], links[-1]
    # the run's cycles: up to the last handshake (the output's last word, unless a pool or a
    # window left input rows unread: those are taken, and work done, after it)
    end = max(int(t[-1]) for t in times.values()) + 1
    stages, spans_of = {}, {}
    for u in units:
        spans_of[u.stage] = (u.inp.name, u.out.name, u.spans(times, valid, record))
        busy, blocked = u.busy(n), u.blocked(times, valid)
        stages[u.stage] = StageStats(busy=busy, starved=end - busy - blocked, blocked=blocked)
    fstats = {}
    for fi in fifos:
        push, pop = times[fi.inp.name], times[fi.out.name]
        occ = np.arange(1, len(push) + 1) - np.searchsorted(pop, push, side="right")
        fstats[fi.stage] = FifoStats(fi.depth, fi.width, int(occ.max()))
    return CycleRun(
        frames=n,
        input_cycles=times[inp.name],
        output_cycles=times[out.name],
        in_words=inp.words,
        out_words=out.words,
        clock_mhz=m.clock_mhz,
        stages=stages,
        fifos=fstats,
        links={k: (valid[k], times[k]) for k in times},
        period=period,
        simulated_frames=done,
        busy=spans_of,
    )
