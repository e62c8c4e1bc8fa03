"""Automatic pruning of quantized networks (after Guerra et al. 2020, arXiv 2002.00523).

Criterion: a hidden neuron (an output channel of a quantized layer: a fully connected
layer's output or a convolution's output channel) is redundant when its *quantized* weights
carry little: importance = (L1 of its quantized incoming weights, in integer levels) x (L1 of
its quantized outgoing weights: every kernel tap of the next convolution, or every pixel of
the channel in the fully connected layer after the flatten). Neurons whose low-precision
weights all round to zero score 0 and go first. Per-layer pruning ratios are chosen by Bayesian
optimisation (Optuna TPE): each trial prunes every hidden layer by its ratio, copies the
surviving weights from the trained model, fine-tunes, and is feasible when its validation
accuracy is within ``max_drop`` of the unpruned model's; the objective is weight memory. The
best feasible trial is fine-tuned on the whole training set and written out as a recipe,
checkpoint and QONNX model whose compiled IR has the smaller layers.

The validation set is the last ``VAL`` images of the training split (the holdout set is only
used to report the final accuracy).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from brevitas.nn import QuantConv2d, QuantLinear

from compiler.build import atomic_write, write_json, write_text
from compiler.errors import TaperError
from compiler.qat.data import Split, load
from compiler.qat.recipe import Recipe
from compiler.qat.study import one_torch_thread
from compiler.qat.train import (
    CHECKPOINT,
    METRICS,
    QONNX,
    accuracy,
    build_model,
    fit,
    layer_table,
)

VAL = 500
RATIO_MAX = 0.9


def split_validation(data: Split, n: int = VAL) -> tuple[Split, Split]:
    """(training minus validation, validation as the holdout) from a training split."""
    n = min(n, len(data.x_train) // 5)
    fit_part = dataclasses.replace(data, x_train=data.x_train[:-n], y_train=data.y_train[:-n])
    val = dataclasses.replace(data, x_holdout=data.x_train[-n:], y_holdout=data.y_train[-n:])
    return fit_part, val


def _weight_layers(model) -> list[QuantLinear | QuantConv2d]:
    """The quantized linear and convolution layers of ``model.layers``, in order."""
    return [m for m in model.layers if isinstance(m, QuantLinear | QuantConv2d)]


def _int_weights(layer: QuantLinear) -> torch.Tensor:
    with torch.no_grad():
        if hasattr(layer, "folded"):  # BN folded into the weights: rank what is deployed
            w, _ = layer.folded(layer.weight)
            q = layer.weight_quant(w)
        elif hasattr(layer, "pre_binary"):
            q = layer.weight_quant(layer.pre_binary())
        else:
            q = layer.quant_weight()
        return (q.value / q.scale).round().abs()


def importance(model) -> list[np.ndarray]:
    """Per hidden layer, each neuron's importance (see the module docstring)."""
    ints = [_int_weights(lay) for lay in _weight_layers(model)]
    out = []
    for i in range(len(ints) - 1):
        incoming = ints[i].flatten(1).sum(1)
        # the next layer's inputs grouped by neuron: kernel taps, or the pixels of a channel
        # after the flatten (channel-major)
        outgoing = ints[i + 1].sum(0).reshape(len(incoming), -1).sum(1)
        out.append((incoming * outgoing).numpy().astype(np.float64))
    return out


def keep_indices(scores: list[np.ndarray], ratios: list[float]) -> list[np.ndarray]:
    """The surviving neurons of each hidden layer, in their original order."""
    out = []
    for s, r in zip(scores, ratios, strict=True):
        n = max(1, int(round(len(s) * (1 - r))))
        # stable: among equal scores, keep the earlier neuron
        order = np.argsort(-s, kind="stable")[:n]
        out.append(np.sort(order))
    return out


def widths(recipe: Recipe) -> list[int]:
    """The prunable widths: each convolution's channels, then the hidden layers'."""
    convs = recipe.arch.conv if recipe.arch.type == "cnn" else []
    return [c.channels for c in convs] + list(recipe.arch.hidden)


def pruned_recipe(recipe: Recipe, keep: list[np.ndarray], name: str) -> Recipe:
    d = recipe.model_dump(mode="json")
    d["name"] = name
    d["description"] = f"{recipe.name} pruned to hidden widths {[len(k) for k in keep]}"
    n_conv = len(d["arch"].get("conv", []))
    for c, k in zip(d["arch"].get("conv", []), keep, strict=False):
        c["channels"] = len(k)
    d["arch"]["hidden"] = [len(k) for k in keep[n_conv:]]
    d["quant"]["weights"] = {"policy": "explicit", "bits": recipe.weight_bits}
    if recipe.act_bits:
        d["quant"]["activations"] = {"policy": "explicit", "bits": recipe.act_bits}
    return Recipe.model_validate(d)


