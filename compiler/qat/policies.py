"""Bitwidth policies: how a recipe's bit settings become one bitwidth per layer.

``progressive`` follows Chu et al. 2019, "Mixed-Precision Quantized Neural Network with
Progressively Decreasing Bitwidth": high precision in the first layers, decreasing with depth.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_BITS = 8
Bits = Annotated[int, Field(ge=1, le=MAX_BITS)]


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Uniform(_Policy):
    """Every layer at the same bitwidth."""

    policy: Literal["uniform"]
    bits: Bits

    def resolve(self, n: int) -> list[int]:
        return [self.bits] * n


class Explicit(_Policy):
    """One bitwidth per layer, in order."""

    policy: Literal["explicit"]
    bits: list[Bits] = Field(min_length=1)

    def resolve(self, n: int) -> list[int]:
        if len(self.bits) != n:
            raise ValueError(f"expected {n} bitwidths (one per layer), got {len(self.bits)}")
        return list(self.bits)


class Progressive(_Policy):
    """Bitwidth decreasing with depth from ``first`` to ``last``.

    ``linear`` interpolates between them (rounded half up); ``step`` drops by ``step_bits``
    every ``step_layers`` layers, never below ``last``. ``first_layer`` pins layer 0 to its
    own bitwidth (e.g. 8-bit first layer in an otherwise binary network); the schedule then
    spans the remaining layers.
    """

    policy: Literal["progressive"]
    first: Bits
    last: Bits
    schedule: Literal["linear", "step"] = "linear"
    step_layers: Annotated[int, Field(ge=1)] = 1
    step_bits: Annotated[int, Field(ge=1)] = 1
    first_layer: Bits | None = None

    @model_validator(mode="after")
    def _decreasing(self) -> Progressive:
        if self.last > self.first:
            raise ValueError(f"'last' ({self.last}) must not exceed 'first' ({self.first})")
        return self

    def resolve(self, n: int) -> list[int]:
        if self.first_layer is not None:
            return [self.first_layer, *self._schedule(n - 1)] if n > 1 else [self.first_layer]
        return self._schedule(n)

    def _schedule(self, n: int) -> list[int]:
        if n <= 0:
            return []
        if self.schedule == "step":
            return [
                max(self.last, self.first - self.step_bits * (i // self.step_layers))
                for i in range(n)
            ]
        if n == 1:
            return [self.first]
        span = self.first - self.last
        return [math.floor(self.first - span * i / (n - 1) + 0.5) for i in range(n)]


Policy = Annotated[Uniform | Explicit | Progressive, Field(discriminator="policy")]
