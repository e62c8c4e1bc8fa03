"""Handshake patterns of the pipeline's ports: when the source offers a word, when the sink
takes one.

A pattern says, per cycle, whether the port is willing (1) or not (0): always, a 0/1 list
repeated cyclically, or seeded random with a stall percentage. Random patterns are a
stateless hash of (seed, port, cycle), so the Verilator testbench (`hw/tb/taper_tb.cpp`)
computes the very same bits without a file and whatever the design does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.errors import TaperError

MASK = (1 << 64) - 1
MAX_LENGTH = 1 << 24
BLOCK = 1 << 14
VALID, READY = 0, 1  # salts: the input port's valid, the output port's ready


def mix(x: int) -> int:
    """splitmix64's finalizer (the testbench has the same function)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _mix_array(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass
class Pattern:
    """``kind`` is "always", "cyclic" (``bits`` repeated) or "random" (``percent`` of the
    cycles stalled, from ``seed``; ``salt`` tells the two ports apart)."""

    kind: str = "always"
    bits: np.ndarray | None = None
    percent: int = 0
    seed: int = 0
    salt: int = VALID
    _next: np.ndarray | None = field(default=None, repr=False)  # cyclic: next 1 at or after i
    _blocks: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @staticmethod
    def always() -> Pattern:
        return Pattern()

    @staticmethod
    def random(percent: int, seed: int = 0, salt: int = VALID) -> Pattern:
        return Pattern("random", percent=int(percent), seed=int(seed), salt=salt)

    @staticmethod
    def of(value: object, name: str, salt: int = VALID, seed: int = 0) -> Pattern:
        """A pattern from what a user passes: None (always), a Pattern, an int stall
        percentage 0-99 (seeded random), or a sequence of 0/1 repeated cyclically."""
        if value is None:
            return Pattern.always()
        if isinstance(value, Pattern):
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < 100:
                raise TaperError(f"{name}: a stall percentage is 0..99, got {value}")
            return Pattern.random(int(value), seed, salt) if value else Pattern.always()
        try:
            a = np.asarray(value)
        except (TypeError, ValueError):
            a = np.asarray([])
        if a.ndim != 1 or not (1 <= a.size <= MAX_LENGTH):
            raise TaperError(
                f"{name}: expected a 0/1 pattern of 1..{MAX_LENGTH} cycles, got "
                f"{'shape ' + str(a.shape) if a.ndim != 1 else str(a.size) + ' cycles'}"
            )
        if a.dtype.kind not in "biu" or not np.isin(a, (0, 1)).all():
            bad = [v for v in a.tolist() if v not in (0, 1)][:1]
            raise TaperError(f"{name}: pattern values are 0 or 1, got {bad[0] if bad else a.dtype}")
        if not a.any():
            raise TaperError(f"{name}: the pattern is all 0: the port never moves a word")
        return Pattern("cyclic", bits=a.astype(np.uint8))

    # -- queries
    def _block(self, b: int) -> np.ndarray:
        """Random pattern: bits of cycles [b*BLOCK, (b+1)*BLOCK)."""
        blk = self._blocks.get(b)
        if blk is None:
            key = np.uint64(mix((self.seed * 2 + self.salt) & MASK))
            t = np.arange(b * BLOCK, (b + 1) * BLOCK, dtype=np.uint64)
            with np.errstate(over="ignore"):
                blk = (_mix_array(key + t) % np.uint64(100)) >= np.uint64(self.percent)
            if len(self._blocks) > 64:
                self._blocks.clear()
            self._blocks[b] = blk
        return blk

    def at(self, t: int) -> bool:
        if self.kind == "always":
            return True
        if self.kind == "cyclic":
            return bool(self.bits[t % len(self.bits)])
        return bool(self._block(t // BLOCK)[t % BLOCK])

    def first(self, t: int, limit: int) -> int | None:
        """The first cycle >= t where the port is willing, or None before ``limit``."""
        if self.kind == "always":
            return t
        if self.kind == "cyclic":
            if self._next is None:
                n = len(self.bits)
                idx = np.where(self.bits, np.arange(n), 2 * n)
                # next one at or after i, wrapping: min over two periods
                two = np.concatenate([idx, idx + n])
                nxt = np.minimum.accumulate(two[::-1])[::-1][:n]
                self._next = nxt
            n = len(self.bits)
            r = t + int(self._next[t % n]) - t % n
            return r if r < limit else None
        while t < limit:
            b, i = divmod(t, BLOCK)
            hit = np.flatnonzero(self._block(b)[i:])
            if hit.size:
                r = t + int(hit[0])
                return r if r < limit else None
            t = (b + 1) * BLOCK
        return None

    def shift_invariant(self, cycles: int) -> bool:
        """Is the pattern the same when shifted by ``cycles``? (for extrapolating)"""
        if self.kind == "always":
            return True
        if self.kind == "cyclic":
            return cycles % len(self.bits) == 0
        return False

    def tb_spec(self, directory: Path, name: str) -> str:
        """The testbench's argument for this pattern (a cyclic one is written to a file)."""
        if self.kind == "always":
            return "1"
        if self.kind == "random":
            return f"r:{self.percent}:{self.seed}:{self.salt}"
        p = Path(directory) / f"{name}.pattern"
        p.write_text("".join(map(str, self.bits.tolist())) + "\n")
        return f"f:{p}"


def fmt_cycles(v: float) -> str:
    """A cycle count for people: 50,176 (whole), 84.138 (an average)."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.3f}"


def as_bits(p: Pattern, cycles: int) -> np.ndarray:
    """The first ``cycles`` bits of a pattern (for plots, VCDs and tests)."""
    if p.kind == "always":
        return np.ones(cycles, dtype=bool)
    if p.kind == "cyclic":
        return np.resize(p.bits.astype(bool), cycles)
    blocks = [p._block(b) for b in range((cycles + BLOCK - 1) // BLOCK)]
    return np.concatenate(blocks)[:cycles] if blocks else np.zeros(0, bool)
