"""Brevitas QAT on CPU: train a recipe, measure it, save checkpoint, metrics and QONNX."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from brevitas.nn import QuantConv2d, QuantLinear
from torch import nn

from compiler.build import CHECKPOINT, METRICS, QONNX, RECIPE, atomic_write, write_json, write_text  # noqa: E402
from compiler.errors import TaperError
from compiler.qat.data import Split, load
from compiler.qat.recipe import Recipe


@dataclass(frozen=True)
class TrainSettings:
    """What a checkpoint depends on besides the recipe: a change means retraining."""

    epochs: int
    seed: int
    data_dir: str | None

    def key(self, recipe: Recipe) -> dict:
        return {"recipe": recipe.name, "digest": recipe.digest(), **self.__dict__}

    @classmethod
    def resolve(cls, recipe: Recipe, epochs=None, seed=None, data_dir=None) -> TrainSettings:
        return cls(
            epochs=epochs or recipe.train.epochs,
            seed=recipe.seed if seed is None else seed,
            data_dir=str(data_dir) if data_dir else None,
        )


def build_model(recipe: Recipe, data: Split, seed: int) -> nn.Module:
    from compiler.qat.arch import build

    torch.manual_seed(seed)
    return build(recipe, data.input_shape, data.n_classes)


def layer_table(model: nn.Module, recipe: Recipe) -> list[dict]:
    """Per-layer shape, bitwidths and weight memory of a built model; a convolution's ``in``
    is its dot product's length (in_channels x kernel x kernel), with its kernel, stride and
    padding."""
    if recipe.arch.type == "rnn":  # one row per recurrent layer and the head
        return model.layer_table()
    rows = []
    layers = [m for m in model.modules() if isinstance(m, QuantLinear | QuantConv2d)]
    acts = [*recipe.act_bits, None]
    for i, (lay, wb) in enumerate(zip(layers, recipe.weight_bits, strict=True)):
        conv = {}
        if isinstance(lay, QuantConv2d):
            n_in, n_out = lay.weight[0].numel(), lay.out_channels
            conv = {
                "kernel": lay.kernel_size[0],
                "stride": lay.stride[0],
                "padding": lay.padding[0],
                "in_channels": lay.in_channels,
            }
        else:
            n_in, n_out = lay.in_features, lay.out_features
        rows.append(
            {
                "layer": i,
                "in": n_in,
                "out": n_out,
                **conv,
                "weight_bits": wb,
                "act_bits": acts[i],
                "weight_memory_bits": n_in * n_out * wb,
            }
        )
    return rows


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Logits of ``model`` in eval mode (float32)."""
    model.eval()
    out = [model(torch.from_numpy(x[i : i + batch])) for i in range(0, len(x), batch)]
    return torch.cat(out).numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x).argmax(1) == y).mean())


def fit(recipe: Recipe, model: nn.Module, data: Split, epochs: int, seed: int, progress=None):
    """Train ``model`` in place; ``progress(epoch, loss, acc)`` is called after each epoch."""
    if recipe.arch.type == "rnn":
        from compiler.qat.study import one_torch_thread

        # a recurrent step is a few small products: torch's thread pool costs more than it
        # gains (sequential MNIST: 87 s on one thread, > 10 min on two of a busy machine)
        with one_torch_thread():
            return _fit(recipe, model, data, epochs, seed, progress)
    return _fit(recipe, model, data, epochs, seed, progress)


