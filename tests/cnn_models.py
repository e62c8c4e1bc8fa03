"""Random small Brevitas CNNs for the property test: an unsigned input quantizer (2..8 bits),
1..3 convolutions (square kernels 1..5, stride 1..2, zero padding 0..2; weights 1..8 bits,
bipolar at 1), each with BatchNorm (random statistics and affine parameters, some scales
negative) and an activation of 1..8 bits (bipolar at 1, unsigned or signed above), a 2x2 max
pool after some, then one fully connected layer. Shapes are drawn so that every kernel fits
its (padded) image. A padded convolution never takes a bipolar input: FINN pads a bipolar
stream with -1 where Brevitas pads 0, and taper refuses that (tests/test_cnn_frontend.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from torch import nn

from compiler.qat.quantizers import act_quant, input_quant, weight_quant


@dataclass
class ConvSpec:
    channels: int
    kernel: int
    stride: int
    pad: int
    wbits: int
    abits: int
    signed: bool
    pool: bool


@dataclass
class CNNSpec:
    in_channels: int
    size: int
    in_bits: int
    convs: list[ConvSpec] = field(default_factory=list)
    fc_wbits: int = 4
    classes: int = 5

    def __str__(self) -> str:
        c = ", ".join(
            f"conv{s.channels} k{s.kernel} s{s.stride} p{s.pad} w{s.wbits} "
            f"a{s.abits}{'s' if s.signed else ''}{' pool' if s.pool else ''}"
            for s in self.convs
        )
        return (
            f"{self.in_channels}x{self.size}x{self.size} in{self.in_bits}: {c}, fc w{self.fc_wbits}"
        )


def random_spec(seed: int) -> CNNSpec:
    rng = random.Random(seed)
    spec = CNNSpec(rng.randint(1, 3), rng.randint(6, 10), rng.randint(2, 8))
    size, bipolar_in = spec.size, False
    for _ in range(rng.randint(1, 3)):
        pad = 0 if bipolar_in else rng.randint(0, 2)
        kernel = rng.randint(1, min(5, size + 2 * pad))
        stride = rng.randint(1, 2)
        out = (size + 2 * pad - kernel) // stride + 1
        abits = rng.choice((1, 2, 3, 4, 8))
        pool = out >= 4 and rng.random() < 0.4
        spec.convs.append(
            ConvSpec(
                rng.randint(2, 8),
                kernel,
                stride,
                pad,
                rng.choice((1, 2, 3, 4, 8)),
                abits,
                abits > 1 and rng.random() < 0.3,
                pool,
            )
        )
        size = out // 2 if pool else out
        bipolar_in = abits == 1
        if size < 2:
            break
    spec.fc_wbits = rng.choice((1, 2, 4, 8))
    return spec


class SpecCNN(nn.Module):
    def __init__(self, spec: CNNSpec) -> None:
        super().__init__()
        self.q = QuantIdentity(act_quant=input_quant(spec.in_bits), return_quant_tensor=True)
        layers: list[nn.Module] = []
        c, size = spec.in_channels, spec.size
        for s in spec.convs:
            layers += [
                QuantConv2d(
                    c,
                    s.channels,
                    s.kernel,
                    s.stride,
                    s.pad,
                    bias=False,
                    weight_quant=weight_quant(s.wbits),
                ),
                nn.BatchNorm2d(s.channels),
            ]
            if s.abits == 1 or s.signed:
                layers.append(
                    QuantIdentity(
                        act_quant=act_quant(s.abits, signed=s.signed), return_quant_tensor=True
                    )
                )
            else:
                layers.append(QuantReLU(act_quant=act_quant(s.abits), return_quant_tensor=True))
            size = (size + 2 * s.pad - s.kernel) // s.stride + 1
            if s.pool:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c = s.channels
        self.features = nn.Sequential(*layers)
        self.fc = QuantLinear(
            c * size * size, spec.classes, bias=False, weight_quant=weight_quant(spec.fc_wbits)
        )

    def forward(self, x):
        return self.fc(self.features(self.q(x)).flatten(1))


def random_batchnorm(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """BatchNorm statistics of a random batch, random affine parameters (a fifth of the
    scales negative), in eval mode: every activation uses its range."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = None  # the statistics of exactly this batch
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x)
    g = torch.Generator().manual_seed(seed)
    for bn in bns:
        c = bn.num_features
        sign = torch.where(torch.rand(c, generator=g) < 0.2, -1.0, 1.0)
        bn.weight.data = sign * (0.5 + torch.rand(c, generator=g))
        bn.bias.data = 0.3 * torch.randn(c, generator=g)
    return model.eval()


def random_cnn(seed: int) -> tuple[nn.Module, tuple[int, int, int], CNNSpec]:
    spec = random_spec(seed)
    torch.manual_seed(seed)
    shape = (spec.in_channels, spec.size, spec.size)
    model = random_batchnorm(SpecCNN(spec), torch.rand(64, *shape), seed)
    return model, shape, spec
