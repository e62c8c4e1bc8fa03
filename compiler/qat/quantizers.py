"""Brevitas quantizers for each bitwidth.

Power-of-two scales are the default so that every back end (FINN thresholds, hls4ml fixed
point, our RTL) can reproduce the network exactly; 1-bit layers are bipolar with scale 1 and
2-bit weights are narrow-range (ternary {-1, 0, 1} times a scale).
"""

from __future__ import annotations

from typing import Literal

from brevitas.inject.enum import ScalingImplType
from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from brevitas.quant.fixed_point import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPoint,
)
from brevitas.quant.scaled_int import (
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFloat,
    Uint8ActPerTensorFloat,
)

Scaling = Literal["power_of_two", "float"]


def weight_quant(bits: int, scaling: Scaling = "power_of_two") -> type:
    """Weight quantizer: bipolar at 1 bit, narrow-range signed integer above."""
    if bits == 1:
        return SignedBinaryWeightPerTensorConst.let(scaling_const=1.0)
    base = Int8WeightPerTensorFixedPoint if scaling == "power_of_two" else Int8WeightPerTensorFloat
    return base.let(bit_width=bits, narrow_range=True)


def act_quant(bits: int, scaling: Scaling = "power_of_two", signed: bool = False) -> type:
    """Activation quantizer after a hidden layer: bipolar sign at 1 bit, else an integer
    quantizer, unsigned (for a ReLU) or signed."""
    if bits == 1:
        return SignedBinaryActPerTensorConst
    if signed:
        base = Int8ActPerTensorFixedPoint if scaling == "power_of_two" else Int8ActPerTensorFloat
    else:
        base = Uint8ActPerTensorFixedPoint if scaling == "power_of_two" else Uint8ActPerTensorFloat
    return base.let(bit_width=bits)


def bipolar_input_quant() -> type:
    """Binarized input (BNN-PYNQ): the sign of its argument, {-1, +1}, scale 1."""
    return SignedBinaryActPerTensorConst


def input_quant(bits: int) -> type:
    """Input quantizer: unsigned ``bits``-bit over [0, 1), fixed scale 2**-bits."""
    return Uint8ActPerTensorFixedPoint.let(
        bit_width=bits, scaling_impl_type=ScalingImplType.CONST, scaling_init=1.0
    )
