"""IR dataclasses: the hardware model every simulator and back end reads.

A model is a host input edge (float -> integers), a chain of hardware layers each with exact
integer semantics and a folding (PE x SIMD), the FIFOs between them, and a host output edge
(integers -> floats). Layers name their input and output tensors so that branching graphs
(residuals) and new layer kinds (sliding windows, pooling, recurrent cells) fit without
changing the core: a new kind is a new ``Layer`` subclass registered in ``LAYER_KINDS``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from compiler.ir.types import IntType


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b)
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
    return a == b


class _Node:
    """Dataclass mix-in: equality that compares numpy arrays by value and dtype."""

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return all(
            _eq(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)
        )

    __hash__ = None  # type: ignore[assignment]


def _divides(layer: str, what: str, fold: int, size: int) -> None:
    if fold < 1 or size % fold:
        raise ValueError(f"layer {layer}: {what}={fold} does not divide {size}")


# ---------------------------------------------------------------------------- host edges


@dataclass(eq=False)
class FloatStep(_Node):
    """A float32 elementwise operation on the host: ``mul``, ``add``, ``sub``, ``div`` by a
    constant, or ``softmax`` over the last axis; or, last in an output edge, ``topk``: the
    indices of the ``k`` largest values of the last axis, largest first, the lower index
    first among equal values (ONNX's TopK, FINN's LabelSelect): class labels, int64."""

    op: Literal["mul", "add", "sub", "div", "softmax", "topk"]
    value: np.ndarray | None = None
    k: int = 0  # topk only


@dataclass(eq=False)
class InputEdge(_Node):
    """Host-side conversion of the float input into the first layer's integers.

    ``kind``:
      - ``quant``: q = clip(round(pre(x) / scale + zero_point)) as the reference's float ops
        ``pre`` and its QONNX Quant node compute it, in float32;
      - ``thresholds``: q = count(x >= T[c]) + bias (FINN's thresholding of a float input);
      - ``identity``: the input already holds integers of ``out_type``.
    ``in_shape`` is the float input's shape per sample; it is flattened to ``shape``. With
    ``perm``, the integers of a sample are transposed by it first (the host's Transpose in
    front of a CNN: (0, 2, 3, 1)-style NCHW -> NHWC is ``perm=(1, 2, 0)`` per sample).
    """

    kind: Literal["quant", "thresholds", "identity"]
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    out_type: IntType
    scale: float = 1.0
    zero_point: float = 0.0
    rounding: str = "ROUND"
    narrow: bool = False
    thresholds: np.ndarray | None = None  # float64 (C or 1, steps), sorted per row
    bias: int = 0
    pre: list[FloatStep] = field(default_factory=list)
    perm: tuple[int, ...] = ()


@dataclass(eq=False)
class OutputEdge(_Node):
    """Host-side work on the last layer's integers: float ``steps`` in order (the model's
    trailing Mul/Add/Softmax), and, when the model ends in TopK, a last ``topk`` step that
    makes the output class indices. ``out_shape`` is the model's output per sample."""

    steps: list[FloatStep] = field(default_factory=list)
    out_shape: tuple[int, ...] = ()

    @property
    def labels(self) -> bool:
        """The output is class indices (int64), not floats."""
        return bool(self.steps) and self.steps[-1].op == "topk"


# ---------------------------------------------------------------------------- hardware layers


@dataclass(eq=False)
class Layer(_Node):
    """A hardware stage: reads tensor ``input`` (``input_type``), writes ``output``."""

    kind: ClassVar[str] = "layer"
    name: str
    input: str
    output: str
    input_type: IntType
    out_type: IntType

    @property
    def cycles(self) -> int:
        """Cycles per frame in steady state (the stage's initiation interval)."""
        raise NotImplementedError

    @property
    def in_elems(self) -> int:
        """Input elements per stream word."""
        raise NotImplementedError

    @property
    def out_elems(self) -> int:
        """Output elements per stream word."""
        return self.pe  # type: ignore[attr-defined]

    @property
    def in_width(self) -> int:
        """Input stream width in bits."""
        return self.in_elems * self.input_type.bits

    @property
    def in_frame(self) -> int:
        """Input elements per frame (the stream's words per frame times ``in_elems``)."""
        raise NotImplementedError

    @property
    def out_frame(self) -> int:
        """Output elements per frame."""
        raise NotImplementedError

    @property
    def out_width(self) -> int:
        raise NotImplementedError

    @property
    def weight_memory_bits(self) -> int:
        return 0

    @property
    def threshold_memory_bits(self) -> int:
        return 0

    def check(self) -> None:
        """Raise ValueError naming the layer when its parameters are inconsistent."""


