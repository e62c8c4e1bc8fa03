"""What the training-only ``QuantLinear`` variants (folded BN, QuantNet binarizer) share."""

from __future__ import annotations

import copy

from brevitas.nn import QuantLinear
from torch import nn


def quant_linear(layer: QuantLinear, quant_input, weight, bias):
    """``layer``'s quantized linear forward with ``weight`` and ``bias`` in place of its own
    parameters (quantized by its own weight and bias quantizers)."""
    quant_weight = layer.weight_quant(weight)
    quant_bias = None if bias is None else layer.bias_quant(bias, quant_input, quant_weight)
    out = layer.inner_forward_impl(quant_input, quant_weight, quant_bias)
    return layer.pack_output(layer.output_quant(out))


def for_export(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every training-only layer (folded BN, QuantNet binarizer)
    replaced by the plain ``QuantLinear`` its ``to_plain()`` gives, which computes the same."""
    if not any(hasattr(m, "to_plain") for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if hasattr(child, "to_plain"):
                setattr(parent, name, child.to_plain())
    return model
