"""Quantized LSTM and GRU over image rows (HitNet, Wang et al. NeurIPS 2018).

An image (N, 1, T, F) is read row by row: T time steps of F pixels, quantized by an unsigned
input quantizer. Each layer computes its gates from the concatenation [x_t; h_{t-1}] with one
matrix (columns [i | f | o | g] for an LSTM, [r | z] plus the candidate's own matrix for a
GRU), with h_{-1} = 0 and c_{-1} = 0, and exactly the dataflow of the export contract
(compiler/qat/export_rnn.py):

  LSTM  i, f, o = Q_gate(sigmoid(s * pre)), g = Q_cand(tanh(s * pre))
        c = Q_cell(f * c + i * g); h = Q_hidden(o * Q_cell_act(tanh(c)))
  GRU   r, z = Q_gate(sigmoid(s * pre)); rh = Q_hidden(r * h)
        n = Q_cand(tanh(s * (Wn [x; rh] + bn))); h = Q_hidden((1 - z) * n + z * h)

``s`` is HitNet's sloping factor: the paper writes sigma(x / lambda) with lambda < 1, so
s = 1 / lambda > 1 makes the gates steeper (closer to the ternary levels they are quantized
to); it does not apply to tanh(c). A classifier on the last layer's last h gives the logits.

In eval mode the whole network runs in float64: the gate sums of ternary weights (a float
alpha per gate) times power-of-two activations are exact in float64 but rounded in float32,
so float64 makes every quantizer decision the one qonnx's float64 executor (and the hardware's
integer thresholds) take. Training runs in float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from brevitas.nn import QuantLinear
from torch import nn

from compiler.qat.hitnet import (
    ActQuant,
    act_mode,
    cell_spec,
    gate_spec,
    input_spec,
    quantize_weights,
    tanh_spec,
)
from compiler.qat.quantizers import weight_quant
from compiler.qat.recipe import Recipe, RNNArch


class RNNLayer(nn.Module):
    """One LSTM or GRU layer of ``n_in`` inputs and ``hidden`` units."""

    def __init__(self, arch: RNNArch, n_in: int, hidden: int) -> None:
        super().__init__()
        self.cell, self.n_in, self.hidden = arch.cell, n_in, hidden
        self.quantizer, self.bits = arch.quantizer, arch.bits
        # the float32 value the export stores, so that float64 eval multiplies by the same
        self.slope = float(np.float32(arch.slope))
        g = 4 if arch.cell == "lstm" else 2
        bound = 1.0 / math.sqrt(hidden)  # torch's nn.LSTM/GRU initialization
        self.W = nn.Parameter(torch.empty(n_in + hidden, g * hidden).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.zeros(g * hidden))
        if arch.cell == "lstm":
            with torch.no_grad():  # forget gate open at the start: gradients reach far back
                self.b[hidden : 2 * hidden] = 1.0
        else:
            self.Wn = nn.Parameter(torch.empty(n_in + hidden, hidden).uniform_(-bound, bound))
            self.bn = nn.Parameter(torch.zeros(hidden))
        mode, b = act_mode(arch.quantizer), arch.bits
        self.q_gate = ActQuant(gate_spec(b.gate), mode)
        self.q_cand = ActQuant(tanh_spec(b.cand), mode)
        self.q_hidden = ActQuant(tanh_spec(b.hidden), mode)
        if arch.cell == "lstm":
            self.q_cell = ActQuant(cell_spec(b.cell), mode)
            self.q_cell_act = ActQuant(tanh_spec(b.cell_act), mode)

    def weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Quantized matrices as the forward pass uses them, with their per-column scales:
        ``W`` ([i|f|o|g] or [r|z]) and for a GRU ``Wn``; one scale per gate block."""
        g = 4 if self.cell == "lstm" else 2
        out = {"W": quantize_weights(self.W, self.quantizer, self.bits.weight, g)}
        if self.cell == "gru":
            out["Wn"] = quantize_weights(self.Wn, self.quantizer, self.bits.weight, 1)
        return out

    def forward(self, xs: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        """(N, T, n_in) -> (N, T, hidden): h_t of every step. ``trace`` (if given) receives
        every quantized intermediate per step under the export's tensor names."""
        n, steps, _ = xs.shape
        dt, hid = xs.dtype, self.hidden
        w = {k: v.to(dt) for k, (v, _) in self.weights().items()}
        b = self.b.to(dt)
        h = xs.new_zeros(n, hid)
        c = xs.new_zeros(n, hid)
        hs = []
        for t in range(steps):
            pre = (torch.cat([xs[:, t], h], 1) @ w["W"] + b) * self.slope
            if self.cell == "lstm":
                gates = self.q_gate(torch.sigmoid(pre[:, : 3 * hid]))
                i, f, o = gates[:, :hid], gates[:, hid : 2 * hid], gates[:, 2 * hid :]
                g = self.q_cand(torch.tanh(pre[:, 3 * hid :]))
                c = self.q_cell(f * c + i * g)
                tc = self.q_cell_act(torch.tanh(c))
                h = self.q_hidden(o * tc)
                vals = {"i": i, "f": f, "o": o, "g": g, "c": c, "tc": tc, "h": h}
            else:
                gates = self.q_gate(torch.sigmoid(pre))
                r, z = gates[:, :hid], gates[:, hid:]
                rh = self.q_hidden(r * h)
                pn = (torch.cat([xs[:, t], rh], 1) @ w["Wn"] + self.bn.to(dt)) * self.slope
                nc = self.q_cand(torch.tanh(pn))
                h = self.q_hidden((1 - z) * nc + z * h)
                vals = {"r": r, "z": z, "rh": rh, "n": nc, "h": h}
            if trace is not None:
                for k, v in vals.items():
                    trace.setdefault(k, []).append(v)
            hs.append(h)
        return torch.stack(hs, 1)


class Head(nn.Module):
    """The classifier on the last hidden state: ternary (TTQ for hitnet, round to nearest at
    scale max|W| for uniform) at 2 bits, Brevitas' power-of-two weights above; float bias."""

    def __init__(self, arch: RNNArch, n_in: int, n_classes: int) -> None:
        super().__init__()
        self.quantizer, self.bits = arch.quantizer, arch.bits.head
        self.brevitas = arch.quantizer != "float" and self.bits > 2
        if self.brevitas:
            self.linear = QuantLinear(
                n_in, n_classes, bias=True, weight_quant=weight_quant(self.bits), bias_quant=None
            )
        else:
            self.linear = nn.Linear(n_in, n_classes)

    def weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(H, C) weights as used, and their per-column scale (None in float)."""
        if self.brevitas:
            qw = self.linear.quant_weight()
            scale = qw.scale.reshape(-1).expand(self.linear.out_features)
            return qw.value.t(), scale.detach()
        w = self.linear.weight.t()
        return quantize_weights(w, self.quantizer, self.bits, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w, _ = self.weights()
        return h @ w.to(h.dtype) + self.linear.bias.to(h.dtype)


class RNN(nn.Module):
    """Input quantizer, stacked recurrent layers over image rows, classifier head."""

    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        arch = recipe.arch
        self.arch, self.input_shape, self.n_classes = arch, tuple(input_shape), n_classes
        self.steps, self.features = input_shape[-2], input_shape[-1]
        mode = "none" if arch.quantizer == "float" else "round"
        self.input_quant = ActQuant(input_spec(recipe.input.bits), mode)
        self.input_bits = recipe.input.bits
        sizes = [self.features, *arch.hidden]
        self.layers = nn.ModuleList(
            RNNLayer(arch, sizes[i], sizes[i + 1]) for i in range(len(arch.hidden))
        )
        self.head = Head(arch, sizes[-1], n_classes)

    def forward(self, x: torch.Tensor, trace: list[dict] | None = None) -> torch.Tensor:
        """Logits of images (N, 1, T, F) (or (N, T, F)); ``trace`` receives one dict of
        quantized intermediates per layer (lists over steps) and the quantized input."""
        in_dtype = x.dtype
        if not self.training:  # exact: see the module docstring
            x = x.double()
        xs = self.input_quant(x.reshape(x.shape[0], self.steps, self.features))
        for i, layer in enumerate(self.layers):
            t = None
            if trace is not None:
                t = {"xq": xs} if i == 0 else {}
                trace.append(t)
            xs = layer(xs, t)
        return self.head(xs[:, -1]).to(in_dtype)

    def layer_table(self) -> list[dict]:
        """One row per recurrent layer and the head: shape, bits, weight memory."""
        rows = []
        b = self.arch.bits
        for i, lay in enumerate(self.layers):
            n_in = lay.n_in + lay.hidden
            n_out = lay.W.shape[1] + (lay.hidden if lay.cell == "gru" else 0)
            rows.append(
                {
                    "layer": i,
                    "kind": lay.cell,
                    "in": n_in,
                    "out": n_out,
                    "hidden": lay.hidden,
                    "steps": self.steps,
                    "weight_bits": b.weight,
                    "act_bits": b.hidden,
                    "tensor_bits": b.model_dump(),
                    "weight_memory_bits": n_in * n_out * b.weight,
                }
            )
        c_in = self.layers[-1].hidden
        rows.append(
            {
                "layer": len(self.layers),
                "kind": "head",
                "in": c_in,
                "out": self.n_classes,
                "weight_bits": b.head,
                "act_bits": None,
                "weight_memory_bits": c_in * self.n_classes * b.head,
            }
        )
        return rows
