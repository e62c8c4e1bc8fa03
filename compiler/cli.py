"""The ``taper`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from compiler.errors import TaperError


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


if __name__ == "__main__":
    main()
