"""Brevitas network definitions, built from a validated recipe."""

from __future__ import annotations

from torch import nn

from compiler.qat.recipe import Recipe


def build(recipe: Recipe, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The Brevitas QAT network a recipe describes, for inputs of ``input_shape`` (C, H, W)."""
    if recipe.arch.type == "fc":
        from compiler.qat.arch.fc import FC

        return FC(recipe, input_shape, n_classes)
    if recipe.arch.type == "cnn":
        from compiler.qat.arch.cnn import CNN

        return CNN(recipe, input_shape, n_classes)
    if recipe.arch.type == "rnn":
        from compiler.qat.arch.rnn import RNN

        return RNN(recipe, input_shape, n_classes)
    raise ValueError(f"unknown architecture {recipe.arch.type!r}")
