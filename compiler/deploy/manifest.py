"""The deployment manifest: what a board driver needs to know about one accelerator.

``manifest.json`` in a deployment package is this model's JSON. The driver on the board reads
it with the standard library alone (it has no pydantic), so its layout is plain: streams,
host edges (in `compiler.sim.host_edges`' JSON form, floats exact), the expected timing from
the cycle model, the register map and the bitstream's file names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compiler.build import write_json
from compiler.errors import TaperError

FORMAT = 1
MANIFEST = "manifest.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stream(_Strict):
    """One side of the accelerator as the DMA sees it."""

    type: str = Field(description="element type, FINN's name (INT2, UINT4, BIPOLAR, ...)")
    elem_bits: int = Field(ge=1, le=64)
    signed: bool
    bipolar: bool
    elems_per_word: int = Field(ge=1)
    word_bits: int = Field(ge=1, description="the accelerator's stream width")
    dma_bytes: int = Field(ge=1, le=128, description="the padded DMA word: a power of two")
    words_per_frame: int = Field(ge=1)
    features: int = Field(ge=1, description="integers per frame")
    shape: list[int] = Field(description="host-side shape of one sample (float side)")

    @property
    def dma_bits(self) -> int:
        return 8 * self.dma_bytes

    @property
    def frame_bytes(self) -> int:
        return self.words_per_frame * self.dma_bytes


class IntTypeJSON(_Strict):
    bits: int = Field(ge=1, le=64)
    signed: bool
    bipolar: bool = False


class StepJSON(_Strict):
    op: Literal["mul", "add", "sub", "div", "softmax", "topk"]
    value: list[float] | None = None
    shape: list[int] | None = None
    k: int | None = Field(default=None, ge=1)  # topk: class labels


class InputEdgeJSON(_Strict):
    kind: Literal["quant", "thresholds", "identity"]
    in_shape: list[int]
    shape: list[int]
    type: IntTypeJSON
    scale: float = 1.0
    zero_point: float = 0.0
    rounding: str = "ROUND"
    narrow: bool = False
    thresholds: list[list[float]] | None = None
    thresholds_shape: list[int] | None = None
    bias: int = 0
    pre: list[StepJSON] = []
    perm: list[int] = []  # a CNN's NCHW -> NHWC on the host


class OutputEdgeJSON(_Strict):
    steps: list[StepJSON] = []
    out_shape: list[int] = []


class Expected(_Strict):
    """Timing of back-to-back frames (source always valid, sink always ready) from the cycle
    model, as the shell's counters measure it."""

    frames: int = Field(ge=2, description="frames of the run the numbers below are for")
    latency_cycles: int = Field(description="FIRST_LAST - FIRST_IN + 1")
    ii_cycles: float = Field(description="(LAST_LAST - FIRST_LAST) / (FRAMES_OUT - 1)")
    steady_ii_cycles: float = Field(description="cycles per frame in the steady state")
    fps: float = Field(description="clock / steady II")


class Manifest(_Strict):
    format: Literal[1] = FORMAT
    taper: str = Field(description="taper version that wrote it")
    name: str
    board: str
    part: str
    clock_mhz: float = Field(gt=0)
    shell: str = Field(description="the shell module (<name>_shell)")
    ip_name: str | None = Field(None, description="the shell's cell in the overlay (None: find)")
    dma_name: str | None = Field(None, description="the AXI DMA's cell (None: find)")
    magic: int
    registers: dict[str, int]
    input: Stream
    output: Stream
    input_edge: InputEdgeJSON
    output_edge: OutputEdgeJSON
    expected: Expected
    bitfile: str | None = None
    hwh: str | None = None
    driver: str = "driver.py"
    host_edges: str = "host_edges.py"

    def save(self, path: Path) -> Path:
        return write_json(Path(path), self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise TaperError(f"{path}: missing (write it with write_package)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TaperError(f"{path}: not a JSON manifest ({e})") from None
        try:
            return cls.model_validate(doc)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden":
                raise TaperError(f"{path}: unknown field '{loc}'") from None
            raise TaperError(f"{path}: field '{loc}': {err['msg']}") from None
