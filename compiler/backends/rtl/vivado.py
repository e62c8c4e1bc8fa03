"""The Vivado project of a PYNQ overlay: the accelerator shell packaged as an IP, a Zynq-7000
block design (PS7 with the board's preset, AXI DMA, interconnects, reset), synthesis,
implementation, bitstream, the ``.hwh`` hardware handoff and the reports.

:func:`write_project` always writes the complete, self-contained project directory (RTL copies,
a generated ``settings.tcl`` of sanitized names and numbers, taper's own Tcl templates from
``hw/tcl``, ``build.tcl``, ``README.md``, ``project.json``); :func:`run` builds it where
``vivado`` is on PATH (None elsewhere) and parses the reports.

Layout of a project directory ``out``::

    build.tcl settings.tcl tcl/*.tcl rtl/*   written by write_project
    output/<name>.bit output/<name>.hwh      the overlay (same stem: pynq.Overlay loads both)
    reports/utilization.rpt utilization_hier.rpt timing_summary.rpt ps_config.txt
    vivado.json                              what run() parsed
    work/                                    Vivado's projects (IP packaging, block design)

Nothing from the model reaches Tcl but its sanitized name (``[A-Za-z][A-Za-z0-9_]*``), numbers,
and RTL file names checked to be ``<identifier>.<sv|v|mem>``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from compiler.backends.rtl.generate import ident
from compiler.build import staged_dir, write_json, write_text
from compiler.errors import TaperError
from compiler.ir.model import Model

TEMPLATES = Path(str(files("compiler.hw"))) / "tcl"
TEMPLATE_STEPS = ("package_ip.tcl", "block_design.tcl", "implement.tcl")
BUILD_TCL = "build.tcl"
SETTINGS_TCL = "settings.tcl"
PROJECT_JSON = "project.json"
RESULT_JSON = "vivado.json"
RUN_LOG = "vivado_run.log"
REPORTS = "reports"
OUTPUT = "output"
UTILIZATION = "utilization.rpt"
UTILIZATION_HIER = "utilization_hier.rpt"
TIMING = "timing_summary.rpt"
PS_CONFIG = "ps_config.txt"
SHELL_FILELIST = "shell_filelist.f"  # written by the shell step: every source, shell last

VIVADO = "vivado"
IO_PLL_MHZ = 1000.0  # the PS7 IO PLL of PYNQ's presets (50 MHz crystal x 20)
FCLK_MIN_MHZ, FCLK_MAX_MHZ = 10.0, 250.0  # the fabric clocks the PS7 drives (DS187)
FCLK_DIVISOR_MAX = 63  # each of FCLK0's two 6-bit dividers
DMA_LENGTH_BITS = 26  # the AXI DMA's widest buffer-length register: 64 MiB - 1 per transfer
DMA_STREAM_BITS = (8, 16, 32, 64, 128, 256, 512, 1024)
DMA_BASE = 0x4040_0000
SHELL_BASE = 0x43C0_0000
SHELL_CELL = "accel"
IP_VENDOR, IP_LIBRARY, IP_VERSION = "taper.dev", "taper", "1.0"

# The shell's ports: the contract packaged by hw/tcl/package_ip.tcl.
SHELL_PORTS = (
    "clk",
    "rst_n",
    *(f"s_axis_{s}" for s in ("tdata", "tvalid", "tready", "tlast")),
    *(f"m_axis_{s}" for s in ("tdata", "tvalid", "tready", "tlast", "tkeep")),
    *(
        f"s_axil_{s}"
        for s in ("awaddr", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready",
                  "bresp", "bvalid", "bready", "araddr", "arvalid", "arready", "rdata",
                  "rresp", "rvalid", "rready")
    ),
)  # fmt: skip

# PS7 values of the PYNQ-Z1 and PYNQ-Z2 as PYNQ's own board designs set them (the two boards
# wire the PS alike: 16-bit DDR3 at 525 MHz, 50 MHz crystal, QSPI, Ethernet, SD, UART0 and USB0
# on MIO). Used when Vivado lacks the board files; Vivado derives the rest (MIO pin types,
# PLL and divider settings) from these.
PYNQ_PS7: dict[str, str] = {
    "PCW_PRESET_BANK0_VOLTAGE": "LVCMOS 3.3V",
    "PCW_PRESET_BANK1_VOLTAGE": "LVCMOS 1.8V",
    "PCW_CRYSTAL_PERIPHERAL_FREQMHZ": "50",
    "PCW_APU_PERIPHERAL_FREQMHZ": "650",
    "PCW_UIPARAM_DDR_MEMORY_TYPE": "DDR 3",
    "PCW_UIPARAM_DDR_PARTNO": "MT41J256M16 RE-125",
    "PCW_UIPARAM_DDR_BUS_WIDTH": "16 Bit",
    "PCW_UIPARAM_DDR_FREQ_MHZ": "525",
    "PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL": "1",
    "PCW_UIPARAM_DDR_TRAIN_READ_GATE": "1",
    "PCW_UIPARAM_DDR_TRAIN_DATA_EYE": "1",
    "PCW_UIPARAM_DDR_BOARD_DELAY0": "0.223",
    "PCW_UIPARAM_DDR_BOARD_DELAY1": "0.212",
    "PCW_UIPARAM_DDR_BOARD_DELAY2": "0.085",
    "PCW_UIPARAM_DDR_BOARD_DELAY3": "0.092",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_0": "0.040",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_1": "0.058",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_2": "-0.009",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3": "-0.033",
    "PCW_QSPI_PERIPHERAL_ENABLE": "1",
    "PCW_QSPI_GRP_SINGLE_SS_ENABLE": "1",
    "PCW_QSPI_GRP_SINGLE_SS_IO": "MIO 1 .. 6",
    "PCW_QSPI_GRP_FBCLK_ENABLE": "1",
    "PCW_QSPI_GRP_FBCLK_IO": "MIO 8",
    "PCW_SINGLE_QSPI_DATA_MODE": "x4",
    "PCW_ENET0_PERIPHERAL_ENABLE": "1",
    "PCW_ENET0_ENET0_IO": "MIO 16 .. 27",
    "PCW_ENET0_GRP_MDIO_ENABLE": "1",
    "PCW_ENET0_GRP_MDIO_IO": "MIO 52 .. 53",
    "PCW_ENET0_PERIPHERAL_FREQMHZ": "1000 Mbps",
    "PCW_ENET0_RESET_ENABLE": "1",
    "PCW_ENET0_RESET_IO": "MIO 9",
    "PCW_SD0_PERIPHERAL_ENABLE": "1",
    "PCW_SD0_SD0_IO": "MIO 40 .. 45",
    "PCW_SD0_GRP_CD_ENABLE": "1",
    "PCW_SD0_GRP_CD_IO": "MIO 47",
    "PCW_SDIO_PERIPHERAL_FREQMHZ": "50",
    "PCW_UART0_PERIPHERAL_ENABLE": "1",
    "PCW_UART0_UART0_IO": "MIO 14 .. 15",
    "PCW_UART0_BAUD_RATE": "115200",
    "PCW_USB0_PERIPHERAL_ENABLE": "1",
    "PCW_USB0_USB0_IO": "MIO 28 .. 39",
    "PCW_USB0_RESET_ENABLE": "1",
    "PCW_USB0_RESET_IO": "MIO 46",
    "PCW_GPIO_MIO_GPIO_ENABLE": "1",
}


@dataclass(frozen=True)
class PsBoard:
    """A Zynq-7000 board: its part, the board part of its Vivado board files, its PS7 values."""

    name: str
    part: str
    board_part: str
    ps7: dict[str, str]


PS_BOARDS = {
    b.name: b
    for b in (
        PsBoard("pynq-z1", "xc7z020clg400-1", "www.digilentinc.com:pynq-z1:part0:1.0", PYNQ_PS7),
        PsBoard("pynq-z2", "xc7z020clg400-1", "tul.com.tw:pynq-z2:part0:1.0", PYNQ_PS7),
    )
}

_TCL_VALUE = re.compile(r"[A-Za-z0-9 ._:()+-]*")  # nothing Tcl substitutes or groups on
_BOARD_PART = re.compile(r"[A-Za-z0-9.-]+:[A-Za-z0-9.-]+:part0:[0-9.]+")
_PART = re.compile(r"[a-z0-9-]+")
_RTL_FILE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\.(sv|v|svh|vh)")
_MEM_FILE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\.mem")


def ps_board(board: str) -> PsBoard:
    try:
        return PS_BOARDS[board]
    except KeyError:
        raise TaperError(
            f"board: no Vivado project for '{board}': expected one of {', '.join(PS_BOARDS)}"
        ) from None


def _fclk_divisors() -> dict[int, tuple[int, int]]:
    return {
        a * b: (a, b)
        for a in range(1, FCLK_DIVISOR_MAX + 1)
        for b in range(1, FCLK_DIVISOR_MAX + 1)
        if FCLK_MIN_MHZ <= IO_PLL_MHZ / (a * b) <= FCLK_MAX_MHZ
    }


def fclk(clock_mhz: float) -> tuple[float, tuple[int, int]]:
    """The FCLK0 frequency the PS makes for ``clock_mhz`` (its IO PLL over two integer
    dividers, within 0.1 %) and the dividers; TaperError when it cannot make it."""
    c = float(clock_mhz)
    if not (math.isfinite(c) and FCLK_MIN_MHZ <= c <= FCLK_MAX_MHZ):
        raise TaperError(
            f"clock_mhz: the PS's fabric clock FCLK0 runs at {FCLK_MIN_MHZ:g} to "
            f"{FCLK_MAX_MHZ:g} MHz, got {clock_mhz}"
        )
    divisors = _fclk_divisors()
    n = min(divisors, key=lambda k: abs(IO_PLL_MHZ / k - c))
    f = IO_PLL_MHZ / n
    if abs(f - c) > 1e-3 * c:
        below = IO_PLL_MHZ / min(k for k in divisors if IO_PLL_MHZ / k < c)
        above = IO_PLL_MHZ / max(k for k in divisors if IO_PLL_MHZ / k > c)
        raise TaperError(
            f"clock_mhz: the PS makes FCLK0 as {IO_PLL_MHZ:g} MHz over two integer dividers, "
            f"not {c:g} MHz: nearest {below:.6g} or {above:.6g} MHz"
        )
    return f, divisors[n]


def tcl_name(name: str) -> str:
    """A Tcl- and Verilog-safe identifier for ``name``: anything outside [A-Za-z0-9_]
    becomes '_', a name not starting with a letter gets a 'm_' prefix."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not re.match(r"[A-Za-z]", s):
        s = f"m_{s}"
    return ident(s)


