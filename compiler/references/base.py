"""The reference interface and its registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from compiler.errors import TaperError
from compiler.ir.model import Model


@dataclass
class Inputs:
    """The same samples for every reference: floats ``x`` (N, *in_shape), the host input
    edge's integers ``q`` (N, features), and the IR simulator's integers per tensor."""

    x: np.ndarray
    q: np.ndarray
    seed: int = 0


@dataclass
class RefOutput:
    """A reference's values per IR layer name (the last layer always; more localize a
    mismatch). ``exact``: fixed-point values that must equal the integers, not round to them."""

    values: dict[str, np.ndarray]
    checked: list[str] | None = None  # layers whose mismatches count (default: the last)
    exact: bool = False
    note: str | None = None
    measured: dict[str, float] = field(default_factory=dict)
    # a timing reference: how the cycle model compared, handshake by handshake (None: n/a)
    cycle_model: str | None = None
    cycle_model_exact: bool = True


class Reference:
    name: ClassVar[str]

    def unavailable(self, build: Path, m: Model) -> str | None:
        """Why this reference cannot run on this build here, or None."""
        return None

    def run(self, build: Path, m: Model, inputs: Inputs) -> RefOutput:
        raise NotImplementedError


REFERENCES: dict[str, Reference] = {}


def register(cls: type[Reference]) -> type[Reference]:
    REFERENCES[cls.name] = cls()
    return cls


def get(name: str) -> Reference:
    try:
        return REFERENCES[name]
    except KeyError:
        raise TaperError(
            f"--against: unknown reference '{name}': expected {', '.join(REFERENCES)}"
        ) from None


def output_to_int(m: Model, r: np.ndarray) -> np.ndarray:
    """Invert the output edge's Mul/Add (in float64) to recover the hardware's integers.

    ``r`` is the reference's value before any Softmax or TopK (which cannot be inverted)."""
    v = r.astype(np.float64).reshape(len(r), -1)
    for step in reversed([s for s in m.output_edge.steps if s.op not in ("softmax", "topk")]):
        if step.op == "add":
            v = v - step.value.astype(np.float64)
        elif step.op == "mul":
            v = v / step.value.astype(np.float64)
    return v