def transfer(base, small, keep: list[np.ndarray]) -> None:
    """Copy the surviving weights (and BN statistics, biases) of ``base`` into ``small``."""
    src = base.state_dict()
    # which hidden layer's neurons each module's tensors follow, by position in the Sequential
    owner, li = {}, -1
    for name, mod in base.layers.named_children():
        if isinstance(mod, QuantLinear | QuantConv2d):
            li += 1
        owner[name] = li
    base_widths = [lay.weight.shape[0] for lay in _weight_layers(base)]
    n_hidden = len(keep)
    # Keys a fresh model lacks (Brevitas creates learned activation scales on first use) are
    # per-tensor: copied as they are.
    target = small.state_dict()
    new = {k: v for k, v in src.items() if k not in target}
    for key, t in target.items():
        s = src[key]
        if s.shape == t.shape:
            new[key] = s
            continue
        parts = key.split(".")
        i = owner.get(parts[1], -1) if parts[0] == "layers" else -1
        out_idx = torch.from_numpy(keep[i]) if 0 <= i < n_hidden else None
        in_idx = torch.from_numpy(keep[i - 1]) if 1 <= i <= n_hidden else None
        v = s
        if out_idx is not None and v.shape[0] != t.shape[0]:
            v = v.index_select(0, out_idx)
        if v.dim() > 1 and in_idx is not None and v.shape[1] != t.shape[1]:
            # after the flatten each channel is `per` consecutive inputs (its pixels)
            per = v.shape[1] // base_widths[i - 1]
            v = v.index_select(1, (in_idx[:, None] * per + torch.arange(per)).reshape(-1))
        if v.shape != t.shape:
            raise TaperError(f"pruning: cannot map {key} {tuple(s.shape)} -> {tuple(t.shape)}")
        new[key] = v
    small.load_state_dict(new)


def weight_bits(recipe: Recipe, input_shape: tuple[int, ...], n_classes: int) -> int:
    return recipe.weight_memory_bits(tuple(input_shape), n_classes)


# ---------------------------------------------------------------------------- the study


def _train_base(recipe: Recipe, fit_part: Split, seed: int, d: Path, quiet: bool):
    """The unpruned model, trained without the validation images (reused when present)."""
    model = build_model(recipe, fit_part, seed)
    key = {"digest": recipe.digest(), "seed": seed, "train": len(fit_part.x_train)}
    marker = d / "base.json"
    if marker.is_file() and json.loads(marker.read_text()) == key:
        model.load_state_dict(torch.load(d / CHECKPOINT, weights_only=True))
        return model
    if not quiet:
        print(f"[taper] training the unpruned {recipe.name} ({recipe.train.epochs} epochs)")
    fit(recipe, model, fit_part, recipe.train.epochs, seed)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / CHECKPOINT, lambda p: torch.save(model.state_dict(), p))
    write_json(marker, key)
    return model


def _context(recipe_path: str, base_dir: str, seed: int):
    from compiler.qat.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    data = load(recipe.dataset.name, seed=seed, holdout=recipe.dataset.holdout)
    base = build_model(recipe, data, seed)
    base.load_state_dict(torch.load(Path(base_dir) / CHECKPOINT, weights_only=True))
    return recipe, data, base


def objective(
    trial, recipe_path: str, base_dir: str, seed: int, base_val: float, max_drop: float, ft: int
):
    """One pruning trial (runs in any worker process)."""
    recipe, data, base = _context(recipe_path, base_dir, seed)
    ratios = [
        trial.suggest_float(f"ratio_{i}", 0.0, RATIO_MAX, step=0.05)
        for i in range(recipe.arch.n_hidden)
    ]
    keep = keep_indices(importance(base), ratios)
    small_recipe = pruned_recipe(recipe, keep, recipe.name + "_trial")
    fit_part, val = split_validation(data)
    small = build_model(small_recipe, data, seed)
    transfer(base, small, keep)
    fit(small_recipe, small, fit_part, ft, seed)
    acc = accuracy(small, val.x_holdout, val.y_holdout)
    trial.set_user_attr("val_accuracy", acc)
    trial.set_user_attr("hidden", [len(k) for k in keep])
    trial.set_constraint("accuracy_drop", base_val - max_drop - acc)
    return weight_bits(small_recipe, data.input_shape, data.n_classes)