def _pow2_bytes(bits: int) -> int:
    return 1 << max(0, math.ceil(bits / 8) - 1).bit_length()


def _stream(design: dict, key: str) -> tuple[int, int]:
    """(bytes of the shell's TDATA, words per frame) of the input or output stream."""
    try:
        s = design[key]
        width, words = int(s["width"]), int(s["words_per_frame"])
    except (KeyError, TypeError, ValueError):
        raise TaperError(
            f"design.json: {key}: expected width and words_per_frame (the rtl step writes them)"
        ) from None
    nbytes = _pow2_bytes(width)
    if width < 1 or words < 1 or 8 * nbytes not in DMA_STREAM_BITS:
        raise TaperError(
            f"design.json: {key}: a {width}-bit stream; the AXI DMA streams 8 to 1024 bits"
        )
    return nbytes, words


def _tcl_value(v: object) -> str:
    s = str(v)
    if not _TCL_VALUE.fullmatch(s):  # table constants only: a bad one is taper's bug
        raise ValueError(f"not a plain Tcl value: {s!r}")
    return f"{{{s}}}" if not s or " " in s else s


def _rtl_sources(rtl_dir: Path, shell: str) -> tuple[list[str], list[str]]:
    """(HDL files in compile order with the shell last, memory files) of ``rtl_dir``.

    The shell step's ``shell_filelist.f`` lists every source in compile order; without it,
    ``filelist.f`` (the accelerator) and then every other HDL file in ``rtl_dir``."""
    filelist = rtl_dir / SHELL_FILELIST
    if not filelist.is_file():
        filelist = rtl_dir / "filelist.f"
    if not filelist.is_file():
        raise TaperError(f"{filelist}: missing: expected the rtl step's file list")
    hdl = [ln.strip() for ln in filelist.read_text().splitlines() if ln.strip()]
    if filelist.name != SHELL_FILELIST:
        hdl += sorted(
            p.name for p in rtl_dir.iterdir() if p.suffix in (".sv", ".v") and p.name not in hdl
        )
    shell_file = next((f for f in hdl if Path(f).stem == shell), None)
    if shell_file is None:
        raise TaperError(
            f"{rtl_dir}: no {shell}.sv: expected the accelerator shell module {shell} "
            f"(listed in {filelist.name} or next to it)"
        )
    mems = sorted(p.name for p in rtl_dir.glob("*.mem"))
    for f in hdl:
        if not _RTL_FILE.fullmatch(f):
            raise TaperError(
                f"{filelist}: '{f}': expected a file name <identifier>.sv or .v in {rtl_dir}"
            )
        if not (rtl_dir / f).is_file():
            raise TaperError(f"{filelist}: '{f}' is not in {rtl_dir}")
    for f in mems:
        if not _MEM_FILE.fullmatch(f):
            raise TaperError(f"{rtl_dir / f}: expected a memory file name <identifier>.mem")
    text = (rtl_dir / shell_file).read_text(errors="replace")
    missing = [p for p in SHELL_PORTS if not re.search(rf"\b{p}\b", text)]
    if not re.search(rf"\bmodule\s+{shell}\b", text) or missing:
        what = f"ports {', '.join(missing)}" if missing else f"module {shell}"
        raise TaperError(f"{rtl_dir / shell_file}: no {what}: expected the shell's contract")
    return [f for f in hdl if f != shell_file] + [shell_file], mems


