"""HitNet's quantizers (Wang et al., "HitNet: Hybrid Ternary Recurrent Neural Network",
NeurIPS 2018) and the baselines the recurrent recipes compare them with.

HitNet observes that an RNN's weights (bell-shaped) and activations (bounded, clustered at
the ends of sigmoid/tanh) want different ternary quantizers:

- weights: threshold ternary quantization (TTQ): delta = 0.7 * mean|W|, alpha = mean of |W|
  over |W| > delta, W_t = alpha * sign(W) * [|W| > delta], straight-through gradient. Here one
  alpha per gate matrix (each gate's block of columns), so the exported per-column scale is
  the alpha of the column's gate.
- activations: Bernoulli ternary quantization (BTQ): in training, uniform noise of one step
  is added before rounding to nearest, so the result is one of the two neighbouring levels,
  each with probability 1 - its distance in steps (the mean is the input); straight-through.
  In eval the rounding is deterministic (half to even, ``torch.round``) and clipped: exactly
  the QONNX ``Quant`` node, so that hardware is exact. The noise is a training device only
  (and the deterministic network is measurably worse than the stochastic one it trained as:
  on sequential MNIST ~71 % against ~84 %; fading the noise out at the end did not help).

``uniform`` is the baseline with one quantizer for everything: deterministic round to nearest,
weights at a per-gate scale max|W| (so |W| < max/2 becomes 0). ``float`` quantizes nothing.

Activation scales are powers of two fixed by the bitwidth (the RNN export contract, see
compiler/qat/export_rnn.py): the elementwise cell arithmetic is then exact in float32, float64
and integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from brevitas.inject.enum import ScalingImplType
from brevitas.nn import QuantIdentity
from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint, Uint8ActPerTensorFixedPoint
from torch import nn

Quantizer = Literal["hitnet", "uniform", "float"]
# HitNet's threshold factor (the TWN value): delta = 0.7 * mean|W|
TTQ_DELTA = 0.7


@dataclass(frozen=True)
class ActSpec:
    """A fixed power-of-two activation quantizer: QONNX Quant(signed, narrow, bits) at
    ``scale``, value = clip(round_half_even(x / scale), *int_range) * scale."""

    bits: int
    signed: bool
    narrow: bool
    scale: float

    @property
    def int_range(self) -> tuple[int, int]:
        """The integer levels' (min, max)."""
        if not self.signed:
            return 0, 2**self.bits - 1 - int(self.narrow)
        m = 2 ** (self.bits - 1)
        return -m + int(self.narrow), m - 1


# Scales as functions of bits (the contract): the gates' sigmoid range [0, 1] and the tanh
# range [-1, 1] are represented exactly at 1 / 2**k steps; the cell state spans [-4, 4).
def input_spec(bits: int) -> ActSpec:
    """The image: unsigned over [0, 1) as compiler/qat/quantizers.input_quant."""
    return ActSpec(bits, False, False, 2.0**-bits)


def gate_spec(bits: int) -> ActSpec:
    """Sigmoid gates: unsigned, b=1 is {0, 1}, b=2 is {0, 0.5, 1}."""
    return ActSpec(bits, False, False, 2.0 ** -(bits - 1))


def tanh_spec(bits: int) -> ActSpec:
    """cand, cell_act and hidden: signed narrow, b=2 is {-1, 0, 1}."""
    return ActSpec(bits, True, True, 2.0 ** -(bits - 2))


def cell_spec(bits: int) -> ActSpec:
    """The LSTM cell state: signed over [-4, 4) (b >= 3)."""
    return ActSpec(bits, True, False, 2.0 ** -(bits - 3))


def _brevitas_act(spec: ActSpec) -> QuantIdentity:
    # Brevitas' fixed-point quantizers with a constant init: scale = init / 2**(bits - signed),
    # a power of two for a power-of-two init.
    init = spec.scale * 2 ** (spec.bits - int(spec.signed))
    kw = {"bit_width": spec.bits, "scaling_impl_type": ScalingImplType.CONST, "scaling_init": init}
    if spec.signed:
        q = Int8ActPerTensorFixedPoint.let(narrow_range=spec.narrow, **kw)
    else:
        q = Uint8ActPerTensorFixedPoint.let(**kw)
    return QuantIdentity(act_quant=q, return_quant_tensor=False)


