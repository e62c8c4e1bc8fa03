"""Hardware-aware mixed-precision search (after Rakka et al., "Mixed-Precision Neural Networks:
A Survey"): per-layer bits under a budget of weight memory or LUTs.

The search space is one bitwidth per layer (its weights and, for a hidden layer, the
activation after it) from ``CANDIDATES``. Two searches run on the same data:

- sensitivity + exact allocation: a uniform 8-bit reference is trained once; a layer's
  sensitivity to b bits is the increase of the validation loss when only that layer's weights
  are re-quantized to b bits (loss perturbation, no retraining); dynamic programming over the
  layers then finds the allocation of least total sensitivity within the budget (exact: every
  non-dominated (cost, sensitivity) state is kept);
- multi-objective Bayesian optimisation (Optuna TPE, validation accuracy up, cost down), each
  trial a model trained with its bits.

Every candidate is trained on the training split minus a validation part and scored on that
validation part. The best feasible one is retrained on the whole training split and written
out; uniform and progressive (linearly decreasing) bitwidths at the same budget are trained
the same way for comparison and drawn with all trials in ``pareto.png``.

Costs: ``weight_bits`` is exact (sum of in x out x bits; a convolution's in is
in_channels x kernel x kernel). ``lut`` is FINN's LUT estimate of
the compiled model (weights do not matter to it, so an untrained model is compiled); the
dynamic programming uses per-layer LUTs measured at uniform bitwidths (a layer's input bits
are approximated by its own), and every reported cost is measured on the real configuration.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from compiler.build import atomic_write, write_json, write_text
from compiler.errors import TaperError
from compiler.qat.data import Split, load
from compiler.qat.prune import split_validation
from compiler.qat.recipe import Recipe, load_recipe
from compiler.qat.study import one_torch_thread
from compiler.qat.train import CHECKPOINT, METRICS, QONNX, accuracy, build_model, fit

CANDIDATES = (2, 3, 4, 5, 6, 8)
KINDS = ("weight_bits", "lut")


def parse_budget(text: str) -> tuple[str, float]:
    kind, _, value = text.partition("=")
    try:
        v = float(value)
    except ValueError:
        v = -1.0
    if kind not in KINDS or v <= 0:
        raise TaperError(f"--budget {text!r}: expected KIND=VALUE with KIND in {KINDS}, VALUE > 0")
    return kind, v


def with_bits(recipe: Recipe, bits: list[int], name: str | None = None) -> Recipe:
    d = recipe.model_dump(mode="json")
    d["name"] = name or recipe.name
    d["quant"]["weights"] = {"policy": "explicit", "bits": list(bits)}
    if recipe.arch.n_hidden:
        d["quant"]["activations"] = {"policy": "explicit", "bits": list(bits[:-1])}
    return Recipe.model_validate(d)


# ---------------------------------------------------------------------------- costs


def weight_bits_cost(recipe: Recipe, data: Split, bits: list[int]) -> float:
    dims = recipe.layer_dims(data.input_shape, data.n_classes)
    return float(sum(n_in * n_out * b for (n_in, n_out), b in zip(dims, bits, strict=True)))


_LUTS: dict[tuple, list[float]] = {}  # (recipe digest, bits) -> per-layer LUTs: one compile each


def lut_cost(recipe: Recipe, data: Split, bits: list[int], per_layer: bool = False):
    """FINN's LUT estimate of the compiled (untrained) model with these bits."""
    key = (recipe.digest(), tuple(bits))
    if key not in _LUTS:
        _LUTS[key] = _compiled_luts(recipe, data, bits)
    luts = _LUTS[key]
    return list(luts) if per_layer else float(sum(luts))


def _compiled_luts(recipe: Recipe, data: Split, bits: list[int]) -> list[float]:
    from compiler.frontend.compile import CompileOptions, compile_model
    from compiler.qat.export import export_qonnx

    r = with_bits(recipe, bits)
    model = build_model(r, data, 0)
    with tempfile.TemporaryDirectory() as tmp:
        export_qonnx(model, data.input_shape, Path(tmp) / "m.onnx")
        m = compile_model(
            Path(tmp) / "m.onnx",
            Path(tmp) / "hw",
            CompileOptions(
                board=recipe.target.board,
                clock_mhz=recipe.target.clock_mhz,
                target_fps=recipe.target.fps,
            ),
            quiet=True,
        )
    return [float(m.estimates[layer.name]["LUT"]) for layer in m.layers]


