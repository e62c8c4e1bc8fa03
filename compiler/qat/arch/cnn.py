"""Convolutional networks (BNN-PYNQ's CNV and smaller ones) with per-layer bitwidths.

Each convolution is QuantConv2d -> BatchNorm2d -> activation quantizer -> (2x2 max pool),
as Brevitas' ``bnn_pynq`` CNV; the feature map is flattened (channel-major, as ONNX's
Flatten) into the fully connected layers the ``fc`` architecture builds. Everything after the
input quantizer sits in one ``layers`` Sequential as in :class:`~compiler.qat.arch.fc.FC`, so
export, pruning and the layer table read both the same way.
"""

from __future__ import annotations

import torch
from brevitas.nn import QuantConv2d
from brevitas.quant.scaled_int import IntBias
from torch import nn

from compiler.qat.arch.fc import activation, fc_layers, input_layer
from compiler.qat.quantizers import weight_quant
from compiler.qat.recipe import Recipe


class CNN(nn.Module):
    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        arch = recipe.arch
        self.bipolar_input = recipe.input.mode == "bipolar"
        self.input_quant = input_layer(recipe)
        bias_quant = IntBias.let(bit_width=recipe.quant.bias_bits)
        wbits, abits = recipe.weight_bits, recipe.act_bits
        channels, h, w = input_shape
        layers: list[nn.Module] = []
        for i, c in enumerate(arch.conv):
            layers.append(
                QuantConv2d(
                    channels,
                    c.channels,
                    c.kernel,
                    stride=c.stride,
                    padding=c.padding,
                    bias=not arch.batchnorm,
                    weight_quant=weight_quant(wbits[i], recipe.quant.scaling),
                    bias_quant=bias_quant,
                )
            )
            if arch.batchnorm:
                layers.append(nn.BatchNorm2d(c.channels))
            layers.append(activation(abits[i], recipe))
            channels = c.channels
            h, w = c.conv_size(h, w)
            if c.pool:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        layers.append(nn.Flatten())
        n = len(arch.conv)
        widths = [channels * h * w, *arch.hidden]
        layers += fc_layers(recipe, widths, wbits[n:], abits[n:], n_classes)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bipolar_input:  # exported as Mul, Add before the BipolarQuant: host edge ops
            x = 2.0 * x - 1.0
        return self.layers(self.input_quant(x))