class ActQuant(nn.Module):
    """An activation quantizer: ``btq`` (HitNet: stochastic in training, round to nearest in
    eval), ``round`` (always round to nearest) or ``none`` (identity, full precision)."""

    def __init__(self, spec: ActSpec, mode: Literal["btq", "round", "none"]) -> None:
        super().__init__()
        self.spec, self.mode = spec, mode
        self.quant = _brevitas_act(spec) if mode != "none" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant is None:
            return x
        if self.mode == "btq" and self.training:
            # round(x/s + u - 1/2) = floor(x/s) + [u >= 1 - frac(x/s)]: Bernoulli between the
            # two neighbouring levels with mean x/s; the noise is a constant to autograd.
            x = x + (torch.rand_like(x) - 0.5) * self.spec.scale
        return self.quant(x)

    def extra_repr(self) -> str:
        s = self.spec
        return f"mode={self.mode}, bits={s.bits}, signed={s.signed}, narrow={s.narrow}, scale={s.scale}"


class _StraightThrough(torch.autograd.Function):
    """``wq`` forward, identity gradient to ``w``. Not ``w + (wq - w).detach()``: that sum is
    rounded in float and would leave the weights off their quantized values."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        return wq.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def _ste(w: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(w, wq)


def _blocks(w: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """(rows, n_blocks * H) -> (n_blocks, rows * H): one row per gate block of columns."""
    rows, cols = w.shape
    return w.reshape(rows, n_blocks, cols // n_blocks).transpose(0, 1).reshape(n_blocks, -1)


def _per_column(alpha: torch.Tensor, cols: int) -> torch.Tensor:
    return alpha.repeat_interleave(cols // alpha.numel())


def ttq(w: torch.Tensor, n_blocks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """HitNet's threshold ternary weights: (quantized weights with a straight-through
    gradient, per-column scale alpha), one alpha per block of ``cols / n_blocks`` columns."""
    with torch.no_grad():
        a = _blocks(w, n_blocks).abs()
        delta = TTQ_DELTA * a.mean(1, keepdim=True)
        mask = a > delta
        alpha = (a * mask).sum(1) / mask.sum(1).clamp(min=1)
        # an all-zero block has no alpha: any positive scale quantizes it to 0
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
        col = _per_column(alpha, w.shape[1])
        big = w.abs() > _per_column(delta[:, 0], w.shape[1])
        wq = col * torch.sign(w) * big
    return _ste(w, wq), col


def uniform_weights(w: torch.Tensor, bits: int, n_blocks: int = 1):
    """Round-to-nearest weights, one scale per block: ternary (2 bits) at scale max|W| (so
    |W| < max/2 is 0); wider at the power-of-two scale that covers max|W| (exact in float32
    after the export, as the contract wants the weight tensors)."""
    with torch.no_grad():
        m = _blocks(w, n_blocks).abs().amax(1)
        m = torch.where(m > 0, m, torch.ones_like(m))
        top = 2 ** (bits - 1) - 1
        scale = m if bits == 2 else torch.exp2(torch.ceil(torch.log2(m / top)))
        col = _per_column(scale, w.shape[1])
        wq = torch.clamp(torch.round(w / col), -top, top) * col
    return _ste(w, wq), col


def quantize_weights(
    w: torch.Tensor, quantizer: Quantizer, bits: int, n_blocks: int = 1
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recipe's weight quantizer: (weights as used, per-column scale or None for float)."""
    if quantizer == "float":
        return w, None
    if quantizer == "hitnet":
        if bits != 2:
            raise ValueError(f"HitNet's weight quantizer is ternary (2 bits), got {bits}")
        return ttq(w, n_blocks)
    return uniform_weights(w, bits, n_blocks)


def act_mode(quantizer: Quantizer) -> Literal["btq", "round", "none"]:
    """The activation quantizers' mode for the recipe's ``arch.quantizer``."""
    return {"hitnet": "btq", "uniform": "round", "float": "none"}[quantizer]
