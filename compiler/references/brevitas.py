"""The trained Brevitas model in eval mode (builds made from a recipe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler.ir.model import Model
from compiler.references.base import Inputs, Reference, RefOutput, output_to_int, register


def _trained(build: Path):
    from compiler.frontend.compile import load_record

    rec = load_record(build)
    return rec.recipe, rec.checkpoint


@register
class Brevitas(Reference):
    name = "brevitas"

    def unavailable(self, build: Path, m: Model) -> str | None:
        recipe, ckpt = _trained(build)
        if not recipe or not ckpt or not Path(ckpt).is_file():
            return "no recipe and checkpoint for this model"
        return None

    def run(self, build: Path, m: Model, inputs: Inputs) -> RefOutput:
        from compiler.qat.arch import build as build_arch
        from compiler.qat.data import INPUT_SHAPES
        from compiler.qat.recipe import load_recipe
        from compiler.qat.train import load_checkpoint, predict

        recipe_ref, ckpt = _trained(build)
        recipe = load_recipe(recipe_ref)
        # the shapes only, not the data (a user's CIFAR-10 need not be at hand): the
        # network's classes are the hardware's last outputs
        model = build_arch(recipe, INPUT_SHAPES[recipe.dataset.name], m.layers[-1].out_frame)
        model.load_state_dict(load_checkpoint(Path(ckpt)))
        r = predict(model, inputs.x.astype(np.float32))
        return RefOutput({m.layers[-1].name: output_to_int(m, r)})
