"""QuantNet-style differentiable binarization of weights (Liu et al. 2020, arXiv 2009.04626).

Instead of the straight-through estimator, a small sub-network ``f`` (shared by all weights of
a layer, applied elementwise) maps each full-precision weight to a pre-binary value, and the
training forward uses ``tanh(beta * f(w))``: differentiable everywhere, no gradient
approximation. ``beta`` is annealed from 1 to ``BETA_MAX`` over training so the soft weights
approach +-1; evaluation and export use exactly ``sign(f(w))`` through Brevitas' bipolar
quantizer (scale 1), so the deployed model is an ordinary bipolar-weight QONNX model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from brevitas.nn import QuantLinear
from brevitas.quant_tensor import QuantTensor
from torch import nn

from compiler.qat.linear import quant_linear
from compiler.qat.quantizers import weight_quant

BETA_MAX = 200.0
HIDDEN = 8


class QuantLinearQuantNet(QuantLinear):
    """A 1-bit-weight ``QuantLinear`` trained through a differentiable binarizer."""

    def __init__(self, in_features: int, out_features: int, bias: bool, bias_quant) -> None:
        super().__init__(
            in_features,
            out_features,
            bias=bias,
            weight_quant=weight_quant(1),
            bias_quant=bias_quant,
        )
        self.binarizer = nn.Sequential(nn.Linear(1, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, 1))
        # start near the identity so the initial signs are the weights' own
        with torch.no_grad():
            self.binarizer[0].weight.fill_(1.0 / HIDDEN)
            self.binarizer[0].bias.zero_()
            self.binarizer[2].weight.fill_(1.0)
            self.binarizer[2].bias.zero_()
        self.register_buffer("beta", torch.tensor(1.0))
        self._bias_quant = bias_quant

    def anneal(self, progress: float) -> None:
        """Set ``beta`` for ``progress`` in [0, 1] of training (geometric 1 -> BETA_MAX)."""
        self.beta.fill_(BETA_MAX ** min(max(progress, 0.0), 1.0))

    def pre_binary(self) -> torch.Tensor:
        w = self.weight.reshape(-1, 1)
        return self.binarizer(w).reshape(self.weight.shape)

    def forward(self, inp):
        if not self.training:
            return self._forward_hard(inp)
        inp = self.unpack_input(inp)
        quant_input = self.input_quant(inp)
        x = quant_input.value if isinstance(quant_input, QuantTensor) else quant_input
        soft = torch.tanh(self.beta * self.pre_binary())
        bias = None
        if self.bias is not None:  # the integer bias in the accumulator's scale (weights: 1)
            hard = self.weight_quant(self.pre_binary().detach())
            bias = self.bias_quant(self.bias, quant_input, hard)
            bias = bias.value if isinstance(bias, QuantTensor) else bias
        return F.linear(x, soft, bias)

    def _forward_hard(self, inp):
        inp = self.unpack_input(inp)
        return quant_linear(self, self.input_quant(inp), self.pre_binary(), self.bias)

    def to_plain(self) -> QuantLinear:
        """A plain bipolar ``QuantLinear`` whose weights binarize exactly as this layer's do."""
        plain = QuantLinear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            weight_quant=weight_quant(1),
            bias_quant=self._bias_quant,
            return_quant_tensor=self.return_quant_tensor,
        )
        with torch.no_grad():
            plain.weight.copy_(self.pre_binary())
            if self.bias is not None:
                plain.bias.copy_(self.bias)
        return plain.eval()