def cost(kind: str, recipe: Recipe, data: Split, bits: list[int]) -> float:
    return (weight_bits_cost if kind == "weight_bits" else lut_cost)(recipe, data, bits)


# ---------------------------------------------------------------------------- allocation


def allocate(sens: np.ndarray, costs: np.ndarray, budget: float) -> list[int] | None:
    """Exact: indices (one per layer) minimising sum sens[l, i] with sum costs[l, i] <= budget.

    Dynamic programming over layers keeping every non-dominated (cost, sensitivity) state.
    """
    states = {(): (0.0, 0.0)}  # choice tuple -> (cost, sensitivity)
    for layer in range(sens.shape[0]):
        nxt = {}
        for choice, (c, s) in states.items():
            for i in range(sens.shape[1]):
                c2 = c + costs[layer, i]
                if c2 <= budget:
                    nxt[(*choice, i)] = (c2, s + sens[layer, i])
        # drop dominated states: sort by cost, keep strictly decreasing sensitivity
        kept, best = {}, math.inf
        for choice, (c, s) in sorted(nxt.items(), key=lambda kv: (kv[1][0], kv[1][1])):
            if s < best:
                kept[choice], best = (c, s), s
        states = kept
    if not states:
        return None
    return list(min(states.items(), key=lambda kv: kv[1][1])[0])


def sensitivities(recipe: Recipe, fit_part: Split, val: Split, seed: int) -> np.ndarray:
    """Validation-loss increase of each layer's weights at each candidate width (8-bit ref)."""
    n = recipe.n_layers
    ref_recipe = with_bits(recipe, [8] * n)
    ref = build_model(ref_recipe, fit_part, seed)
    fit(ref_recipe, ref, fit_part, recipe.train.epochs, seed)
    state = ref.state_dict()
    x, y = torch.from_numpy(val.x_holdout), torch.from_numpy(val.y_holdout)
    loss = nn.CrossEntropyLoss()

    def val_loss(model) -> float:
        model.eval()
        with torch.no_grad():
            return float(loss(model(x), y))

    base = val_loss(ref)
    out = np.zeros((n, len(CANDIDATES)))
    for layer in range(n):
        for j, b in enumerate(CANDIDATES):
            bits = [8] * n
            bits[layer] = b
            d = ref_recipe.model_dump(mode="json")
            d["quant"]["weights"] = {"policy": "explicit", "bits": bits}
            m = build_model(Recipe.model_validate(d), fit_part, seed)
            m.load_state_dict(state)
            out[layer, j] = max(val_loss(m) - base, 0.0)
    return out


# ---------------------------------------------------------------------------- the study


_SCORES: dict[tuple, float] = {}  # (recipe digest, seed, bits, full) -> accuracy


def _evaluate(recipe: Recipe, data: Split, bits: list[int], seed: int, full: bool = False):
    """Train with ``bits``: on the fit part, scored on validation; or (``full``) on the whole
    training split, scored on the holdout. Returns (accuracy, model)."""
    fit_part, val = split_validation(data)
    part, score = (data, data) if full else (fit_part, val)
    r = with_bits(recipe, bits)
    model = build_model(r, part, seed)
    fit(r, model, part, recipe.train.epochs, seed)
    acc = accuracy(model, score.x_holdout, score.y_holdout)
    _SCORES[(recipe.digest(), seed, tuple(bits), full)] = acc
    return acc, model


def _score(recipe: Recipe, data: Split, bits: list[int], seed: int, full: bool = False) -> float:
    """The accuracy of ``_evaluate``; training is deterministic (seeded model, data order and
    one thread), so bits already trained here (a trial, the allocation, a baseline: often the
    same ones) are not trained again."""
    key = (recipe.digest(), seed, tuple(bits), full)
    if key not in _SCORES:
        _evaluate(recipe, data, bits, seed, full)
    return _SCORES[key]


