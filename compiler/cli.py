"""The ``taper`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from compiler.errors import TaperError

BUILD = Path("build")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taper")
def cli() -> None:
    """taper: mixed-precision quantized networks to streaming dataflow FPGA accelerators.

    \b
    Flow: recipe --train--> checkpoint + QONNX --compile--> IR --> simulators and back ends.
    Recipes live in models/*.yaml; `taper recipes` lists them.
    """


@cli.command()
@click.argument("model")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Build directory for checkpoint.pt, metrics.json and model.onnx.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Directory with MNIST idx files or CIFAR-10 python batches.",
)
@click.option("--seed", type=int, help="Override the recipe's seed (init, shuffling, split).")
@click.option("--force", is_flag=True, help="Retrain even if a matching checkpoint exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def train(model: str, out: Path, epochs, data_dir, seed, force: bool, quiet: bool) -> None:
    """Quantization-aware training of MODEL (a recipe name or .yaml), then QONNX export.

    Writes OUT/checkpoint.pt (weights only), OUT/metrics.json (holdout accuracy, per-layer
    bits, weight memory) and OUT/model.onnx (QONNX). Re-running with the same settings reuses
    the checkpoint.
    """
    from compiler.qat.recipe import load_recipe

    recipe = load_recipe(model)  # before the heavy imports: bad input fails fast
    from compiler.qat.train import train as run

    run(recipe, out, epochs=epochs, seed=seed, data_dir=data_dir, force=force, quiet=quiet)


def _resolve_model(model: str, quiet: bool = False) -> tuple[Path, str | None]:
    """A QONNX file, or a recipe name whose ``build/<name>/model.onnx`` is trained if missing."""
    p = Path(model)
    if p.suffix == ".onnx":
        if not p.is_file():
            raise TaperError(f"{p}: file not found")
        return p, None
    from compiler.qat.recipe import load_recipe

    recipe = load_recipe(model)
    onnx_path = BUILD / recipe.name / "model.onnx"
    if not onnx_path.is_file():
        from compiler.qat.train import train as run_train

        run_train(recipe, onnx_path.parent, quiet=quiet)
    return onnx_path, recipe.name


def _compile_options(recipe_name, board, clock_mhz, target_fps, folding, input_type):
    from compiler.frontend.compile import CompileOptions

    if recipe_name:
        from compiler.qat.recipe import load_recipe

        t = load_recipe(recipe_name).target
        board = board or t.board
        clock_mhz = clock_mhz or t.clock_mhz
        if target_fps is None and folding is None:
            target_fps = t.fps
    return CompileOptions(
        board=board or "pynq-z2",
        clock_mhz=clock_mhz or 100.0,
        target_fps=target_fps,
        folding=str(folding) if folding else None,
        input_type=input_type,
        recipe=recipe_name,
    )


_compile_opts = [
    click.option(
        "--board",
        help="Target board (pynq-z2, pynq-z1, ultra96, zcu104); "
        "default: the recipe's, else pynq-z2.",
    ),
    click.option("--clock-mhz", type=click.FloatRange(min=1), help="Clock (default 100 MHz)."),
    click.option(
        "--target-fps",
        type=click.FloatRange(min=1e-3),
        help="Fold (PE/SIMD via FINN's SetFolding) to reach this throughput; default: "
        "the recipe's target, else fully folded (PE=SIMD=1).",
    ),
    click.option(
        "--folding",
        type=click.Path(path_type=Path),
        help='Folding JSON: {"LAYER": {"PE": p, "SIMD": s}, ...}.',
    ),
    click.option(
        "--input-type",
        help="Fixed-point type of a float model input, e.g. "
        "fixed<16,6> (signed, 16 bits, 6 integer bits) or uint<8>.",
    ),
]


def _with(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f

    return deco


@cli.command("compile")
@click.argument("model")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Build directory (written atomically; reused when up to date).",
)
@_with(_compile_opts)
@click.option(
    "--backend",
    type=click.Choice(["rtl", "hls4ml"]),
    default="rtl",
    show_default=True,
    help="rtl: the IR (our RTL is generated from it by verify/synth); hls4ml: also the "
    "hls4ml HLS project in OUT/hls4ml (the model must meet hls4ml's exactness rules).",
)
@click.option("-q", "--quiet", is_flag=True)
def compile_cmd(
    model, out, board, clock_mhz, target_fps, folding, input_type, backend, quiet
) -> None:
    """Compile MODEL (recipe name or QONNX file) into the hardware IR.

    \b
    Writes OUT/ir.json + ir.npz (the IR), report.md + report.png, reference.onnx (the QONNX
    reference), finn_hw.onnx and finn_folded.onnx (FINN's graphs) and compile.json; with
    --backend hls4ml also OUT/hls4ml (Vitis HLS project, io_stream, the board's part/clock).
    """
    from compiler.frontend.compile import compile_model

    source, recipe_name = _resolve_model(model, quiet)
    opts = _compile_options(recipe_name, board, clock_mhz, target_fps, folding, input_type)
    if backend == "hls4ml":  # the rules first: a model hls4ml cannot take leaves no build
        from compiler.backends.hls4ml import convert

        convert.check_source(source, input_type)
    compile_model(source, out, opts, quiet=quiet)
    if backend == "hls4ml":
        convert.write_project(out, quiet=quiet)


def _build_dir(target: str, input_type: str | None, quiet: bool) -> Path:
    """A compiled build directory, or a recipe/QONNX file compiled into build/<name>/hw."""
    d = Path(target)
    if d.is_dir() and (d / "ir.json").is_file():
        return d
    from compiler.frontend.compile import compile_model

    source, recipe_name = _resolve_model(target, quiet=quiet)
    d = BUILD / (recipe_name or source.stem) / "hw"
    opts = _compile_options(recipe_name, None, None, None, None, input_type)
    compile_model(source, d, opts, quiet=quiet)
    return d


@cli.command()
@click.argument("target")
@click.option("--samples", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--against",
    default="qonnx,finn,brevitas,rtl",
    show_default=True,
    help="Comma-separated references: qonnx, finn, brevitas, rtl (Verilator), "
    "hls4ml (g++ C-simulation of the hls4ml project; written if missing).",
)
@click.option(
    "--data",
    type=click.Choice(["mnist", "digits", "random"]),
    help="Inputs: a data set's images or random values in the input's range "
    "(default: the recipe's data set, else random).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random inputs.")
@click.option("--input-type", help="As for compile, when TARGET is a float-input QONNX file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(target, samples, against, data, seed, input_type, as_json) -> None:
    """Check the IR simulator bit for bit against every reference.

    TARGET is a build directory from `taper compile`, a recipe name or a QONNX file (compiled
    into build/<name>/hw first). Exit 0 only when every reference that ran is bit-exact.
    """
    import json

    from compiler.verify import verify as run_verify

    d = _build_dir(target, input_type, as_json)
    refs = [a.strip() for a in against.split(",") if a.strip()]
    v = run_verify(d, samples, refs, data, seed, quiet=as_json)
    if as_json:
        click.echo(json.dumps(v.to_json(), indent=2))
    else:
        click.echo(f"{v.samples} samples: {v.inputs}")
        for name, r in v.references.items():
            if r.skipped:
                click.echo(f"  {name:9s} skipped: {r.skipped}")
            elif r.mismatches == 0:
                click.echo(f"  {name:9s} bit-exact" + (f" ({r.note})" if r.note else ""))
                if r.measured:
                    click.echo(
                        "            " + ", ".join(f"{k} {v:g}" for k, v in r.measured.items())
                    )
            else:
                click.echo(f"  {name:9s} {r.mismatches} mismatching samples; first: {r.first}")
    if not v.ok:
        sys.exit(1)


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

    from compiler import ir
    from compiler.backends.rtl.synth import check_fits, synthesize

    if not (build_dir / "ir.json").is_file():
        raise TaperError(f"{build_dir}: not a compiled build directory (no ir.json)")
    m = ir.load(build_dir)
    r = synthesize(m, build_dir)
    if as_json:
        click.echo(
            json.dumps({k: r[k] for k in ("lut", "ff", "bram36", "dsp", "layers")}, indent=2)
        )
    else:
        click.echo(f"{'layer':16s} {'LUT':>8s} {'FF':>8s} {'BRAM36':>7s} {'DSP':>5s}")
        for name, c in r["layers"].items():
            click.echo(f"{name:16s} {c['lut']:8,} {c['ff']:8,} {c['bram36']:7g} {c['dsp']:5}")
        click.echo(
            f"{'total':16s} {r['lut']:8,} {r['ff']:8,} {r['bram36']:7g} {r['dsp']:5}   "
            f"(incl. FIFOs and width converters)"
        )
        u = r["utilization"]
        click.echo(
            f"{r['device']['part']}: LUT {u['lut']:.1%}, FF {u['ff']:.1%}, "
            f"BRAM36 {u['bram36']:.1%}, DSP {u['dsp']:.1%}  [{r['tool']}]"
        )
    check_fits(r)


def _recipe_ref(model: str, recipe_path) -> str:
    """How study workers (other processes) find the recipe: its name, or its file's path."""
    p = recipe_path(model)
    return str(p.resolve()) if Path(model).suffix in (".yaml", ".yml") else model


_study_opts = [
    click.option(
        "--trials", type=click.IntRange(min=1), default=20, show_default=True, help="Trials."
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Local worker processes sharing the study.",
    ),
    click.option(
        "--storage",
        help="Optuna storage URL shared by workers on many machines (a relational database, "
        "e.g. postgresql://... or sqlite:///path); default: OUT/optuna.db (resumable).",
    ),
    click.option("--seed", type=int, help="Override the recipe's seed."),
    click.option("-q", "--quiet", is_flag=True),
]


@cli.command()
@click.argument("model")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output dir."
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0.0, max=1.0),
    default=0.01,
    show_default=True,
    help="Largest allowed validation accuracy loss (fraction: 0.01 = 1 point).",
)
@click.option("--finetune-epochs", type=click.IntRange(min=1), help="Default: epochs/4.")
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
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output dir."
)
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
@click.option(
    "--backend",
    type=click.Choice(["rtl", "hls4ml"]),
    default="rtl",
    show_default=True,
    help="rtl: Yosys synthesis of our RTL (a .bit needs Vivado); hls4ml: hls4ml's Vitis "
    "HLS build (C synthesis, IP export, Vivado synthesis) when Vitis is installed.",
)
@click.option("--input-type", help="As for compile, when TARGET is a float-input QONNX file.")
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def bitstream(ctx, target, backend, input_type, quiet) -> None:
    """Build TARGET (build directory, recipe or QONNX file) as far as this machine can.

    Without the vendor tools it stops after the last stage that runs here and says what to
    run on a machine that has them.
    """
    d = _build_dir(target, input_type, quiet)
    if backend == "hls4ml":
        from compiler.backends.hls4ml import vitis

        report = vitis.build(d, quiet=quiet)
        if report is not None:
            click.echo(f"[taper] hls4ml build report -> {report}")
        return
    ctx.invoke(synth, build_dir=d, as_json=False)
    click.echo(
        "[taper] no .bit/.hwh: a PYNQ bitstream needs Vivado (not driven by this flow yet). "
        f"The IR, RTL and Yosys resources are in {d}"
    )


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
        click.echo(
            f"{name:24s} {r.dataset.name:8s} hidden={r.arch.hidden} "
            f"W={r.weight_bits} A={r.act_bits} in={r.input.bits}b"
        )


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except TaperError as e:
        click.echo(f"taper: error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("taper: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("taper: interrupted", err=True)
        sys.exit(130)
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