def _settings(meta: dict[str, Any], board: PsBoard) -> str:
    for k, v in (("taper_part", board.part), ("taper_board_part", board.board_part)):
        if not (_PART if k == "taper_part" else _BOARD_PART).fullmatch(v):
            raise ValueError(f"{k}: {v!r}")  # table constants: a bad one is taper's bug
    ps7 = " \\\n    ".join(f"CONFIG.{k} {_tcl_value(v)}" for k, v in board.ps7.items())
    names = ("name", "shell", "bd")
    lines = [
        "# Generated by taper; do not edit (write_project writes it anew).",
        "# Identifiers are sanitized ([A-Za-z][A-Za-z0-9_]*), file names are",
        "# <identifier>.<extension>, the rest are numbers and board-table constants.",
        *(f"set taper_{k} {ident(meta[k])}" for k in names),
        f"set taper_board {ident(meta['board'].replace('-', '_'))}",
        f"set taper_part {board.part}",
        f"set taper_board_part {board.board_part}",
        f"set taper_ip_vendor {IP_VENDOR}",
        f"set taper_ip_library {IP_LIBRARY}",
        f"set taper_ip_version {IP_VERSION}",
        f"set taper_fclk_mhz {meta['fclk_mhz']:.6f}",
        f"set taper_fclk_hz {round(meta['fclk_mhz'] * 1e6)}",
        f"set taper_in_bytes {int(meta['in_bytes'])}",
        f"set taper_out_bytes {int(meta['out_bytes'])}",
        f"set taper_mm2s_mm_bits {int(meta['mm2s_mm_bits'])}",
        f"set taper_s2mm_mm_bits {int(meta['s2mm_mm_bits'])}",
        f"set taper_dma_length_bits {int(meta['dma_length_bits'])}",
        f"set taper_dma_base 0x{int(meta['dma_base']):08X}",
        f"set taper_shell_base 0x{int(meta['shell_base']):08X}",
        "set taper_rtl_files {" + " ".join(meta["rtl_files"]) + "}",
        "set taper_mem_files {" + " ".join(meta["mem_files"]) + "}",
        f"set taper_ps7_table [list \\\n    {ps7} \\\n]",
        "",
    ]
    return "\n".join(lines)


