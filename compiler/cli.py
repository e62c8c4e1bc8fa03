"""The ``taper`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from compiler.errors import TaperError
from compiler.sim.patterns import fmt_cycles


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taper")
def cli() -> None:
    """taper: mixed-precision quantized networks to streaming dataflow FPGA accelerators.

    \b
    `taper build MODEL` runs the flow (train, export, frontend, lower, hls4ml, rtl, verify,
    synth, bitstream) into build/<name>; `taper status DIR` shows each step. Recipes live in
    models/*.yaml; `taper recipes` lists them.
    """


# ---------------------------------------------------------------------------- options


class Finite(click.FloatRange):
    """A float option that must be a finite number (click's ranges let nan through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        import math

        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


_FLOAT = Finite()  # ranges are checked by the flow, with one-line errors


class Fps(Finite):
    """A finite frame rate, or ``max``."""

    name = "frame rate or max"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "max":
            return "max"
        return super().convert(value, param, ctx)


_FPS = Fps()

_train_opts = [
    click.option("--epochs", type=click.IntRange(1, 100_000), help="Override the recipe's epochs."),
    click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        help="Directory with MNIST idx files or CIFAR-10 python batches.",
    ),
    click.option(
        "--seed",
        type=click.IntRange(0, 2**32 - 1),
        help="Override the recipe's seed (init, shuffling, split).",
    ),
]

_compile_opts = [
    click.option(
        "--board",
        help="Target board (pynq-z2, pynq-z1, ultra96, zcu104: Vivado; ulx3s: open tools, a "
        "real bitstream here); default: the recipe's, else pynq-z2.",
    ),
    click.option(
        "--clock-mhz",
        type=_FLOAT,
        help="Clock in MHz (default: the recipe's, else 100; on ulx3s the board's 25 MHz "
        "oscillator, another clock through a PLL).",
    ),
    click.option(
        "--target-fps",
        type=_FPS,
        metavar="FPS|max",
        help="Frames per second to fold (PE/SIMD) for: the cheapest folding reaching it by "
        "taper's RTL cost model; 'max': the fastest whose estimate fits the board (80 % of its "
        "LUTs, 90 % of its BRAM). Default: the recipe's target, else a FINN model's own "
        "folding, else max.",
    ),
    click.option(
        "--folding",
        type=click.Path(path_type=Path),
        help='Folding JSON: {"LAYER": {"PE": p, "SIMD": s}, ...}, or FINN\'s '
        "folding_config.json (entries matching no layer are ignored with a warning).",
    ),
    click.option(
        "--fifo-depths",
        help="FIFO in front of each layer: auto (default: the smallest depths that keep the "
        'II, from the cycle model), default (2 words), or a JSON file {"LAYER": depth}.',
    ),
    click.option(
        "--input-type",
        help="Fixed-point type of a float model input, e.g. "
        "fixed<16,6> (signed, 16 bits, 6 integer bits) or uint<8>.",
    ),
]

_backend_opt = click.option(
    "--backend",
    type=click.Choice(["rtl", "hls4ml"]),
    help="rtl (default): our Verilog, Verilator, Yosys; hls4ml: the hls4ml HLS project "
    "(the model must meet hls4ml's exactness rules).",
)

_verify_opts = [
    click.option(
        "--samples", type=click.IntRange(1, 100_000), help="Samples to verify (default 1000)."
    ),
    click.option(
        "--against",
        help="Comma-separated references: qonnx, finn, brevitas, rtl (Verilator), "
        "hls4ml (g++ C-simulation of the hls4ml project). Default: qonnx,finn,brevitas "
        "and the back end.",
    ),
    click.option(
        "--data",
        type=click.Choice(["mnist", "digits", "random"]),
        help="Inputs: a data set's images or random values in the input's range "
        "(default: the recipe's data set, else random).",
    ),
    click.option("--verify-seed", type=click.IntRange(0, 2**32 - 1), help="Seed of random inputs."),
]

_out_opt = click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Build directory (default: build/<name>). taper writes only into a new or empty "
    "directory or one it created.",
)


def _with(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f

    return deco


def _against(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [a.strip() for a in text.split(",") if a.strip()]


def _options(**kw):
    from compiler.flow import Options

    if kw.get("folding") is not None:
        kw["folding"] = str(kw["folding"])
    if kw.get("data_dir") is not None:
        kw["data_dir"] = str(kw["data_dir"])
    return Options(**{k: v for k, v in kw.items() if k in Options.__dataclass_fields__})


def _source_and_out(model: str, out: Path | None):
    """MODEL (recipe name, recipe YAML or QONNX file) or an existing build directory."""
    from compiler.build import MARKER
    from compiler.flow import Source, default_out

    p = Path(model)
    if p.is_dir() and (p / MARKER).is_file():
        if out is not None and Path(out).resolve() != p.resolve():
            raise TaperError(f"{model} is a build directory: --out does not apply")
        return None, p
    source = Source.parse(model)
    return source, Path(out) if out is not None else default_out(source)


# ---------------------------------------------------------------------------- build


@cli.command()
@click.argument("model")
@_out_opt
@click.option("--from", "start", metavar="STEP", help="First step to consider.")
@click.option("--until", metavar="STEP", help="Last step to run.")
@click.option(
    "--force", "force", metavar="STEP", multiple=True, help="Re-run STEP (and all after it)."
)
@_with(_train_opts)
@_with(_compile_opts)
@_backend_opt
@_with(_verify_opts)
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def build(model, out, start, until, force, quiet, against, **kw) -> None:
    """Run the flow on MODEL: train, export, frontend, lower, hls4ml, rtl, verify, synth,
    bitstream.

    \b
    MODEL is a recipe name (models/<name>.yaml), a recipe .yaml, a QONNX file, or an existing
    build directory. Each step is skipped when current (same inputs, options and code), so an
    interrupted build resumes where it stopped; `taper status DIR` shows why a step would run.
    """
    from compiler import flow

    source, d = _source_and_out(model, out)
    b = flow.run(
        d,
        source,
        _options(against=_against(against), **kw),
        start=start,
        until=until,
        force=force,
        quiet=quiet,
    )
    if not quiet:
        _summary(b)


def _summary(b) -> None:
    """What a user wants to see after a build: verification, resources, what is missing."""
    import json

    from compiler import build as B

    if (b / B.VERIFY_JSON).is_file():
        _print_verification(json.loads((b / B.VERIFY_JSON).read_text()))
    if (b / B.SYNTH_JSON).is_file():
        _print_synth(json.loads((b / B.SYNTH_JSON).read_text()))
    waiting = b.results.get("waiting")
    if waiting == "Vivado":
        click.echo(
            f"[taper] no .bit/.hwh here: {b.path / B.BITSTREAM_DIR} holds the complete Vivado "
            "project; on a machine with Vivado run there: vivado -mode batch -source build.tcl"
        )
    report = b.path / B.BITSTREAM_DIR / "bitstream.json"
    if report.is_file():
        r = json.loads(report.read_text())
        click.echo(
            f"[taper] bitstream {b.path / B.BITSTREAM_DIR / r['bitstream']} for {r['board']}: "
            f"Fmax {r['fmax_mhz']} MHz at {r['clock_mhz']:g} MHz"
        )
    click.echo(f"[taper] build directory: {b.path}")


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON.")
def status(build_dir: Path, as_json: bool) -> None:
    """Each step of a build: current, stale (and why), missing, or waiting for a tool."""
    import json
    import time

    from compiler import flow

    rows = flow.status(build_dir)
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.finished)) if r.finished else ""
        took = f"{r.seconds:.1f}s" if r.finished else ""
        detail = r.note if r.state == "current" else r.why
        click.echo(f"{r.name:10s} {r.state:8s} {when:16s} {took:>8s}  {detail}")


# ---------------------------------------------------------------------------- stages


@cli.command()
@click.argument("model")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Build directory for recipe.yaml, checkpoint.pt, metrics.json and model.onnx.",
)
@_with(_train_opts)
@click.option("--force", is_flag=True, help="Retrain even if a matching checkpoint exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def train(model: str, out: Path, force: bool, quiet: bool, **kw) -> None:
    """Quantization-aware training of MODEL (a recipe name or .yaml), then QONNX export.

    Writes OUT/checkpoint.pt (weights only), OUT/metrics.json (holdout accuracy, per-layer
    bits, weight memory) and OUT/model.onnx (QONNX): the flow's train and export steps.
    Re-running with the same settings reuses the checkpoint.
    """
    from compiler import flow

    source = flow.Source.parse(model)
    if source.kind != "recipe":
        raise TaperError(f"{model}: train takes a recipe (name or .yaml), not a QONNX file")
    flow.run(
        out, source, _options(**kw), until="export", force={"train"} if force else (), quiet=quiet
    )


@cli.command("compile")
@click.argument("model")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Build directory (reused when up to date; taper writes only into a new or empty "
    "directory or one it created).",
)
@_with(_compile_opts)
@_backend_opt
@_with(_train_opts)
@click.option("-q", "--quiet", is_flag=True)
def compile_cmd(model, out, quiet, **kw) -> None:
    """Compile MODEL (recipe name, recipe .yaml or QONNX file) into the hardware IR.

    \b
    Writes OUT/ir.json + ir.npz (the IR), report.md + report.png, reference.onnx (the QONNX
    reference), finn_hw.onnx, finn_folded.onnx and frontend.json (what the front end found);
    a recipe is trained first; with --backend hls4ml also OUT/hls4ml (Vitis HLS project).
    """
    from compiler import flow

    source, d = _source_and_out(model, out)
    until = "hls4ml" if kw.get("backend") == "hls4ml" else "fifo"
    flow.run(d, source, _options(**kw), until=until, quiet=quiet)


@cli.command()
@click.argument("target")
@_with(_verify_opts[:-1])
@_with(_train_opts[1:2])  # --data-dir: the images of --data (default: the training's)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Seed of random inputs.")
@click.option("--input-type", help="As for compile, when TARGET is a float-input QONNX file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(target, against, seed, as_json, **kw) -> None:
    """Check the IR simulator bit for bit against every reference.

    TARGET is a build directory, a recipe name or a QONNX file (built into build/<name>
    first). Exit 0 only when every reference that ran is bit-exact.
    """
    import json

    from compiler import build as B
    from compiler import flow

    source, d = _source_and_out(target, None)
    refs = _against(against)
    if seed is not None:
        kw["verify_seed"] = seed
    if refs and "hls4ml" in refs:
        kw["backend"] = "hls4ml"
    try:
        b = flow.run(d, source, _options(against=refs, **kw), until="verify", quiet=as_json)
        doc = json.loads((b / B.VERIFY_JSON).read_text())
        ok = True
    except flow.VerifyFailed as e:
        doc, ok = e.verification.to_json(), False
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_verification(doc)
    if not ok:
        sys.exit(1)


def _print_verification(doc: dict) -> None:
    click.echo(f"{doc['samples']} samples: {doc['inputs']}")
    for name, r in doc["references"].items():
        if r.get("skipped"):
            click.echo(f"  {name:9s} skipped: {r['skipped']}")
        elif r["mismatches"] == 0:
            click.echo(f"  {name:9s} bit-exact" + (f" ({r['note']})" if r.get("note") else ""))
            timing = {k: v for k, v in r.items() if k.endswith("_cycles")}
            if timing:
                click.echo("            " + ", ".join(f"{k} {v:g}" for k, v in timing.items()))
        else:
            f = r["first"]
            click.echo(
                f"  {name:9s} {r['mismatches']} mismatching samples; first: layer "
                f"{f['layer']}, sample {f['sample']}, element {f['index']}: IR {f['ir']}, "
                f"reference {f['reference']:g}"
            )
        if r.get("cycle_model"):
            verdict = "exact" if r.get("cycle_model_exact") else "DIFFERS"
            click.echo(f"            cycle model {verdict}: {r['cycle_model']}")


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print totals and per-layer counts as JSON.")
def synth(build_dir: Path, as_json: bool) -> None:
    """Synthesize the generated RTL with Yosys for the board's Xilinx part.

    Writes BUILD_DIR/rtl (the Verilog) and BUILD_DIR/synth.json; reports LUT, FF, BRAM36 and
    DSP per layer and in total with the fraction of the device. Exit 2 when the design does
    not fit. Yosys counts differ from Vivado's.
    """
    import json

    from compiler import build as B
    from compiler import flow

    b = flow.run(build_dir, None, _options(backend="rtl"), only=("rtl", "synth"), quiet=True)
    r = json.loads((b / B.SYNTH_JSON).read_text())
    if as_json:
        click.echo(
            json.dumps({k: r[k] for k in ("lut", "ff", "bram36", "dsp", "layers")}, indent=2)
        )
    else:
        _print_synth(r)
    from compiler.backends.rtl.synth import check_fits

    check_fits(r)


def _print_synth(r: dict) -> None:
    n = r.get("labels", {"lut": "LUT", "ff": "FF", "bram36": "BRAM36", "dsp": "DSP"})
    head = {k: v.split(" ")[0] for k, v in n.items()}  # "BRAM36 (2 DP16KD)" -> a column name
    click.echo(
        f"{'layer':16s} {head['lut']:>8s} {head['ff']:>8s} {head['bram36']:>7s} {head['dsp']:>6s}"
    )
    for name, c in r["layers"].items():
        click.echo(f"{name:16s} {c['lut']:8,} {c['ff']:8,} {c['bram36']:7g} {c['dsp']:6}")
    click.echo(
        f"{'total':16s} {r['lut']:8,} {r['ff']:8,} {r['bram36']:7g} {r['dsp']:6}   "
        f"(incl. FIFOs and width converters)"
    )
    u = r["utilization"]
    click.echo(
        f"{r['device']['part']}: "
        + ", ".join(f"{n[k]} {u[k]:.1%}" for k in ("lut", "ff", "bram36", "dsp"))
        + f"  [{r['tool']}]"
    )


def _nonempty(param, value):
    if value is not None and not value.strip():
        raise click.BadParameter("expected a value, got an empty string", param=param)
    return value


def _recipe_ref(model: str, recipe_path) -> str:
    """How study workers (other processes) find the recipe: its name, or its file's path."""
    p = recipe_path(model)
    return str(p.resolve()) if Path(model).suffix in (".yaml", ".yml") else model


_study_opts = [
    click.option(
        "--trials", type=click.IntRange(1, 100_000), default=20, show_default=True, help="Trials."
    ),
    click.option(
        "--workers",
        type=click.IntRange(1, 256),
        default=1,
        show_default=True,
        help="Local worker processes sharing the study.",
    ),
    click.option(
        "--storage",
        callback=lambda ctx, param, v: _nonempty(param, v),
        help="Optuna storage URL shared by workers on many machines (a relational database, "
        "e.g. postgresql://... or sqlite:///path); default: OUT/optuna.db (resumable).",
    ),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Override the recipe's seed."),
    click.option("-q", "--quiet", is_flag=True),
]


@cli.command()
@click.argument("model")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output dir.")
@click.option(
    "--max-accuracy-drop",
    type=Finite(min=0.0, max=1.0),
    default=0.01,
    show_default=True,
    help="Largest allowed validation accuracy loss (fraction: 0.01 = 1 point).",
)
@click.option("--finetune-epochs", type=click.IntRange(1, 100_000), help="Default: epochs/4.")
@_with(_study_opts)
def prune(model, out, max_accuracy_drop, finetune_epochs, trials, workers, storage, seed, quiet):
    """Prune the hidden neurons of MODEL (a recipe) with per-layer ratios found by Bayesian
    optimisation under an accuracy constraint.

    \b
    Trains MODEL into OUT/base (reused), then runs the study (OUT/optuna.db unless
    --storage), and writes OUT/recipe.yaml (the pruned recipe), checkpoint.pt, metrics.json
    and model.onnx; `taper verify OUT/model.onnx` compiles and checks it.
    """
    from compiler.qat.recipe import load_recipe, recipe_path

    recipe = load_recipe(model)
    from compiler.qat.prune import prune as run

    run(
        recipe,
        _recipe_ref(model, recipe_path),
        out,
        max_accuracy_drop,
        trials,
        workers,
        storage,
        seed,
        finetune_epochs,
        quiet,
    )


@cli.command()
@click.argument("model")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output dir.")
@click.option(
    "--budget",
    required=True,
    help="KIND=VALUE: weight_bits=N (weight memory) or lut=N (FINN's LUT estimate).",
)
@_with(_study_opts)
def search(model, out, budget, trials, workers, storage, seed, quiet):
    """Choose per-layer bitwidths of MODEL (a recipe) under a hardware budget.

    \b
    Sensitivity (loss perturbation per layer) + exact allocation by dynamic programming, and
    multi-objective Bayesian optimisation (OUT/optuna.db unless --storage); the best within
    the budget is retrained and written as OUT/recipe.yaml, checkpoint.pt, metrics.json and
    model.onnx, with OUT/pareto.png (accuracy against the budget, uniform and progressive
    bitwidths at the same budget beside it).
    """
    from compiler.qat.recipe import load_recipe, recipe_path
    from compiler.qat.search import parse_budget

    kind, value = parse_budget(budget)
    recipe = load_recipe(model)
    from compiler.qat.search import search as run

    run(
        recipe,
        _recipe_ref(model, recipe_path),
        out,
        kind,
        value,
        trials,
        workers,
        storage,
        seed,
        quiet,
    )


@cli.command()
@click.argument("target")
@_backend_opt
@click.option("--input-type", help="As for compile, when TARGET is a float-input QONNX file.")
@click.option("-q", "--quiet", is_flag=True)
def bitstream(target, backend, input_type, quiet) -> None:
    """Build TARGET (build directory, recipe or QONNX file) as far as this machine can: the
    whole flow (`taper build`).

    Without the vendor tools it stops before the step that needs them and says what to run
    on a machine that has them (`taper status` shows the step as waiting).
    """
    from compiler import flow

    source, d = _source_and_out(target, None)
    b = flow.run(d, source, _options(backend=backend, input_type=input_type), quiet=quiet)
    if not quiet:
        _summary(b)


def _built_ir(target: str, until: str = "fifo", **kw):
    """A build directory (or a model, built into build/<name>) up to ``until``; its IR."""
    from compiler import flow, ir

    source, d = _source_and_out(target, None)
    b = flow.run(d, source, _options(**kw), until=until, quiet=True)
    return b, ir.load(b.path)


@cli.command()
@click.argument("target")
@click.option(
    "--cycles",
    "cycle_model",
    is_flag=True,
    default=True,
    help="The cycle-accurate model of the generated RTL (the default; the bit-accurate "
    "simulator runs in `taper verify`).",
)
@click.option(
    "--frames",
    type=click.IntRange(1, 10_000_000),
    default=100,
    show_default=True,
    help="Frames to stream.",
)
@click.option(
    "--stall",
    type=click.IntRange(0, 99),
    default=0,
    show_default=True,
    help="Percent of cycles the input is not valid and the output not ready (seeded random).",
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, help="Seed of the stalls.")
@click.option(
    "--frame-period",
    type=click.IntRange(0, 2**40),
    default=0,
    help="Offer a new frame every K cycles (0: whenever the input is ready).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--vcd",
    type=click.Path(path_type=Path),
    help="Write every stream's valid, ready and data (random inputs) as a VCD.",
)
def simulate(target, cycle_model, frames, stall, seed, frame_period, as_json, vcd) -> None:
    """Stream frames through the cycle-accurate model of the generated pipeline.

    TARGET is a build directory, a recipe or a QONNX file (built up to its FIFO step first).
    Prints the first frame's latency, the steady-state II, the FPS at the clock, and per
    stage the cycles busy, starved (waiting for input) and blocked (output not taken), and
    each FIFO's peak occupancy.
    """
    import json

    from compiler.sim import cycles

    _, m = _built_ir(target)
    r = cycles.run(m, frames, in_valid=stall, out_ready=stall, seed=seed, frame_period=frame_period)
    if vcd is not None:
        _write_vcd(m, r, vcd, seed)
    if as_json:
        click.echo(json.dumps(r.to_json(), indent=2))
        return
    click.echo(
        f"{m.name}: {frames:,} frames, latency {r.latency_cycles:,} cycles "
        f"({r.latency_cycles / m.clock_mhz:,.2f} µs), II {fmt_cycles(r.ii_cycles)} cycles, "
        f"{r.fps:,.0f} FPS at {m.clock_mhz:g} MHz"
    )
    total = max(1, int(r.output_cycles[-1]) + 1)
    click.echo(f"{'stage':24s} {'busy':>8s} {'starved':>8s} {'blocked':>8s}")
    for k, v in r.stages.items():
        click.echo(
            f"{k:24s} {v.busy / total:8.1%} {v.starved / total:8.1%} {v.blocked / total:8.1%}"
        )
    click.echo(f"{'FIFO':24s} {'depth':>8s} {'width':>8s} {'peak':>8s}")
    for k, f in r.fifos.items():
        click.echo(f"{k:24s} {f.depth:8,} {f.width:8,} {f.peak:8,}")
    if vcd is not None:
        click.echo(f"wrote {vcd}")


def _write_vcd(m, r, path: Path, seed: int) -> None:
    """Random frames through the bit-accurate simulator give every stream's data words."""
    import numpy as np

    from compiler.backends.rtl.generate import encode
    from compiler.sim import bitexact, timeline

    rng = np.random.default_rng(seed)
    t = m.layers[0].input_type
    q = rng.integers(t.min, t.max + 1, size=(r.frames, m.layers[0].in_frame))
    if t.bipolar:
        q = np.where(q > 0, 1, -1)
    env = bitexact.run_hardware(m, q, keep=True)
    env[m.input_tensor] = q

    def words(tensor: str, typ, elems: int) -> np.ndarray:
        codes = encode(env[tensor], typ).reshape(-1, elems).astype(object)
        return (codes << (np.arange(elems, dtype=object) * typ.bits)).sum(axis=1)

    data = {"s_axis": words(m.input_tensor, t, m.layers[0].in_elems)}
    for layer in m.layers:
        w = words(layer.input, layer.input_type, layer.in_elems)
        data[f"{layer.name}_dwc"] = data[f"{layer.name}_fifo"] = w
        data[layer.name] = words(layer.output, layer.out_type, layer.out_elems)
    timeline.write_vcd(r, m, {k: v for k, v in data.items() if k in r.links}, path)


@cli.command()
@click.argument("target")
@click.option(
    "--depths",
    default="auto",
    show_default=True,
    help="auto: the smallest depths that keep the II (cycle model); default: 2 words each; "
    'or a FIFO JSON file {"LAYER": depth}.',
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Regenerate the RTL and confirm latency, II and every handshake in Verilator.",
)
@click.option("--json", "as_json", is_flag=True, help="Print fifo.json.")
def fifo(target, depths, check, as_json) -> None:
    """Size the FIFO in front of every layer (the flow's fifo step) and report the bits saved.

    TARGET is a build directory, a recipe or a QONNX file. The depths go into the IR; the
    RTL, verification and synthesis that follow use them.
    """
    import json

    import numpy as np

    from compiler import build as B

    b, m = _built_ir(target, fifo_depths=depths)
    doc = json.loads((b / B.FIFO_JSON).read_text())
    if check:
        from compiler import flow
        from compiler.backends.rtl import simulate
        from compiler.references.rtl import TIMING_FRAMES, cycle_difference

        flow.run(b.path, None, only=("rtl",), quiet=True)
        rng = np.random.default_rng(0)
        t = m.layers[0].input_type
        q = rng.integers(t.min, t.max + 1, size=(TIMING_FRAMES, m.layers[0].in_frame))
        if t.bipolar:
            q = 2 * (q > 0) - 1
        rtl = simulate.run(m, q)
        diff = cycle_difference(m, rtl)
        doc["verilator"] = {
            "latency_cycles": rtl.latency_cycles,
            "ii_cycles": rtl.ii_cycles,
            "cycle_model_exact": diff is None,
        }
        if diff:
            raise TaperError(f"Verilator and the cycle model differ: {diff}")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    names = {layer.input: layer.name for layer in m.layers}
    before = (doc.get("sizing") or {}).get("depths_before", {})
    click.echo(f"{'FIFO before':24s} {'width':>6s} {'depth':>12s} {'bits':>10s}")
    for f in m.fifos:
        was = before.get(f.tensor)
        d = f"{was} -> {f.depth}" if was is not None else f"{f.depth}"
        click.echo(f"{names[f.tensor]:24s} {f.width:6,} {d:>12s} {f.depth * f.width:10,}")
    c = doc["cycles"]
    click.echo(
        f"total {doc['bits_before']:,} -> {doc['bits']:,} bits; latency {c['latency_cycles']:,} "
        f"cycles, II {fmt_cycles(c['ii_cycles'])} cycles (cycle model)"
    )
    if check:
        v = doc["verilator"]
        click.echo(
            f"Verilator: latency {v['latency_cycles']:,} cycles, II {fmt_cycles(v['ii_cycles'])} "
            "cycles, the same cycle for every handshake"
        )


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--host", required=True, help="The board: [USER@]ADDRESS (ssh).")
@click.option("--remote-dir", default="taper", show_default=True, help="Directory on the board.")
@click.option("--images", type=click.Path(path_type=Path), help="Validation images (.npy).")
@click.option("--labels", type=click.Path(path_type=Path), help="Their labels (.npy).")
@click.option("--dry-run", is_flag=True, help="Print the commands, run nothing.")
def deploy(build_dir, host, remote_dir, images, labels, dry_run) -> None:
    """Copy BUILD_DIR's PYNQ package (deploy/) to a board and run its driver there.

    With --images/--labels the board runs `driver.py validate` (accuracy); else `bench`
    (latency and II from the on-chip counters, and wall-clock throughput). Uses scp and ssh.
    """
    import shlex

    from compiler import build as B
    from compiler.deploy import remote

    cmds = remote.commands(build_dir / B.DEPLOY_DIR, host, remote_dir, images, labels)
    if dry_run:
        for c in cmds:
            click.echo(" ".join(shlex.quote(w) if w not in ("&&",) else w for w in c))
        return
    remote.deploy(cmds)


@cli.command("run")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.argument("inputs", type=click.Path(path_type=Path))
@click.option(
    "--on",
    "target",
    default="sim",
    show_default=True,
    help="sim (the bit-accurate simulator), rtl (the generated Verilog in Verilator) or "
    "serial:PORT (the ULX3S bitstream over its UART).",
)
@click.option("--baud", type=click.IntRange(300, 12_000_000), default=115_200, show_default=True)
@click.option("--out", "out_file", type=click.Path(path_type=Path), help="Write outputs (.npy).")
def run_cmd(build_dir, inputs, target, baud, out_file) -> None:
    """Run INPUTS (.npy: float frames as the model takes them, N first) through the host
    input edge, the accelerator and the host output edge.

    The outputs are the model's own: floats, or class indices (int64) when the model ends in
    TopK. --out writes them as .npy; without it, each frame's class (its argmax, or its
    labels) is printed.
    """
    import numpy as np

    from compiler import build as B
    from compiler import ir
    from compiler.build import atomic_write

    if not (Path(build_dir) / B.IR_JSON).is_file():
        raise TaperError(f"{build_dir}: not a compiled build directory (no {B.IR_JSON})")
    if target not in ("sim", "rtl") and not (
        target.startswith("serial:") and len(target) > len("serial:")
    ):
        raise TaperError(f"--on: expected sim, rtl or serial:PORT, got {target!r}")
    m = ir.load(build_dir)
    x = _run_inputs(m, inputs)
    y = _run_frames(m, x, target, baud, inputs)
    shape = tuple(m.output_edge.out_shape)
    if shape and int(np.prod(shape)) == int(np.prod(y.shape[1:])):
        y = y.reshape(len(y), *shape)
    if out_file is not None:

        def write(p: Path) -> None:
            with open(p, "wb") as f:  # a file object: np.save would append .npy to a path
                np.save(f, y)

        atomic_write(out_file, write)
        return
    for i, row in enumerate(np.asarray(y).reshape(len(y), -1)):
        if m.output_edge.labels:
            click.echo(f"{i}: {' '.join(str(int(v)) for v in row)}")
        else:
            click.echo(f"{i}: {int(np.argmax(row))}")


def _run_inputs(m, inputs: Path):
    """The frames of ``inputs`` as float32 (N, *in_shape); one line naming what the model
    takes when the file does not hold that."""
    import numpy as np

    shape = tuple(m.input_edge.in_shape)
    n = int(np.prod(shape))
    want = f"N frames of shape {shape}, i.e. an array ({', '.join(['N', *map(str, shape)])})"
    try:
        x = np.load(inputs, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise TaperError(f"{inputs}: not a readable .npy array ({why}); expected {want}") from None
    if not isinstance(x, np.ndarray):
        raise TaperError(f"{inputs}: an .npz archive, expected one .npy array of {want}")
    if x.dtype == np.bool_ or x.dtype.kind not in "fiu":
        raise TaperError(f"{inputs}: values of type {x.dtype}, expected floats (or integers)")
    if x.shape == shape:
        x = x[None]
    if x.ndim < 2 or len(x) == 0 or int(np.prod(x.shape[1:])) != n:
        raise TaperError(f"{inputs}: an array of shape {x.shape}, expected {want}")
    x = x.astype(np.float32).reshape(len(x), *shape)
    if not np.isfinite(x).all():
        raise TaperError(f"{inputs}: values that are not finite (nan or inf), expected numbers")
    return x


def _run_frames(m, x, target: str, baud: int, inputs: Path):
    """Float frames -> the model's outputs on ``target`` (sim, rtl or serial:PORT)."""
    from compiler.sim import bitexact

    try:
        q = bitexact.quantize_input(m.input_edge, x)
    except ValueError as e:  # an identity edge takes only its type's integers
        raise TaperError(f"{inputs}: {e}") from None
    q = q.reshape(len(q), -1)
    if target == "sim":
        ints = bitexact.run_hardware(m, q)[m.output_tensor]
    elif target == "rtl":
        from compiler.backends.rtl import simulate

        ints = simulate.run(m, q).outputs
    else:
        from compiler.deploy.serial import run_serial

        ints = run_serial(m, q, target[len("serial:") :], baud=baud)
    return bitexact.dequantize_output(m.output_edge, ints)


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
def show(build_dir: Path) -> None:
    """Print the report of a compiled build directory."""
    p = build_dir / "report.md"
    if not p.is_file():
        raise TaperError(f"{build_dir}: no report.md (run taper compile first)")
    click.echo(p.read_text())


@cli.command()
def recipes() -> None:
    """List the model recipes with their per-layer bitwidths."""
    from compiler.qat.recipe import available, load_recipe

    for name in available():
        r = load_recipe(name)
        # a convolution as its channels, "p" when a 2x2 max pool follows it
        conv = [f"{c.channels}{'p' if c.pool else ''}" for c in getattr(r.arch, "conv", [])]
        click.echo(
            f"{name:24s} {r.dataset.name:8s} "
            + (f"conv=[{','.join(conv)}] " if conv else "")
            + f"hidden={r.arch.hidden} W={r.weight_bits} A={r.act_bits} in={r.input.bits}b"
        )


def _terminate(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C, so staged outputs are removed on the way out
    raise KeyboardInterrupt


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(standalone_mode=False)
    except TaperError as e:
        click.echo(f"taper: error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("taper: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:  # usage errors too: one line, naming the option
        msg = " ".join(e.format_message().split())
        click.echo(f"taper: error: {msg}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("taper: interrupted", err=True)
        sys.exit(130)
    except OSError as e:  # a path the user gave that the system refuses (too long, no access)
        if e.filename is None or os.environ.get("TAPER_DEBUG"):
            raise
        click.echo(f"taper: error: {e.filename}: {e.strerror}", err=True)
        sys.exit(2)
    except Exception as e:  # a bug, not bad input: one line unless asked for the traceback
        if os.environ.get("TAPER_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        click.echo(
            f"taper: internal error: {type(e).__name__}: {msg} (TAPER_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
