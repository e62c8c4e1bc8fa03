"""Integer element types of IR tensors."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntType:
    """An integer element type: ``bits`` wide, signed or not; ``bipolar`` is {-1, +1} in 1 bit.

    Values in the IR are the numbers themselves (a bipolar -1 is -1); how they are packed
    into stream bits is a back end's business (bipolar: 0 encodes -1).
    """

    bits: int
    signed: bool
    bipolar: bool = False

    def __post_init__(self) -> None:
        if self.bits < 1:
            raise ValueError(f"integer type needs at least 1 bit, got {self.bits}")
        if self.bipolar and (self.bits != 1 or self.signed):
            raise ValueError("bipolar types are 1 bit and not two's complement")

    @property
    def min(self) -> int:
        if self.bipolar:
            return -1
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        if self.bipolar:
            return 1
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self) -> str:
        """FINN's name for the type: INT4, UINT2, BINARY (= UINT1), BIPOLAR."""
        if self.bipolar:
            return "BIPOLAR"
        if not self.signed and self.bits == 1:
            return "BINARY"
        return f"{'INT' if self.signed else 'UINT'}{self.bits}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> IntType:
        """From FINN's DataType name (INT4, UINT8, BINARY, BIPOLAR)."""
        if name == "BIPOLAR":
            return cls(1, False, True)
        if name == "BINARY":
            return cls(1, False)
        m = re.fullmatch(r"(U?)INT(\d+)", name)
        if not m:
            raise ValueError(f"not an integer type: {name}")
        return cls(int(m.group(2)), not m.group(1))

    @classmethod
    def for_range(cls, lo: int, hi: int) -> IntType:
        """The narrowest type holding every integer in [lo, hi]."""
        lo, hi = int(lo), int(hi)
        if lo >= 0:
            return cls(max(1, hi.bit_length()), False)
        bits = max((-lo - 1).bit_length(), hi.bit_length() if hi > 0 else 0) + 1
        return cls(bits, True)

    def contains(self, a: np.ndarray) -> bool:
        a = np.asarray(a)
        if self.bipolar:
            return bool(np.all((a == -1) | (a == 1)))
        return bool(a.size == 0 or (a.min() >= self.min and a.max() <= self.max))


def sum_range(w: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``w``, the least and greatest of ``w @ v`` over every v with
    ``lo <= v <= hi`` elementwise (scalars or one bound per column), in ``w``'s dtype
    (object arrays: Python integers, never wrapping)."""
    a, b = w * lo, w * hi
    return np.minimum(a, b).sum(axis=1), np.maximum(a, b).sum(axis=1)
