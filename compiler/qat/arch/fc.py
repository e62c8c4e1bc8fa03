"""FINN's fully connected family (TFC 64, SFC 256, LFC 1024 wide) with per-layer bitwidths.

Each hidden layer is QuantLinear -> BatchNorm1d -> (Dropout) -> activation quantizer (or the
BatchNorm folded into the QuantLinear, or none, by ``arch.batchnorm``); the last
layer is a QuantLinear with an integer-quantized bias whose output is the logits. The input
is quantized to an unsigned fixed-point value in [0, 1), or binarized as sign(2x - 1).
"""

from __future__ import annotations

import math

import torch
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant.scaled_int import IntBias
from torch import nn

from compiler.qat.bn_fold import QuantLinearBNFold
from compiler.qat.quantizers import act_quant, bipolar_input_quant, input_quant, weight_quant
from compiler.qat.quantnet import QuantLinearQuantNet
from compiler.qat.recipe import Recipe


class FC(nn.Module):
    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        scaling = recipe.quant.scaling
        bias_quant = IntBias.let(bit_width=recipe.quant.bias_bits)
        in_features = math.prod(input_shape)
        self.bipolar_input = recipe.input.mode == "bipolar"
        q = bipolar_input_quant() if self.bipolar_input else input_quant(recipe.input.bits)
        self.input_quant = QuantIdentity(act_quant=q, return_quant_tensor=True)
        layers: list[nn.Module] = []
        widths = [in_features, *recipe.arch.hidden]
        for i, (wb, ab) in enumerate(zip(recipe.weight_bits, recipe.act_bits, strict=False)):
            bn = recipe.arch.batchnorm
            if wb == 1 and recipe.quant.weight_quantizer == "quantnet":
                layers.append(QuantLinearQuantNet(widths[i], widths[i + 1], not bn, bias_quant))
            elif bn == "fold":
                layers.append(
                    QuantLinearBNFold(
                        widths[i], widths[i + 1], weight_quant(wb, scaling), bias_quant
                    )
                )
            else:
                layers.append(
                    QuantLinear(
                        widths[i],
                        widths[i + 1],
                        bias=not bn,
                        weight_quant=weight_quant(wb, scaling),
                        bias_quant=bias_quant,
                    )
                )
            if bn is True:
                layers.append(nn.BatchNorm1d(widths[i + 1]))
            if recipe.arch.dropout:
                layers.append(nn.Dropout(recipe.arch.dropout))
            if ab == 1 or recipe.quant.act_signed:
                q = act_quant(ab, scaling, signed=True)
                layers.append(QuantIdentity(act_quant=q, return_quant_tensor=True))
            else:
                layers.append(QuantReLU(act_quant=act_quant(ab, scaling), return_quant_tensor=True))
        if recipe.weight_bits[-1] == 1 and recipe.quant.weight_quantizer == "quantnet":
            layers.append(QuantLinearQuantNet(widths[-1], n_classes, True, bias_quant))
        else:
            layers.append(
                QuantLinear(
                    widths[-1],
                    n_classes,
                    bias=True,
                    weight_quant=weight_quant(recipe.weight_bits[-1], scaling),
                    bias_quant=bias_quant,
                )
            )
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.bipolar_input:  # exported as Mul, Add before the BipolarQuant: host edge ops
            x = 2.0 * x - 1.0
        x = self.input_quant(x)
        return self.layers(x)

    def linear_layers(self) -> list[QuantLinear]:
        return [m for m in self.layers if isinstance(m, QuantLinear)]
