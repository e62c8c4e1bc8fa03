"""Random Brevitas MLPs over the widest distributions that can still be exact.

``random_model(seed)`` gives ``(module, input_shape, description)``: a QuantIdentity input
quantizer (1..16 bits, unsigned, signed or bipolar; float or power-of-two scale), 1..4
QuantLinear layers of odd and even widths (1, 3, 7, 33 ...), weights of 1..8 bits (bipolar,
ternary, narrow or full range, per-tensor or per-channel, float or power-of-two scales),
biases of every kind (none, float, integer-quantized of 4..32 bits), optional BatchNorm1d
(random statistics), hidden activations of 1..8 bits (QuantReLU, signed QuantIdentity,
bipolar, ternary; per-tensor or per-channel, float or power-of-two scales) and an optional
output quantizer. Activation scales are calibrated on random inputs so that every quantizer
uses its range (neither all zero nor all saturated).

Some draws are models taper must refuse (a 1-bit QuantReLU, per-channel activation scales
before a layer, a bipolar input in front of a non-binary layer): the fuzz test checks that
they end in a one-line TaperError.

One combination is left out: a bipolar activation right after a layer whose accumulator
scale is not a power of two, with no float bias or BatchNorm in between. The accumulator is
then exactly 0 for some inputs, which QONNX's sign maps to +1, but the float64 QONNX
reference computes a residue of about 1e-17 of either sign there (it cannot reproduce such a
tie; the IR, computing in integers, is exact).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from brevitas.inject.enum import ScalingImplType
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from brevitas.quant.fixed_point import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerChannelFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPoint,
)
from brevitas.quant.scaled_int import (
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFloat,
    IntBias,
    Uint8ActPerTensorFloat,
)
from brevitas.quant.ternary import SignedTernaryActPerTensorConst, SignedTernaryWeightPerTensorConst
from torch import nn

WIDTHS = (1, 2, 3, 4, 7, 8, 16, 33)
CALIBRATION_SAMPLES = 256


class FuzzMLP(nn.Module):
    def __init__(self, input_quant: nn.Module, layers: list[nn.Module]) -> None:
        super().__init__()
        self.input_quant = input_quant
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.input_quant(x))


@dataclass
class Quantizer:
    module: nn.Module | type
    text: str
    pot: bool  # one power-of-two scale (products of such scales are exact in float64)
    per_channel: bool = False


def _is_pot(s: float) -> bool:
    return s > 0 and math.log2(s) == round(math.log2(s))


def _scale(rng: random.Random, float_scale: bool, span: float) -> float:
    """A value near ``span``, or the power of two nearest to it.

    Brevitas' constant scaling takes the range (the largest value), not the step: an
    integer quantizer's step is it divided by 2^b - 1 (unsigned) or 2^(b-1) (signed), the
    fixed-point ones round it to a power of two first; a ternary or bipolar one's step is
    its constant itself."""
    s = max(span, 1e-3) * rng.uniform(0.6, 1.6)
    return s if float_scale else 2.0 ** round(math.log2(s))


def _act(
    rng: random.Random, kind: str, bits: int, amax: torch.Tensor, per_channel: bool
) -> Quantizer:
    """An activation quantizer of ``kind`` whose scale fits the calibrated ``amax``."""
    float_scale = rng.random() < 0.4
    if kind == "bipolar":
        s = rng.choice([1.0, 1.0, 0.5, 2.0, rng.uniform(0.1, 3.0)])
        q = SignedBinaryActPerTensorConst.let(scaling_const=s)
        q = QuantIdentity(act_quant=q, return_quant_tensor=True)
        return Quantizer(q, "bipolar" if s == 1 else f"bipolar s={s:.3g}", _is_pot(s))
    if kind == "ternary":
        s = _scale(rng, float_scale, float(amax.max()) / 1.5)
        q = SignedTernaryActPerTensorConst.let(scaling_const=s, min_val=-s, max_val=s)
        return Quantizer(
            QuantIdentity(act_quant=q, return_quant_tensor=True), f"ternary s={s:.3g}", _is_pot(s)
        )
    signed = kind == "signed"
    extra: dict = {}
    if per_channel:
        init = torch.tensor([[_scale(rng, float_scale, float(a)) for a in amax]])
        extra = dict(
            scaling_per_output_channel=True,
            per_channel_broadcastable_shape=tuple(init.shape),
            scaling_stats_permute_dims=(1, 0),
        )
        text = "pc"
    else:
        init = _scale(rng, float_scale, float(amax.max()))
        text = f"max={init:.3g}"
    if signed:
        base = Int8ActPerTensorFloat if float_scale else Int8ActPerTensorFixedPoint
    else:
        base = Uint8ActPerTensorFloat if float_scale else Uint8ActPerTensorFixedPoint
    q = base.let(bit_width=bits, scaling_impl_type=ScalingImplType.CONST, scaling_init=init)
    q = q.let(**extra) if extra else q
    cls = QuantIdentity if signed else QuantReLU
    # Brevitas' QuantLinear cannot take a per-channel QuantTensor: pass plain floats on
    module = cls(act_quant=q, return_quant_tensor=not per_channel)
    text = f"{'int' if signed else 'relu-uint'}{bits} {text}"
    return Quantizer(module, text, not per_channel and not float_scale, per_channel)


def _weight_quant(rng: random.Random, bits: int) -> Quantizer:
    if bits == 1:
        s = rng.choice([1.0, 0.5, 0.25, rng.uniform(0.05, 2.0)])
        q = SignedBinaryWeightPerTensorConst.let(scaling_const=s)
        return Quantizer(q, f"w1 bipolar s={s:.3g}", _is_pot(s))
    if bits == 2 and rng.random() < 0.4:
        s = rng.choice([1.0, 0.5, rng.uniform(0.05, 1.0)])
        q = SignedTernaryWeightPerTensorConst.let(scaling_const=s)
        return Quantizer(q, f"w2 ternary s={s:.3g}", _is_pot(s))
    per_channel = rng.random() < 0.5
    float_scale = rng.random() < 0.5
    narrow = rng.random() < 0.7
    if per_channel:
        base = Int8WeightPerChannelFloat if float_scale else Int8WeightPerChannelFixedPoint
    else:
        base = Int8WeightPerTensorFloat if float_scale else Int8WeightPerTensorFixedPoint
    text = (
        f"w{bits} {'pc' if per_channel else 'pt'} {'float' if float_scale else 'pot'}"
        f"{' narrow' if narrow else ''}"
    )
    return Quantizer(base.let(bit_width=bits, narrow_range=narrow), text, not float_scale)


def _input_quant(rng: random.Random) -> tuple[Quantizer, float, float]:
    """The input quantizer and the float range [lo, hi) to draw calibration inputs from."""
    kind = rng.choices(["uint", "int", "bipolar"], weights=[5, 4, 1])[0]
    if kind == "bipolar":
        s = rng.choice([1.0, 0.5, rng.uniform(0.1, 3.0)])
        q = SignedBinaryActPerTensorConst.let(scaling_const=s)
        q = QuantIdentity(act_quant=q, return_quant_tensor=True)
        return Quantizer(q, f"in bipolar s={s:.3g}", _is_pot(s)), -s, s
    # Brevitas exports a 1-bit unsigned quantizer as BipolarQuant: a bipolar input too
    bits = rng.choice([1, 2, 3, 4, 5, 7, 8, 9, 12, 16]) if kind == "uint" else rng.randint(2, 16)
    float_scale = rng.random() < 0.4
    top = rng.uniform(0.3, 3.0) if float_scale else 2.0 ** rng.randint(-4, 4)
    if kind == "uint":
        base = Uint8ActPerTensorFloat if float_scale else Uint8ActPerTensorFixedPoint
    else:
        base = Int8ActPerTensorFloat if float_scale else Int8ActPerTensorFixedPoint
    q = base.let(bit_width=bits, scaling_impl_type=ScalingImplType.CONST, scaling_init=top)
    module = QuantIdentity(act_quant=q, return_quant_tensor=True).eval()
    with torch.no_grad():
        scale = float(module(torch.zeros(1, 1)).scale)
    lo, hi = (0, 2**bits - 1) if kind == "uint" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    text = f"in {kind}{bits} s={scale:.3g}"
    return Quantizer(module, text, _is_pot(scale)), (lo - 0.5) * scale, (hi + 0.5) * scale


def _batchnorm(width: int) -> nn.BatchNorm1d:
    b = nn.BatchNorm1d(width)
    with torch.no_grad():
        b.running_mean.uniform_(-1.0, 1.0)
        b.running_var.uniform_(0.2, 4.0)
        b.weight.uniform_(-2.0, 2.0)
        b.bias.uniform_(-1.0, 1.0)
    return b


def _values(t) -> torch.Tensor:
    return t.value if hasattr(t, "value") else t


def random_model(seed: int) -> tuple[nn.Module, tuple[int, ...], str]:
    """A random Brevitas MLP (eval mode), its input shape (without batch) and a description."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    n_layers = rng.randint(1, 4)
    widths = [rng.choice(WIDTHS[1:]), *(rng.choice(WIDTHS) for _ in range(n_layers))]
    iq, lo, hi = _input_quant(rng)
    iq.module.eval()
    parts = [f"seed {seed}: {iq.text} [{widths[0]}]"]
    with torch.no_grad():
        x = iq.module(torch.rand(CALIBRATION_SAMPLES, widths[0]) * (hi - lo) + lo)
    x_q = iq  # the quantizer x comes from
    layers: list[nn.Module] = [iq.module]
    for i in range(n_layers):
        last = i == n_layers - 1
        wq = _weight_quant(rng, rng.randint(1, 8))
        # an integer bias lives in the accumulator's scale: one input scale per tensor
        bias_kind = rng.choice(["none", "float"] + ([] if x_q.per_channel else ["int"]))
        bias_quant = None
        if bias_kind == "int":
            bias_bits = rng.choice([4, 8, 12, 16, 24, 32])
            bias_quant = IntBias.let(bit_width=bias_bits)
            bias_kind = f"int{bias_bits}"
        block: list[nn.Module] = [
            QuantLinear(
                widths[i],
                widths[i + 1],
                bias=bias_kind != "none",
                weight_quant=wq.module,
                bias_quant=bias_quant,
                return_quant_tensor=not x_q.per_channel,
            )
        ]
        bn = rng.random() < 0.4
        if bn:
            block.append(_batchnorm(widths[i + 1]))
        parts.append(
            f"L{i} {widths[i]}->{widths[i + 1]} {wq.text} bias={bias_kind}{' bn' if bn else ''}"
        )
        seq = nn.Sequential(*block).eval()
        with torch.no_grad():
            y = _values(seq(x))
        layers.extend(block)
        if last and rng.random() < 0.5:
            break  # float logits
        if last:
            kind = rng.choice(["signed", "signed", "bipolar"])
        else:
            kind = rng.choice(["relu", "relu", "relu", "signed", "bipolar", "ternary"])
        # see the module docstring: a tie at 0 the float64 reference cannot reproduce
        exact_zero = bias_kind != "float" and not bn and not (x_q.pot and wq.pot)
        if kind == "bipolar" and exact_zero:
            kind = "signed"
        bits = {"bipolar": 1, "ternary": 2}.get(kind) or rng.randint(1 if kind == "relu" else 2, 8)
        amax = y.clamp(min=0) if kind == "relu" else y.abs()
        amax = amax.amax(dim=0)
        amax = torch.where(amax > 0, amax, torch.ones_like(amax))
        per_channel = kind in ("relu", "signed") and rng.random() < 0.1
        act = _act(rng, kind, bits, amax, per_channel)
        act.module.eval()
        parts.append(("out " if last else "") + act.text)
        with torch.no_grad():
            x = act.module(y)
        x_q = act
        layers.append(act.module)
    model = FuzzMLP(layers[0], layers[1:]).eval()
    return model, (widths[0],), " | ".join(parts)