@one_torch_thread()
def prune(
    recipe: Recipe,
    recipe_path: str,
    out: Path,
    max_drop: float,
    trials: int,
    workers: int = 1,
    storage: str | None = None,
    seed: int | None = None,
    finetune_epochs: int | None = None,
    quiet: bool = False,
) -> dict:
    """Prune ``recipe``'s trained model into ``out``; returns the result's metrics."""
    from compiler.qat import study as S
    from compiler.qat.export import export_qonnx

    if recipe.arch.type == "rnn":
        raise TaperError(f"{recipe.name}: pruning takes fc and cnn recipes, not recurrent ones")
    if not recipe.arch.n_hidden:
        raise TaperError(f"{recipe.name}: pruning needs hidden layers (arch.hidden or arch.conv)")
    seed = recipe.seed if seed is None else seed
    out = Path(out)
    if storage:
        S.check_storage(storage)
    out.mkdir(parents=True, exist_ok=True)
    base_dir = out / "base"
    data = load(recipe.dataset.name, seed=seed, holdout=recipe.dataset.holdout)
    fit_part, val = split_validation(data)
    base = _train_base(recipe, fit_part, seed, base_dir, quiet)
    base_val = accuracy(base, val.x_holdout, val.y_holdout)
    base_metrics = {"accuracy": accuracy(base, data.x_holdout, data.y_holdout)}
    ft = finetune_epochs or max(2, recipe.train.epochs // 4)
    args = {
        "recipe_path": str(Path(recipe_path).resolve())
        if Path(recipe_path).suffix in (".yaml", ".yml")
        else recipe_path,
        "base_dir": str(base_dir.resolve()),
        "seed": seed,
        "base_val": base_val,
        "max_drop": max_drop,
        "ft": ft,
    }
    url = S.storage_url(out, storage)
    study = S.run(
        "compiler.qat.prune:objective",
        args,
        f"prune-{recipe.name}-seed{seed}-drop{max_drop:g}",
        url,
        ["minimize"],
        trials,
        workers,
        seed,
        constrained=True,
        quiet=quiet,
        label=f"prune {recipe.name}",
    )
    best = S.best_feasible(study)
    if best is None:
        raise TaperError(
            f"{recipe.name}: no trial kept validation accuracy within {max_drop:g} of "
            f"{base_val:.2%}; raise --max-accuracy-drop or --trials"
        )
    ratios = [best.params[f"ratio_{i}"] for i in range(recipe.arch.n_hidden)]
    keep = keep_indices(importance(base), ratios)
    final = pruned_recipe(recipe, keep, recipe.name + "_pruned")
    model = build_model(final, data, seed)
    transfer(base, model, keep)
    fit(final, model, data, ft, seed)  # fine-tune on the whole training split
    n_in = data.input_shape
    metrics = {
        "model": final.name,
        "pruned_from": recipe.name,
        "accuracy": accuracy(model, data.x_holdout, data.y_holdout),
        "base_accuracy": base_metrics["accuracy"],
        "val_accuracy": best.user_attrs["val_accuracy"],
        "base_val_accuracy": base_val,
        "max_accuracy_drop": max_drop,
        "hidden": final.arch.hidden,
        "base_hidden": recipe.arch.hidden,
        "widths": widths(final),
        "base_widths": widths(recipe),
        "ratios": ratios,
        "weight_memory_bits": weight_bits(final, n_in, data.n_classes),
        "base_weight_memory_bits": weight_bits(recipe, n_in, data.n_classes),
        "best_trial": best.number,
        "trials": len(study.trials),
        "finetune_epochs": ft,
        "seed": seed,
        "layers": layer_table(model, final),
    }
    doc = final.model_dump(mode="json", exclude_defaults=False)
    write_text(out / "recipe.yaml", yaml.safe_dump(doc, sort_keys=False))
    atomic_write(out / CHECKPOINT, lambda p: torch.save(model.state_dict(), p))
    export_qonnx(model, data.input_shape, out / QONNX)
    write_json(out / METRICS, metrics)
    if not quiet:
        print(
            f"[taper] {final.name}: widths {widths(recipe)} -> {widths(final)}, weight "
            f"memory {metrics['base_weight_memory_bits']:,} -> {metrics['weight_memory_bits']:,}"
            f" bits, holdout {metrics['base_accuracy']:.2%} -> {metrics['accuracy']:.2%} -> {out}"
        )
    return json.loads(json.dumps(metrics))
