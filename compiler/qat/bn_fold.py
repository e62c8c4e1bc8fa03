"""Batch normalization folded into a quantized linear layer during QAT.

FINN turns a float BatchNormalization into integer thresholds; hls4ml cannot, it would compute
it in approximate fixed point. Folding BN into the layer's weights and bias *before* they are
quantized (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference") trains with BN's statistics while the exported graph holds
only quantized weights and an integer bias: no float arithmetic between quantizers.

Training folds with the batch statistics (a float pass computes them), evaluation with the
running ones; :func:`compiler.qat.linear.for_export` swaps each folded layer for a plain ``QuantLinear`` holding
the folded weights, which computes exactly what the folded layer computes in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from brevitas.nn import QuantLinear
from brevitas.quant_tensor import QuantTensor
from torch import nn

from compiler.qat.linear import quant_linear


class QuantLinearBNFold(QuantLinear):
    """``QuantLinear`` followed by ``BatchNorm1d``, trained with BN folded into the weights."""

    def __init__(self, in_features: int, out_features: int, weight_quant, bias_quant) -> None:
        # bias=True: brevitas only enables the bias quantizer for a layer with a bias.
        super().__init__(
            in_features, out_features, bias=True, weight_quant=weight_quant, bias_quant=bias_quant
        )
        self.bn = nn.BatchNorm1d(out_features)
        self._quant = {"weight_quant": weight_quant, "bias_quant": bias_quant}

    def folded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights and bias with BN folded in; in training also updates BN's running stats."""
        bn = self.bn
        if self.training:
            z = F.linear(x, self.weight, self.bias)
            mean, var = z.mean(0), z.var(0, unbiased=False)
            with torch.no_grad():
                m = bn.momentum
                n = z.shape[0]
                bn.running_mean.mul_(1 - m).add_(m * mean)
                bn.running_var.mul_(1 - m).add_(m * var * n / max(n - 1, 1))
                bn.num_batches_tracked += 1
        else:
            mean, var = bn.running_mean, bn.running_var
        s = bn.weight / torch.sqrt(var + bn.eps)
        return self.weight * s[:, None], (self.bias - mean) * s + bn.bias

    def forward(self, inp):
        inp = self.unpack_input(inp)
        quant_input = self.input_quant(inp)
        x = quant_input.value if isinstance(quant_input, QuantTensor) else quant_input
        w, b = self.folded(x)
        return quant_linear(self, quant_input, w, b)

    def to_plain(self) -> QuantLinear:
        """A plain ``QuantLinear`` with the eval-mode folded weights and bias."""
        plain = QuantLinear(
            self.in_features,
            self.out_features,
            bias=True,
            return_quant_tensor=self.return_quant_tensor,
            **self._quant,
        )
        was_training = self.training
        self.eval()
        with torch.no_grad():
            w, b = self.folded(self.weight)  # eval: running stats, input unused
            plain.weight.copy_(w)
            plain.bias.copy_(b)
        self.train(was_training)
        return plain.eval()