def objective(trial, recipe_path: str, seed: int, kind: str, budget: float):
    recipe = load_recipe(recipe_path)
    data = load(recipe.dataset.name, seed=seed, holdout=recipe.dataset.holdout)
    bits = [trial.suggest_categorical(f"bits_{i}", CANDIDATES) for i in range(recipe.n_layers)]
    c = cost(kind, recipe, data, bits)
    acc = _score(recipe, data, bits, seed)
    trial.set_user_attr("bits", bits)
    trial.set_constraint("budget", c - budget)
    return acc, c


def uniform_at(kind, recipe, data, budget) -> list[int] | None:
    for b in sorted(CANDIDATES, reverse=True):
        bits = [b] * recipe.n_layers
        if cost(kind, recipe, data, bits) <= budget:
            return bits
    return None


def progressive_at(kind, recipe, data, budget) -> list[int] | None:
    """Linearly decreasing bits (first >= last) using the most of the budget."""
    n, best, best_cost = recipe.n_layers, None, -1.0
    for first in CANDIDATES:
        for last in CANDIDATES:
            if last >= first:
                continue
            steps = [first + (last - first) * i / max(n - 1, 1) for i in range(n)]
            bits = [min(CANDIDATES, key=lambda c, v=v: abs(c - v)) for v in steps]
            c = cost(kind, recipe, data, bits)
            if best_cost < c <= budget:
                best, best_cost = bits, c
    return best