def write_project(m: Model, rtl_dir: Path, out: Path, board: str, clock_mhz: float) -> Path:
    """Write the complete Vivado project of ``m`` (RTL in ``rtl_dir``, from the rtl step, with
    the shell ``<name>_shell``) for ``board`` at ``clock_mhz`` into ``out``; returns ``out``.

    The directory is staged next to ``out`` and moved into place whole."""
    b = ps_board(board)
    fclk_mhz, dividers = fclk(clock_mhz)
    rtl_dir, out = Path(rtl_dir), Path(out)
    name = tcl_name(m.name)
    shell = ident(f"{name}_shell")
    design_json = rtl_dir / "design.json"
    try:
        design = json.loads(design_json.read_text())
    except (OSError, ValueError):
        raise TaperError(
            f"{design_json}: missing or not JSON: expected the rtl step's design.json"
        ) from None
    in_bytes, in_words = _stream(design, "input")
    out_bytes, out_words = _stream(design, "output")
    frame_bytes = max(in_bytes * in_words, out_bytes * out_words)
    hdl, mems = _rtl_sources(rtl_dir, shell)
    meta: dict[str, Any] = {
        "name": name,
        "shell": shell,
        "bd": ident(f"{name}_bd"),
        "board": b.name,
        "part": b.part,
        "board_part": b.board_part,
        "clock_mhz": float(clock_mhz),
        "fclk_mhz": fclk_mhz,
        "fclk_dividers": list(dividers),
        "in_bytes": in_bytes,
        "out_bytes": out_bytes,
        "in_words_per_frame": in_words,
        "out_words_per_frame": out_words,
        "mm2s_mm_bits": max(32, 8 * in_bytes),
        "s2mm_mm_bits": max(32, 8 * out_bytes),
        "dma_length_bits": DMA_LENGTH_BITS,
        "max_batch_frames": ((1 << DMA_LENGTH_BITS) - 1) // frame_bytes,
        "dma_base": DMA_BASE,
        "shell_base": SHELL_BASE,
        "shell_cell": SHELL_CELL,
        "rtl_files": hdl,
        "mem_files": mems,
        "bitstream": f"{OUTPUT}/{name}.bit",
        "hwh": f"{OUTPUT}/{name}.hwh",
        "command": " ".join(command(out)),
    }
    if meta["max_batch_frames"] < 1:
        raise TaperError(
            f"design.json: a {frame_bytes}-byte frame exceeds the DMA's "
            f"{(1 << DMA_LENGTH_BITS) - 1}-byte transfer"
        )
    settings = _settings(meta, b)
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(out.parent, out.name) as tmp:
        (tmp / "rtl").mkdir()
        for f in hdl + mems:
            shutil.copyfile(rtl_dir / f, tmp / "rtl" / f)
        (tmp / "tcl").mkdir()
        for f in TEMPLATE_STEPS:
            shutil.copyfile(TEMPLATES / f, tmp / "tcl" / f)
        shutil.copyfile(TEMPLATES / BUILD_TCL, tmp / BUILD_TCL)
        write_text(tmp / SETTINGS_TCL, settings)
        write_json(tmp / PROJECT_JSON, meta)
        write_text(
            tmp / "README.md",
            f"Build with Vivado 2020.1 or newer, from this directory: "
            f"`{' '.join(command(out))}` -> {meta['bitstream']} and {meta['hwh']} "
            f"for pynq.Overlay on the {b.name}; reports in {REPORTS}/.\n",
        )
        _swap(tmp, out)
    return out