def _fit(recipe: Recipe, model: nn.Module, data: Split, epochs: int, seed: int, progress=None):
    cfg = recipe.train
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(data.x_train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    loss_fn = nn.CrossEntropyLoss()
    x_all, y_all = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    annealed = [m for m in model.modules() if hasattr(m, "anneal")]  # QuantNet binarizers
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x_all)))
        total = 0.0
        for s in range(steps):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            for m in annealed:
                m.anneal((epoch * steps + s) / max(epochs * steps - 1, 1))
            opt.zero_grad()
            loss = loss_fn(model(x_all[idx]), y_all[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if progress is not None:
            acc = accuracy(model, data.x_holdout, data.y_holdout)
            progress(epoch + 1, total / len(x_all), acc)


def load_checkpoint(path: Path) -> dict:
    """A state dict saved by taper; anything else is refused without being executed."""
    try:
        sd = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise TaperError(f"{path}: checkpoint not found") from None
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError ... on foreign files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise TaperError(
            f"{path}: not a taper checkpoint (expected a weights-only state dict; {first})"
        ) from None
    if not isinstance(sd, dict):
        raise TaperError(f"{path}: not a taper checkpoint (expected a state dict)")
    return sd


def train_checkpoint(
    recipe: Recipe, out: Path, settings: TrainSettings, quiet: bool = False
) -> dict:
    """Train ``recipe``; write ``out``/recipe.yaml (the recipe as trained), checkpoint.pt and
    metrics.json; return the metrics."""
    data = load(
        recipe.dataset.name,
        seed=settings.seed,
        holdout=recipe.dataset.holdout,
        data_dir=Path(settings.data_dir) if settings.data_dir else None,
    )
    model = build_model(recipe, data, settings.seed)
    t0 = time.monotonic()
    _fit_with_progress(recipe, model, data, settings, quiet)
    seconds = time.monotonic() - t0
    table = layer_table(model, recipe)
    metrics = {
        "model": recipe.name,
        "accuracy": accuracy(model, data.x_holdout, data.y_holdout),
        "holdout_samples": len(data.x_holdout),
        "train_samples": len(data.x_train),
        "data": data.source,
        "epochs": settings.epochs,
        "seed": settings.seed,
        "train_seconds": round(seconds, 1),
        "input_shape": list(data.input_shape),
        "n_classes": int(data.n_classes),
        "input_bits": recipe.input.bits,
        "weight_bits": recipe.weight_bits,
        "act_bits": recipe.act_bits,
        "weight_memory_bits": sum(r["weight_memory_bits"] for r in table),
        "layers": table,
        "trained_from": settings.key(recipe),
    }
    out = Path(out)
    write_text(out / RECIPE, yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    atomic_write(out / CHECKPOINT, lambda p: torch.save(model.state_dict(), p))
    write_json(out / METRICS, metrics)
    _say(
        quiet,
        f"[taper] {recipe.name}: holdout accuracy {metrics['accuracy']:.2%}, "
        f"weight memory {metrics['weight_memory_bits']:,} bits",
    )
    return metrics


def trained_model(build: Path) -> tuple[nn.Module, Recipe, tuple[int, ...]]:
    """The Brevitas model of a build's recipe.yaml + checkpoint.pt, and its input shape."""
    import json

    from compiler.qat.recipe import load_recipe

    build = Path(build)
    recipe = load_recipe(build / RECIPE)
    metrics = json.loads((build / METRICS).read_text())
    shape = tuple(metrics["input_shape"])
    torch.manual_seed(0)
    from compiler.qat.arch import build as build_arch

    model = build_arch(recipe, shape, int(metrics["n_classes"]))
    model.load_state_dict(load_checkpoint(build / CHECKPOINT))
    return model, recipe, shape


def export_checkpoint(build: Path, out: Path) -> Path:
    """``build``'s trained model -> ``out``/model.onnx (QONNX)."""
    from compiler.qat.export import export_qonnx

    model, recipe, shape = trained_model(build)
    if recipe.arch.type == "rnn":  # the unrolled graph of the RNN contract, not Brevitas'
        from compiler.qat.export_rnn import export_rnn

        return export_rnn(model, Path(out) / QONNX)
    return export_qonnx(model, shape, Path(out) / QONNX)


def train(
    recipe: Recipe,
    out: Path,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    data_dir: Path | None = None,
    force: bool = False,
    quiet: bool = False,
) -> dict:
    """Train ``recipe`` into the build directory ``out`` (checkpoint, metrics, QONNX) and
    return the metrics; a checkpoint trained from the same recipe, epochs, seed and data is
    reused (the flow's train and export steps)."""
    from compiler import flow

    o = flow.Options(epochs=epochs, seed=seed, data_dir=str(data_dir) if data_dir else None)
    flow.run(
        out,
        flow.Source.from_recipe(recipe),
        o,
        until="export",
        force={"train"} if force else (),
        quiet=quiet,
    )
    return json.loads((Path(out) / METRICS).read_text())


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def _fit_with_progress(recipe, model, data, settings, quiet) -> None:
    if quiet:
        fit(recipe, model, data, settings.epochs, settings.seed)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cols = (
        TextColumn("[bold]train {task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  loss {task.fields[loss]:.3f}  holdout {task.fields[acc]:.2%}"),
        TimeElapsedColumn(),
    )
    with Progress(*cols) as bar:
        task = bar.add_task("", total=settings.epochs, name=recipe.name, loss=0.0, acc=0.0)

        def report(epoch: int, loss: float, acc: float) -> None:
            bar.update(task, completed=epoch, loss=loss, acc=acc)

        fit(recipe, model, data, settings.epochs, settings.seed, progress=report)
