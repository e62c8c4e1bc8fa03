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


def input_layer(recipe: Recipe) -> QuantIdentity:
    """The input quantizer: unsigned ``input.bits`` over [0, 1), or bipolar sign."""
    bipolar = recipe.input.mode == "bipolar"
    q = bipolar_input_quant() if bipolar else input_quant(recipe.input.bits)
    return QuantIdentity(act_quant=q, return_quant_tensor=True)


def activation(bits: int, recipe: Recipe) -> nn.Module:
    """The activation quantizer after a hidden layer: bipolar sign at 1 bit, else signed
    (``quant.act_signed``) or unsigned after a ReLU."""
    scaling = recipe.quant.scaling
    if bits == 1 or recipe.quant.act_signed:
        return QuantIdentity(
            act_quant=act_quant(bits, scaling, signed=True), return_quant_tensor=True
        )
    return QuantReLU(act_quant=act_quant(bits, scaling), return_quant_tensor=True)


def fc_layers(
    recipe: Recipe,
    widths: list[int],
    weight_bits: list[int],
    act_bits: list[int],
    n_classes: int,
) -> list[nn.Module]:
    """Fully connected layers ``widths[0] -> widths[1] -> ... -> n_classes``: one hidden block
    per ``act_bits`` entry (linear, BatchNorm, dropout, activation), then the output layer."""
    scaling = recipe.quant.scaling
    bias_quant = IntBias.let(bit_width=recipe.quant.bias_bits)
    bn = recipe.arch.batchnorm
    quantnet = recipe.quant.weight_quantizer == "quantnet"
    layers: list[nn.Module] = []
    for i, (wb, ab) in enumerate(zip(weight_bits, act_bits, strict=False)):
        if wb == 1 and quantnet:
            layers.append(QuantLinearQuantNet(widths[i], widths[i + 1], not bn, bias_quant))
        elif bn == "fold":
            layers.append(
                QuantLinearBNFold(widths[i], widths[i + 1], weight_quant(wb, scaling), bias_quant)
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
        layers.append(activation(ab, recipe))
    if weight_bits[-1] == 1 and quantnet:
        layers.append(QuantLinearQuantNet(widths[-1], n_classes, True, bias_quant))
    else:
        layers.append(
            QuantLinear(
                widths[-1],
                n_classes,
                bias=True,
                weight_quant=weight_quant(weight_bits[-1], scaling),
                bias_quant=bias_quant,
            )
        )
    return layers


class FC(nn.Module):
    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        self.bipolar_input = recipe.input.mode == "bipolar"
        self.input_quant = input_layer(recipe)
        widths = [math.prod(input_shape), *recipe.arch.hidden]
        self.layers = nn.Sequential(
            *fc_layers(recipe, widths, recipe.weight_bits, recipe.act_bits, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.bipolar_input:  # exported as Mul, Add before the BipolarQuant: host edge ops
            x = 2.0 * x - 1.0
        x = self.input_quant(x)
        return self.layers(x)

    def linear_layers(self) -> list[QuantLinear]:
        return [m for m in self.layers if isinstance(m, QuantLinear)]