def _swap(new: Path, dst: Path) -> None:
    if dst.exists():
        old = dst.with_name(f".{dst.name}.partial-{os.getpid()}-old")
        shutil.rmtree(old, ignore_errors=True)
        dst.rename(old)
        new.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(dst)


def command(out: Path) -> list[str]:
    """The command that builds the project; run it with ``out`` as the working directory."""
    return [VIVADO, "-mode", "batch", "-source", BUILD_TCL]


# -- reports


def _table_rows(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in ln.strip().strip("|").split("|")]
        for ln in text.splitlines()
        if ln.lstrip().startswith("|") and not ln.lstrip().startswith("|-")
    ]


def _number(s: str, where: str) -> float:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        raise TaperError(f"{where}: '{s}' is not a number") from None


UTILIZATION_ROWS = {
    "Slice LUTs": "lut",
    "CLB LUTs": "lut",
    "Slice Registers": "ff",
    "CLB Registers": "ff",
    "Block RAM Tile": "bram36",
    "DSPs": "dsp",
}


def parse_utilization(text: str, where: str = UTILIZATION) -> dict[str, float]:
    """LUT, FF, BRAM (36 Kb tiles) and DSP counts of a report_utilization report."""
    found: dict[str, float] = {}
    for row in _table_rows(text):
        key = UTILIZATION_ROWS.get(row[0].rstrip("*").strip())
        if key and key not in found and len(row) > 1:
            found[key] = _number(row[1], f"{where}: {row[0]}")
    missing = [k for k in ("lut", "ff", "bram36", "dsp") if k not in found]
    if missing:
        raise TaperError(f"{where}: no {', '.join(missing)} row: expected report_utilization")
    return {k: (v if k == "bram36" else int(v)) for k, v in found.items()}