def _threshold_out(layer: str, thresholds: np.ndarray, channels: int, out_type: IntType, bias: int):
    if thresholds.ndim != 2 or thresholds.shape[0] not in (1, channels):
        raise ValueError(
            f"layer {layer}: thresholds of shape {thresholds.shape}, expected ({channels} or 1, steps)"
        )
    if not np.all(np.diff(thresholds, axis=1) >= 0):
        raise ValueError(f"layer {layer}: thresholds are not sorted per channel")
    steps = thresholds.shape[1]
    lo, hi = (-1, 1) if out_type.bipolar else (bias, bias + steps)
    if not (out_type.min <= lo and hi <= out_type.max):
        raise ValueError(f"layer {layer}: {steps} thresholds + bias {bias} overflow {out_type}")


@dataclass(eq=False)
class MatVec(Layer):
    """Matrix-vector(-threshold) unit: ``acc = W @ x`` then optional multi-thresholding.

    ``weights`` is (out_features, in_features) int64. In ``xnor`` mode inputs and weights
    are {0, 1} encodings of bipolar values and ``acc`` is the popcount of their XNOR. With
    ``thresholds`` (per output channel or shared, sorted), the output is
    ``count(acc >= T[c]) + out_bias`` — or ``2 * count - 1`` for a bipolar output; without,
    the output is ``acc`` itself. ``pe`` output channels and ``simd`` inputs are computed per
    cycle, for ``n_vectors`` input vectors per frame.
    """

    kind: ClassVar[str] = "matvec"
    weight_type: IntType
    acc_type: IntType
    weights: np.ndarray
    thresholds: np.ndarray | None = None
    out_bias: int = 0
    xnor: bool = False
    pe: int = 1
    simd: int = 1
    n_vectors: int = 1

    @property
    def in_features(self) -> int:
        return int(self.weights.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weights.shape[0])

    @property
    def cycles(self) -> int:
        return self.n_vectors * (self.in_features // self.simd) * (self.out_features // self.pe)

    @property
    def in_frame(self) -> int:
        return self.n_vectors * self.in_features

    @property
    def out_frame(self) -> int:
        return self.n_vectors * self.out_features

    @property
    def in_elems(self) -> int:
        return self.simd

    @property
    def out_width(self) -> int:
        return self.pe * self.out_type.bits

    @property
    def weight_width(self) -> int:
        return self.pe * self.simd * self.weight_type.bits

    @property
    def weight_memory_bits(self) -> int:
        return self.weights.size * self.weight_type.bits

    @property
    def threshold_memory_bits(self) -> int:
        return 0 if self.thresholds is None else self.thresholds.size * self.acc_type.bits

    def check(self) -> None:
        _divides(self.name, "PE", self.pe, self.out_features)
        _divides(self.name, "SIMD", self.simd, self.in_features)
        if not self.weight_type.contains(self.weights) and not (
            self.xnor and np.isin(self.weights, (0, 1)).all()
        ):
            raise ValueError(f"layer {self.name}: weights outside {self.weight_type}")
        if self.thresholds is not None:
            _threshold_out(
                self.name, self.thresholds, self.out_features, self.out_type, self.out_bias
            )
        elif self.out_type != self.acc_type:
            raise ValueError(f"layer {self.name}: without thresholds the output is the accumulator")


@dataclass(eq=False)
class Thresholding(Layer):
    """Standalone multi-thresholding of ``channels`` integer channels, ``pe`` per cycle."""

    kind: ClassVar[str] = "thresholding"
    channels: int
    thresholds: np.ndarray
    out_bias: int = 0
    pe: int = 1
    n_vectors: int = 1

    @property
    def in_features(self) -> int:
        return self.channels

    @property
    def out_features(self) -> int:
        return self.channels

    @property
    def cycles(self) -> int:
        return self.n_vectors * (self.channels // self.pe)

    @property
    def in_frame(self) -> int:
        return self.n_vectors * self.channels

    @property
    def out_frame(self) -> int:
        return self.n_vectors * self.channels

    @property
    def in_elems(self) -> int:
        return self.pe

    @property
    def out_width(self) -> int:
        return self.pe * self.out_type.bits

    @property
    def threshold_memory_bits(self) -> int:
        return self.thresholds.size * self.input_type.bits

    def check(self) -> None:
        _divides(self.name, "PE", self.pe, self.channels)
        _threshold_out(self.name, self.thresholds, self.channels, self.out_type, self.out_bias)


def _same_type(layer: Layer) -> None:
    if layer.out_type != layer.input_type:
        raise ValueError(
            f"layer {layer.name}: output type {layer.out_type}, expected the input's "
            f"{layer.input_type}"
        )


@dataclass(eq=False)
class ImageLayer(Layer):
    """A layer over an ``ifm_dim`` x ``ifm_dim`` image of ``channels`` channels per frame,
    channels-last, in ``kernel`` x ``kernel`` windows (sliding windows, pooling)."""

    ifm_dim: int
    channels: int
    kernel: int

    @property
    def in_frame(self) -> int:
        return self.ifm_dim**2 * self.channels


@dataclass(eq=False)
class SlidingWindow(ImageLayer):
    """Sliding windows of a convolution (im2col on a stream), zero padding included.

    Input per frame: an ``ifm_dim`` x ``ifm_dim`` image of ``channels`` channels, row-major,
    channels-last. Output per frame: for every output pixel (oy, ox), row-major,
    ``ofm_dim = (ifm_dim + 2*pad - kernel) // stride + 1``, the ``kernel`` x ``kernel`` x
    ``channels`` window in (ky, kx, c) order, c fastest (FINN's im2col order, the rows of the
    following MatVec's weights): element (ky, kx, c) is input pixel (oy*stride - pad + ky,
    ox*stride - pad + kx), ``pad_value`` outside the image. ``simd`` channels per word in and
    out.
    """

    kind: ClassVar[str] = "window"
    stride: int = 1
    pad: int = 0
    pad_value: int = 0
    simd: int = 1

    @property
    def ofm_dim(self) -> int:
        return (self.ifm_dim + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def out_frame(self) -> int:
        return self.ofm_dim**2 * self.kernel**2 * self.channels

    @property
    def cycles(self) -> int:
        # the unit takes one input and issues one output word per cycle, overlapped
        return max(self.in_frame, self.out_frame) // self.simd

    @property
    def in_elems(self) -> int:
        return self.simd

    @property
    def out_elems(self) -> int:
        return self.simd

    @property
    def out_width(self) -> int:
        return self.simd * self.out_type.bits

    def check(self) -> None:
        _divides(self.name, "SIMD", self.simd, self.channels)
        _same_type(self)
        if min(self.ifm_dim, self.channels, self.kernel, self.stride) < 1 or self.pad < 0:
            raise ValueError(f"layer {self.name}: image, channels, kernel and stride must be >= 1")
        if self.kernel > self.ifm_dim + 2 * self.pad:
            raise ValueError(
                f"layer {self.name}: kernel {self.kernel} larger than the padded image "
                f"({self.ifm_dim} + 2*{self.pad})"
            )
        if self.pad and not self.input_type.contains(np.array([self.pad_value])):
            raise ValueError(
                f"layer {self.name}: pad value {self.pad_value} outside {self.input_type}"
            )


@dataclass(eq=False)
class MaxPool(ImageLayer):
    """Max pooling of ``kernel`` x ``kernel`` windows with stride ``kernel`` (PyTorch's
    MaxPool2d without ceil_mode: the last ``ifm_dim % kernel`` rows and columns are dropped).
    Input and output channels-last, row-major, ``pe`` channels per word. Bipolar values are
    ordered as their encodings (-1 < +1)."""

    kind: ClassVar[str] = "maxpool"
    pe: int = 1

    @property
    def ofm_dim(self) -> int:
        return self.ifm_dim // self.kernel

    @property
    def out_frame(self) -> int:
        return self.ofm_dim**2 * self.channels

    @property
    def cycles(self) -> int:
        return self.in_frame // self.pe

    @property
    def in_elems(self) -> int:
        return self.pe

    @property
    def out_width(self) -> int:
        return self.pe * self.out_type.bits

    def check(self) -> None:
        _divides(self.name, "PE", self.pe, self.channels)
        _same_type(self)
        if not 1 <= self.kernel <= self.ifm_dim:
            raise ValueError(
                f"layer {self.name}: pool kernel {self.kernel} for a {self.ifm_dim}-pixel image"
            )


def rne_shift(v: np.ndarray, k: int) -> np.ndarray:
    """``v * 2**-k`` rounded half to even (``k > 0``) or shifted left (``k <= 0``): a Quant
    node's rounding of a power-of-two rescaling, on int64."""
    v = np.asarray(v, dtype=np.int64)
    if k <= 0:
        return v << -k
    q = v >> k  # floor
    rem = v - (q << k)
    half = 1 << (k - 1)
    up = (rem > half) | ((rem == half) & (q & 1 == 1))
    return q + up


@dataclass(eq=False)
class Recurrent(Layer):
    """A recurrent cell (LSTM or GRU) over ``steps`` time steps, state reset per sequence.

    Input per frame: ``steps`` vectors x_t of ``in_features`` integers (step-major). Output
    per frame: h_t of ``hidden`` integers for every step (``return_sequences``) or for the
    last only. Exact integer semantics (every quantity is an integer times a power of two;
    ``*_exp`` are those exponents; ``rne_shift`` rounds half to even as QONNX's Quant does):

    - gate products: ``acc[r] = sum_k W[r, k] * v[k]`` over ``v = [x_t << x_shift;
      h_{t-1} << h_shift]`` (GRU candidate rows: ``[x_t << x_shift; rh << h_shift]``).
      ``weights`` rows are gate-major, ``hidden`` rows per gate: LSTM i, f, o, g; GRU r, z, n.
      The last ``hidden`` rows are the candidate (tanh) gate, the others sigmoid gates.
    - sigmoid gates: ``count(acc >= gate_thresholds[r])`` (unsigned ``gate_type``, value
      ``* 2**gate_exp``); candidate: ``count(acc >= cand_thresholds[j]) + cand_bias``
      (``cand_type``, ``* 2**cand_exp``).
    - LSTM: ``c_t = clip(rne_shift(f*c_{t-1} << (e1 - m) + i*g << (e2 - m), cell_exp - m),
      cell_min, cell_max)`` with e1 = gate_exp + cell_exp, e2 = gate_exp + cand_exp,
      m = min(e1, e2); ``tc = count(c_t >= cell_thresholds) + cell_bias`` (``cell_act_type``,
      ``* 2**cell_act_exp``); ``h_t = clip(rne_shift(o*tc, h_exp - gate_exp - cell_act_exp),
      h_min, h_max)``.
    - GRU: ``rh = clip(rne_shift(r*h_{t-1}, -gate_exp), h_min, h_max)``; n from the candidate
      rows over [x_t; rh]; with ``one = 2**-gate_exp`` (1.0 in z's units),
      ``h_t = clip(rne_shift((one - z)*n << (e1 - m) + z*h_{t-1} << (e2 - m), h_exp - m),
      h_min, h_max)``, e1 = gate_exp + cand_exp, e2 = gate_exp + h_exp, m = min(e1, e2).
    - h_{-1} = 0, c_{-1} = 0 at the start of every frame.

    ``pe`` gate rows and ``simd`` elements of v per cycle; the matrix product of a step needs
    h_{t-1}, so the state loop bounds the step's cycles.
    """

    kind: ClassVar[str] = "recurrent"
    cell: Literal["lstm", "gru"]
    steps: int
    in_features: int
    hidden: int
    weight_type: IntType
    acc_type: IntType
    weights: np.ndarray
    gate_type: IntType
    gate_exp: int
    gate_thresholds: np.ndarray
    cand_type: IntType
    cand_exp: int
    cand_thresholds: np.ndarray
    cand_bias: int
    h_exp: int
    h_min: int
    h_max: int
    x_shift: int = 0
    h_shift: int = 0
    cell_type: IntType | None = None
    cell_exp: int = 0
    cell_min: int = 0
    cell_max: int = 0
    cell_act_type: IntType | None = None
    cell_act_exp: int = 0
    cell_thresholds: np.ndarray | None = None
    cell_bias: int = 0
    return_sequences: bool = False
    pe: int = 1
    simd: int = 1

    @property
    def n_gates(self) -> int:
        return 4 if self.cell == "lstm" else 3

    @property
    def v_features(self) -> int:
        """Elements of the vector the gates multiply: [x_t; h_{t-1}]."""
        return self.in_features + self.hidden

    @property
    def step_cycles(self) -> int:
        """Cycles of one time step in taper_rnn (hw/rtl/taper_rnn.sv): one issue per cycle of
        the gates' matrix product folded by PE x SIMD, then the update pipeline drains (7
        cycles for an LSTM) before the step commits h_t; a GRU's candidate rows wait for r*h
        (4 cycles) and its update drains in 5. The next step needs h_t: the state loop."""
        n = self.n_gates * (self.hidden // self.pe) * (self.v_features // self.simd)
        return n + (7 if self.cell == "lstm" else 4 + 5)

    @property
    def cycles(self) -> int:
        """Steady-state cycles per frame: a step every ``step_cycles``, unless its input (one
        element a cycle) or its output words (``return_sequences``: h_t of every step must
        leave before the next commits) take longer."""
        step = max(self.step_cycles, self.in_features)
        if self.return_sequences:
            return self.steps * max(step, self.hidden)
        return max(self.steps * step, self.hidden)

    @property
    def in_frame(self) -> int:
        return self.steps * self.in_features

    @property
    def out_frame(self) -> int:
        return (self.steps if self.return_sequences else 1) * self.hidden

    @property
    def in_elems(self) -> int:
        return 1

    @property
    def out_elems(self) -> int:
        return 1

    @property
    def out_width(self) -> int:
        return self.out_type.bits

    @property
    def weight_memory_bits(self) -> int:
        return self.weights.size * self.weight_type.bits

    @property
    def threshold_memory_bits(self) -> int:
        n = self.gate_thresholds.size + self.cand_thresholds.size
        if self.cell_thresholds is not None:
            n += self.cell_thresholds.size
        return n * self.acc_type.bits

    def check(self) -> None:
        name, h = self.name, self.hidden
        _divides(name, "PE", self.pe, h)
        _divides(name, "SIMD", self.simd, self.v_features)
        if self.weights.shape != (self.n_gates * h, self.v_features):
            raise ValueError(
                f"layer {name}: weights of shape {self.weights.shape}, expected "
                f"({self.n_gates * h}, {self.v_features})"
            )
        if not self.weight_type.contains(self.weights):
            raise ValueError(f"layer {name}: weights outside {self.weight_type}")
        if min(self.x_shift, self.h_shift) < 0:
            raise ValueError(f"layer {name}: negative input shifts")
        if self.gate_exp > 0:
            raise ValueError(f"layer {name}: gate scale 2**{self.gate_exp} above 1")
        gates = (self.n_gates - 1) * h
        _threshold_out(name, self.gate_thresholds, gates, self.gate_type, 0)
        _threshold_out(name, self.cand_thresholds, h, self.cand_type, self.cand_bias)
        if not (self.out_type.min <= self.h_min <= self.h_max <= self.out_type.max):
            raise ValueError(f"layer {name}: hidden range outside {self.out_type}")
        if self.cell == "lstm":
            if self.cell_type is None or self.cell_act_type is None:
                raise ValueError(f"layer {name}: an LSTM needs cell and cell_act types")
            if self.cell_thresholds is None:
                raise ValueError(f"layer {name}: an LSTM needs cell_thresholds")
            if not (self.cell_type.min <= self.cell_min <= self.cell_max <= self.cell_type.max):
                raise ValueError(f"layer {name}: cell range outside {self.cell_type}")
            _threshold_out(name, self.cell_thresholds, h, self.cell_act_type, self.cell_bias)


LAYER_KINDS: dict[str, type[Layer]] = {
    c.kind: c for c in (MatVec, Thresholding, SlidingWindow, MaxPool, Recurrent)
}


@dataclass(eq=False)
class FIFO(_Node):
    """Stream FIFO in front of a layer's input (``depth`` words of ``width`` bits)."""

    tensor: str
    depth: int
    width: int


@dataclass(eq=False)
class Model(_Node):
    """The whole accelerator: host edges around a chain of hardware layers."""

    name: str
    input_edge: InputEdge
    layers: list[Layer]
    output_edge: OutputEdge
    fifos: list[FIFO] = field(default_factory=list)
    board: str = "pynq-z2"
    part: str = "xc7z020clg400-1"
    clock_mhz: float = 100.0
    source: str = ""
    estimates: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def input_tensor(self) -> str:
        return self.layers[0].input

    @property
    def output_tensor(self) -> str:
        return self.layers[-1].output

    @property
    def ii_cycles(self) -> int:
        """Initiation interval of the pipeline: the slowest stage's cycles per frame."""
        return max(layer.cycles for layer in self.layers)

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.ii_cycles

    @property
    def latency_cycles(self) -> int:
        """First-frame latency estimate: every stage's cycles in sequence."""
        return sum(layer.cycles for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def check(self) -> None:
        """Structural and numeric consistency; ValueError names the layer."""
        known = {self.input_tensor: self.input_edge.out_type}
        elems = {self.input_tensor: int(np.prod(self.input_edge.shape))}
        for layer in self.layers:
            layer.check()
            if layer.input in elems and elems[layer.input] != layer.in_frame:
                raise ValueError(
                    f"layer {layer.name}: takes {layer.in_frame} elements per frame, "
                    f"its input {layer.input} has {elems[layer.input]}"
                )
            elems[layer.output] = layer.out_frame
            if layer.input not in known:
                raise ValueError(f"layer {layer.name}: input {layer.input} is produced by no layer")
            if known[layer.input] != layer.input_type:
                raise ValueError(
                    f"layer {layer.name}: input type {layer.input_type}, "
                    f"producer gives {known[layer.input]}"
                )
            known[layer.output] = layer.out_type