@one_torch_thread()
def search(
    recipe: Recipe,
    recipe_path: str,
    out: Path,
    kind: str,
    budget: float,
    trials: int,
    workers: int = 1,
    storage: str | None = None,
    seed: int | None = None,
    quiet: bool = False,
) -> dict:
    from compiler.qat import study as S
    from compiler.qat.export import export_qonnx

    if recipe.arch.type == "rnn":
        raise TaperError(
            f"{recipe.name}: the bitwidth search takes fc and cnn recipes; a recurrent one sets "
            "its bits per tensor in arch.bits"
        )
    seed = recipe.seed if seed is None else seed
    out = Path(out)
    if storage:
        S.check_storage(storage)
    out.mkdir(parents=True, exist_ok=True)
    data = load(recipe.dataset.name, seed=seed, holdout=recipe.dataset.holdout)
    n = recipe.n_layers
    say = (lambda m: None) if quiet else (lambda m: print(f"[taper] {m}", flush=True))

    # 1. sensitivity + exact allocation
    say("sensitivity of each layer (uniform 8-bit reference)")
    fit_part, val = split_validation(data)
    sens = sensitivities(recipe, fit_part, val, seed)
    if kind == "weight_bits":
        costs = np.array(
            [
                [weight_bits_cost(recipe, data, [b if k == layer else 0 for k in range(n)])
                 for b in CANDIDATES]
                for layer in range(n)
            ]
        )  # fmt: skip
    else:
        per = [lut_cost(recipe, data, [b] * n, per_layer=True) for b in CANDIDATES]
        costs = np.array([[per[j][layer] for j in range(len(CANDIDATES))] for layer in range(n)])
    idx = allocate(sens, costs, budget)
    dp_bits = [CANDIDATES[i] for i in idx] if idx is not None else None

    # 2. multi-objective Bayesian optimisation
    study = S.run(
        "compiler.qat.search:objective",
        {"recipe_path": recipe_path, "seed": seed, "kind": kind, "budget": budget},
        f"search-{recipe.name}-seed{seed}-{kind}{budget:g}",
        S.storage_url(out, storage),
        ["maximize", "minimize"],
        trials,
        workers,
        seed,
        quiet=quiet,
        label=f"search {recipe.name}",
    )
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    points = [
        {
            "bits": t.user_attrs["bits"],
            "val_accuracy": t.values[0],
            "cost": t.values[1],
            "method": "bayesian",
        }
        for t in done
    ]

    # 3. the candidates at the budget, scored the same way
    cands = {}
    if dp_bits is not None:
        acc = _score(recipe, data, dp_bits, seed)
        c = cost(kind, recipe, data, dp_bits)
        cands["sensitivity+DP"] = {"bits": dp_bits, "val_accuracy": acc, "cost": c}
        if c > budget:  # lut: per-layer costs were approximate
            cands.pop("sensitivity+DP")
    feasible = [p for p in points if p["cost"] <= budget]
    if feasible:
        b = max(feasible, key=lambda p: (p["val_accuracy"], -p["cost"]))
        cands["bayesian"] = {k: b[k] for k in ("bits", "val_accuracy", "cost")}
    if not cands:
        raise TaperError(f"{recipe.name}: nothing found within {kind}={budget:g}")
    method, chosen = max(cands.items(), key=lambda kv: kv[1]["val_accuracy"])
    baselines = {}
    for name, fn in (("uniform", uniform_at), ("progressive", progressive_at)):
        bits = fn(kind, recipe, data, budget)
        if bits is not None:
            acc = _score(recipe, data, bits, seed)
            baselines[name] = {
                "bits": bits,
                "val_accuracy": acc,
                "cost": cost(kind, recipe, data, bits),
            }

    # 4. retrain the chosen and the baselines on the whole training split
    say(f"chosen by {method}: bits {chosen['bits']}; retraining on the whole training split")
    holdout = {}
    final = with_bits(recipe, chosen["bits"], f"{recipe.name}_searched")
    acc, model = _evaluate(recipe, data, chosen["bits"], seed, full=True)
    holdout["searched"] = acc
    for name, b in baselines.items():
        holdout[name] = _score(recipe, data, b["bits"], seed, full=True)
    metrics = {
        "model": final.name,
        "searched_from": recipe.name,
        "budget": {kind: budget},
        "method": method,
        "bits": chosen["bits"],
        "cost": chosen["cost"],
        "accuracy": holdout["searched"],
        "val_accuracy": chosen["val_accuracy"],
        "candidates": cands,
        "baselines": {k: {**v, "accuracy": holdout[k]} for k, v in baselines.items()},
        "sensitivity": {"candidates": list(CANDIDATES), "per_layer": sens.tolist()},
        "trials": points,
        "seed": seed,
    }
    doc = final.model_dump(mode="json")
    write_text(out / "recipe.yaml", yaml.safe_dump(doc, sort_keys=False))
    atomic_write(out / CHECKPOINT, lambda p: torch.save(model.state_dict(), p))
    export_qonnx(model, data.input_shape, out / QONNX)
    _plot(metrics, kind, budget, out / "pareto.png")
    write_json(out / METRICS, metrics)
    say(
        f"{final.name}: bits {chosen['bits']} ({kind} {chosen['cost']:,.0f} <= {budget:,.0f}), "
        f"holdout {holdout['searched']:.2%}; "
        + ", ".join(f"{k} {baselines[k]['bits']} {holdout[k]:.2%}" for k in baselines)
        + f" -> {out}"
    )
    return json.loads(json.dumps(metrics))


def _plot(metrics: dict, kind: str, budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = metrics["trials"]
    if pts:
        ax.scatter(
            [p["cost"] for p in pts],
            [100 * p["val_accuracy"] for p in pts],
            c="0.7",
            s=18,
            label="Bayesian trials",
        )
        front, best = [], -1.0
        for p in sorted(pts, key=lambda p: p["cost"]):
            if p["val_accuracy"] > best:
                front.append(p)
                best = p["val_accuracy"]
        ax.plot(
            [p["cost"] for p in front],
            [100 * p["val_accuracy"] for p in front],
            "-",
            c="0.4",
            label="Pareto front",
        )
    marks = {"sensitivity+DP": "*", "bayesian": "D"}
    for name, c in metrics["candidates"].items():
        ax.scatter(c["cost"], 100 * c["val_accuracy"], marker=marks[name], s=120, label=name)
    for name, c in metrics["baselines"].items():
        ax.scatter(
            c["cost"], 100 * c["val_accuracy"], marker="s", s=70, label=f"{name} {c['bits']}"
        )
    ax.axvline(budget, ls="--", c="r", lw=1, label=f"budget {budget:,.0f}")
    ax.set_xlabel("weight memory (bits)" if kind == "weight_bits" else "LUT (FINN estimate)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{metrics['searched_from']}: accuracy against {kind}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