def parse_hier_utilization(text: str, instance: str) -> dict[str, float] | None:
    """The counts of ``instance`` in a report_utilization -hierarchical report, if listed."""
    header: list[str] | None = None
    for row in _table_rows(text):
        if row and row[0] == "Instance":
            header = row
            continue
        if header is None or row[0] != instance:
            continue
        cols = dict(zip(header, row, strict=False))
        try:
            dsp = next(v for k, v in cols.items() if k.startswith("DSP"))
            return {
                "lut": int(_number(cols["Total LUTs"], instance)),
                "ff": int(_number(cols["FFs"], instance)),
                "bram36": _number(cols["RAMB36"], instance) + _number(cols["RAMB18"], instance) / 2,
                "dsp": int(_number(dsp, instance)),
            }
        except (KeyError, StopIteration):
            return None
    return None


def parse_timing(text: str, clock: str = "clk_fpga_0", where: str = TIMING) -> dict[str, Any]:
    """WNS (ns, None without constrained paths) and the period of ``clock`` (ns; the first
    clock when ``clock`` is not listed) of a report_timing_summary report."""
    lines = text.splitlines()
    wns: float | None = None
    seen = False
    for i, ln in enumerate(lines):
        if "WNS(ns)" in ln:
            values = [v for v in lines[i + 1 :] if v.strip() and not set(v.strip()) <= {"-", " "}]
            if values:
                first = values[0].split()[0]
                wns = None if first.lower() in ("inf", "-inf", "nan") else _number(first, where)
                seen = True
            break
    if not seen:
        raise TaperError(f"{where}: no WNS(ns) table: expected report_timing_summary")
    periods: dict[str, float] = {}
    row = re.compile(r"^\s*(\S+)\s+\{[^}]*\}\s+([0-9.]+)\s+([0-9.]+)\s*$")
    for i, ln in enumerate(lines):
        if re.match(r"^\s*Clock\s+Waveform\(ns\)\s+Period\(ns\)", ln):
            for r in lines[i + 1 :]:
                mt = row.match(r)
                if mt:
                    periods.setdefault(mt.group(1), float(mt.group(2)))
                elif r.strip() and not r.strip().startswith("-"):
                    break
            break
    period = periods.get(clock, next(iter(periods.values()), None))
    return {"wns_ns": wns, "period_ns": period}


