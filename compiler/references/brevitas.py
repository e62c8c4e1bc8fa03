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
        from compiler.qat.data import load
        from compiler.qat.recipe import load_recipe
        from compiler.qat.train import load_checkpoint, predict

        recipe_ref, ckpt = _trained(build)
        recipe = load_recipe(recipe_ref)
        split = load(recipe.dataset.name, seed=recipe.seed, holdout=recipe.dataset.holdout)
        model = build_arch(recipe, split.input_shape, split.n_classes)
        model.load_state_dict(load_checkpoint(Path(ckpt)))
        r = predict(model, inputs.x.astype(np.float32))
        return RefOutput({m.layers[-1].name: output_to_int(m, r)})
