"""Quantization-aware training: recipes, bitwidth policies, quantizers, data, training."""