def read_results(out: Path) -> dict[str, Any]:
    """Parse the reports and check the overlay files of a built project."""
    out = Path(out)
    meta = json.loads((out / PROJECT_JSON).read_text())
    reports = out / REPORTS

    def text(name: str) -> str:
        p = reports / name
        if not p.is_file():
            raise TaperError(f"{p}: missing: Vivado finished without writing it")
        return p.read_text(errors="replace")

    r: dict[str, Any] = dict(parse_utilization(text(UTILIZATION), str(reports / UTILIZATION)))
    timing = parse_timing(text(TIMING), where=str(reports / TIMING))
    period = timing["period_ns"] or 1e3 / meta["fclk_mhz"]
    wns = timing["wns_ns"]
    r["wns_ns"] = wns
    r["target_mhz"] = round(1e3 / period, 3)
    r["achieved_mhz"] = None if wns is None or wns >= period else round(1e3 / (period - wns), 3)
    r["timing_met"] = wns is None or wns >= 0
    hier = reports / UTILIZATION_HIER
    if hier.is_file():
        acc = parse_hier_utilization(hier.read_text(errors="replace"), meta["shell_cell"])
        if acc is not None:
            r["accelerator"] = acc
    ps = reports / PS_CONFIG
    if ps.is_file():
        r["ps_config"] = ps.read_text().strip()
    for key in ("bitstream", "hwh"):
        if not (out / meta[key]).is_file():
            raise TaperError(f"{out / meta[key]}: missing: Vivado finished without writing it")
        r[key] = str(out / meta[key])
    return r


def _errors(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    errs = [ln.strip() for ln in lines if ln.startswith(("ERROR", "CRITICAL WARNING"))]
    return "; ".join((errs or [ln.strip() for ln in lines if ln.strip()][-2:])[:3]) or "no output"


def run(out: Path, timeout: float = 6 * 3600) -> dict[str, Any] | None:
    """Build the project in ``out`` with Vivado: None when ``vivado`` is not on PATH, else the
    parsed results (lut, ff, bram36, dsp, wns_ns, achieved_mhz, seconds, ...), also written to
    ``out/vivado.json``. TaperError when Vivado fails, times out or leaves a file unwritten."""
    out = Path(out)
    exe = shutil.which(VIVADO)
    if exe is None:
        return None
    if not (out / BUILD_TCL).is_file() or not (out / PROJECT_JSON).is_file():
        raise TaperError(f"{out}: no {BUILD_TCL}: expected a project from write_project")
    for d in (REPORTS, OUTPUT):
        shutil.rmtree(out / d, ignore_errors=True)
    (out / RESULT_JSON).unlink(missing_ok=True)
    cmd = [exe, *command(out)[1:]]
    log = out / RUN_LOG
    start = time.monotonic()
    with log.open("w") as f:
        p = subprocess.Popen(
            cmd, cwd=out, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(p)
            raise TaperError(f"vivado did not finish within {timeout:g} s (log {log})") from None
        except BaseException:
            _kill_group(p)
            raise
    seconds = time.monotonic() - start
    if rc != 0:
        raise TaperError(f"vivado failed (exit {rc}, log {log}): {_errors(log)}")
    r = read_results(out)
    r["seconds"] = round(seconds, 1)
    write_json(out / RESULT_JSON, r)
    return r


def _kill_group(p: subprocess.Popen) -> None:
    """End Vivado and what it started (its own process group, made by start_new_session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue
