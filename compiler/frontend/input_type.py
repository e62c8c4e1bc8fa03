"""``--input-type``: a fixed-point type for a model whose input is a float.

``fixed<W,I>`` is a signed W-bit number with I integer bits (sign included), as hls4ml's
``ap_fixed<W,I>``: scale 2**(I-W). ``ufixed<W,I>`` is unsigned, ``int<W>``/``uint<W>`` are
integers. The quantizer rounds half to even and saturates (QONNX Quant, ROUND, not narrow).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from onnx import helper

from compiler.errors import TaperError

MAX_INPUT_BITS = 16
# 2**e is a finite normal float32 for e in -126..127
MIN_SCALE_EXP = int(np.finfo(np.float32).minexp)
MAX_SCALE_EXP = int(np.finfo(np.float32).maxexp) - 1


@dataclass(frozen=True)
class FixedType:
    bits: int
    int_bits: int
    signed: bool

    @property
    def scale(self) -> float:
        return 2.0 ** (self.int_bits - self.bits)

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}fixed<{self.bits},{self.int_bits}>"


def parse_input_type(text: str) -> FixedType:
    t = text.replace(" ", "").lower()
    m = re.fullmatch(r"(u?)fixed<(\d+),(-?\d+)>", t)
    if m:
        ft = FixedType(int(m.group(2)), int(m.group(3)), not m.group(1))
    else:
        m = re.fullmatch(r"(u?)int<(\d+)>", t)
        if not m:
            raise TaperError(
                f"--input-type: expected fixed<W,I>, ufixed<W,I>, int<W> or uint<W>, got '{text}'"
            )
        ft = FixedType(int(m.group(2)), int(m.group(2)), not m.group(1))
    if not 1 <= ft.bits <= MAX_INPUT_BITS:
        raise TaperError(f"--input-type: width must be 1..{MAX_INPUT_BITS} bits, got {ft.bits}")
    exp = ft.int_bits - ft.bits  # the scale is 2**exp, a float32 in the model and the IR
    if not MIN_SCALE_EXP <= exp <= MAX_SCALE_EXP:
        raise TaperError(
            f"--input-type '{text}': scale 2^{exp} is not a finite normal float32 value "
            f"(I - W must be {MIN_SCALE_EXP}..{MAX_SCALE_EXP})"
        )
    if ft.int_bits > MAX_SCALE_EXP:  # the largest value is below 2**I
        raise TaperError(
            f"--input-type '{text}': values up to 2^{ft.int_bits} are not finite float32 "
            f"values (I must be at most {MAX_SCALE_EXP})"
        )
    return ft


def insert_input_quant(model, ft: FixedType):
    """Put a Quant node of type ``ft`` between the graph input and its consumers."""
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    inp = model.graph.input[0].name
    q_out = model.make_new_valueinfo_name()
    consumers = [n for n in model.graph.node if inp in n.input]
    for n in consumers:
        for i, name in enumerate(n.input):
            if name == inp:
                n.input[i] = q_out
    params = []
    for suffix, value in (("scale", ft.scale), ("zeropt", 0.0), ("bitwidth", float(ft.bits))):
        name = f"taper_input_quant_{suffix}"
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
        params.append(name)
    node = helper.make_node(
        "Quant",
        [inp, *params],
        [q_out],
        name="taper_input_quant",
        domain="qonnx.custom_op.general",
        signed=int(ft.signed),
        narrow=0,
        rounding_mode="ROUND",
    )
    model.graph.node.insert(0, node)
    return model.transform(InferShapes()).transform(InferDataTypes())
