"""A stand-in for the parts of `pynq` (4.0) a board driver uses, backed by Verilator.

The board and pynq's hardware access cannot exist here; everything behind them can: this
module simulates the generated ``<name>_shell`` (accelerator + AXI-lite counters) with the
C++ harness ``hw/tb/taper_shell_tb.cpp``, which plays the AXI DMA's two stream channels and
the processor's AXI-lite master. The package's ``driver.py`` runs unchanged against it:
`write_shim` writes a directory with a ``pynq`` package that re-exports this module; put it
first on PYTHONPATH and name the build directory (with ``ir.json``) in ``TAPER_SIM_PYNQ``.

What it models, as the real parts behave: `Overlay` has an ``ip_dict`` with the block
design's cells (``axi_dma``, ``accel``: names and VLNVs as hw/tcl/block_design.tcl makes
them); `DMA` channels (simple mode) stream a buffer's words in, one per cycle, and a receive
ends at TLAST (the shell closes a packet every FRAMES_PER_TLAST frames) or when the buffer is
full, which the real DMA flags as an error and so does this; `DefaultIP.read`/``write`` and
`MMIO` on the shell's address range are AXI-lite transactions. The clock runs only inside
`wait` and register accesses, so host-side time costs no cycles. Unlike pynq, a `wait` whose
stream does not move for a long time raises instead of spinning forever, and a channel must
be waited on before its next transfer.

Every public name here exists in pynq 4.0 with a compatible signature (`PYNQ_API` lists
them; tests/test_deploy.py checks it against the real package).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from compiler.backends.rtl.generate import generate
from compiler.backends.rtl.shell import FILELIST, shell_ports, write_shell
from compiler.backends.rtl.simulate import (
    DEFAULT_CACHE,
    MAKE_ARGS,
    VERILATOR_FLAGS,
    cache_entry,
    content_key,
    verilate,
)
from compiler.build import write_text
from compiler.ir.model import Model

HARNESS = Path(str(files("compiler.hw"))) / "tb" / "taper_shell_tb.cpp"
ENV = "TAPER_SIM_PYNQ"
DMA_CELL, SHELL_CELL = "axi_dma", "accel"
DMA_BASE, SHELL_BASE, ADDR_RANGE = 0x4040_0000, 0x43C0_0000, 0x1_0000
DMA_LENGTH_BITS = 26
IDLE_CYCLES = 1_000_000  # a wait whose streams do not move this long raises (or 4 latencies)

# (path in pynq 4.0, what it is) for every public name of this module's classes: the
# contract tests/test_deploy.py checks against the real package. "attr" means an instance
# attribute the real class sets in __init__ (or a property).
PYNQ_API: dict[str, str] = {
    "pynq.Overlay": "class",
    "pynq.Overlay.__init__": "function",
    "pynq.Overlay.ip_dict": "attr",
    "pynq.Overlay.bitfile_name": "attr",
    "pynq.Overlay.__getattr__": "function",
    "pynq.Overlay.is_loaded": "function",
    "pynq.Overlay.free": "function",
    "pynq.allocate": "function",
    "pynq.buffer.PynqBuffer": "class",
    "pynq.buffer.PynqBuffer.physical_address": "attr",
    "pynq.buffer.PynqBuffer.flush": "function",
    "pynq.buffer.PynqBuffer.invalidate": "function",
    "pynq.buffer.PynqBuffer.freebuffer": "function",
    "pynq.buffer.PynqBuffer.close": "function",
    "pynq.buffer.PynqBuffer.__enter__": "function",
    "pynq.buffer.PynqBuffer.__exit__": "function",
    "pynq.MMIO": "class",
    "pynq.MMIO.__init__": "function",
    "pynq.MMIO.read": "function",
    "pynq.MMIO.write": "attr",  # pynq binds write to write_mm or write_reg in __init__
    "pynq.MMIO.base_addr": "attr",
    "pynq.MMIO.length": "attr",
    "pynq.DefaultIP": "class",
    "pynq.DefaultIP.read": "function",
    "pynq.DefaultIP.write": "function",
    "pynq.DefaultIP.mmio": "attr",
    "pynq.lib.dma.DMA": "class",
    "pynq.lib.dma.DMA.sendchannel": "attr",
    "pynq.lib.dma.DMA.recvchannel": "attr",
    "pynq.lib.dma.DMA.buffer_max_size": "attr",
    "pynq.lib.dma.DMA.description": "attr",
    "pynq.lib.dma._SDMAChannel": "class",
    "pynq.lib.dma._SDMAChannel.transfer": "function",
    "pynq.lib.dma._SDMAChannel.wait": "function",
    "pynq.lib.dma._SDMAChannel.transferred": "attr",
    "pynq.lib.dma._SDMAChannel.idle": "attr",
    "pynq.lib.dma._SDMAChannel.running": "attr",
}


# ---------------------------------------------------------------------------- the simulator


def build(m: Model, cache: Path = DEFAULT_CACHE) -> tuple[Path, Path]:
    """Generate the accelerator and its shell and build the harness (cached by content);
    returns (binary, its directory)."""
    with tempfile.TemporaryDirectory() as tmp:
        rtl = Path(tmp)
        generate(m, rtl)
        shell = write_shell(m, rtl)
        salt = "\0".join([*VERILATOR_FLAGS, *MAKE_ARGS]).encode()
        d = Path(cache) / ("shell-" + content_key(rtl, HARNESS, salt))
        binary = d / "obj" / "Vshell"
        if binary.is_file():
            return binary, d
        with cache_entry(cache, d.name, rtl, shell, HARNESS) as stage:
            sources = [*(rtl / FILELIST).read_text().split(), HARNESS.name]
            verilate(stage, shell, sources, "Vshell", "verilator (the shell)", cache)
    return binary, d


class _Sim:
    """One running harness process: the shell's state lives as long as the overlay."""

    def __init__(self, m: Model):
        self.ports = shell_ports(m)
        binary, d = build(m)
        self.tmp = Path(tempfile.mkdtemp(prefix="taper-sim-pynq-"))
        self.proc = subprocess.Popen(
            [str(binary), str(self.ports.in_bytes), str(self.ports.out_bytes)],
            cwd=d,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.cycle = 0
        self.idle_cycles = max(IDLE_CYCLES, 4 * (m.latency_cycles + m.ii_cycles))
        atexit.register(self.close)

    def ask(self, line: str) -> list[str]:
        if self.proc.poll() is not None:
            raise RuntimeError("sim_pynq: the simulation has ended (overlay freed?)")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        if not reply:
            raise RuntimeError(f"sim_pynq: the simulation stopped answering ({line})")
        if reply[0] == "ERR":
            raise RuntimeError("sim_pynq: " + " ".join(reply[1:]))
        return reply

    def read(self, offset: int) -> int:
        reply = self.ask(f"R {offset}")
        self.cycle = int(reply[3])
        return int(reply[1])

    def write(self, offset: int, value: int) -> None:
        reply = self.ask(f"W {offset} {value & 0xFFFFFFFF} 15")
        self.cycle = int(reply[2])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("Q\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


_SIMS: list[_Sim] = []  # live simulations, found by MMIO through their address ranges


# ---------------------------------------------------------------------------- pynq's API


class PynqBuffer(np.ndarray):
    """A numpy array with a (made-up, aligned) physical address, as pynq.allocate gives."""

    _next_address = 0x1000_0000

    def __new__(cls, shape: int | tuple[int, ...], dtype: Any = "u4") -> PynqBuffer:
        obj = np.zeros(shape, dtype=dtype).view(cls)
        obj._address = PynqBuffer._next_address
        PynqBuffer._next_address += (obj.nbytes + 0xFFF) & ~0xFFF or 0x1000
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self._address = getattr(obj, "_address", 0)

    @property
    def physical_address(self) -> int:
        return self._address

    def flush(self) -> None:
        """Caches do not exist here."""

    def invalidate(self) -> None:
        """Caches do not exist here."""

    def freebuffer(self) -> None:
        """Nothing to free: numpy owns the memory."""

    def close(self) -> None:
        self.freebuffer()

    def __enter__(self) -> PynqBuffer:
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.freebuffer()


def allocate(
    shape: int | tuple[int, ...], dtype: Any = "u4", target: Any = None, **kwargs: Any
) -> PynqBuffer:
    """A contiguous buffer for DMA (``target`` and pynq's keywords are accepted, unused)."""
    return PynqBuffer(shape, dtype)


def _sim_at(address: int) -> _Sim:
    for s in reversed(_SIMS):
        if SHELL_BASE <= address < SHELL_BASE + ADDR_RANGE and s.proc.poll() is None:
            return s
    raise RuntimeError(f"sim_pynq: no simulated register file at 0x{address:08X}")


class MMIO:
    """Register access at ``base_addr``: AXI-lite transactions on the simulated shell."""

    def __init__(self, base_addr: int, length: int = 4, device: Any = None, **kwargs: Any):
        if base_addr < 0 or length < 0:
            raise ValueError("Base address or length cannot be negative.")
        self.base_addr = base_addr
        self.length = length
        self._sim = _sim_at(base_addr)
        self.write = self._write  # as pynq: the instance's write is bound in __init__

    def read(self, offset: int = 0, length: int = 4, word_order: str = "little") -> int:
        if length not in (1, 2, 4, 8):
            raise ValueError("MMIO currently only supports 1, 2, 4 and 8-byte reads.")
        if offset < 0:
            raise ValueError("Offset cannot be negative.")
        if offset % 4:
            raise MemoryError("Unaligned read: offset must be multiple of 4.")
        addr = self.base_addr - SHELL_BASE + offset
        lsb = self._sim.read(addr)
        if length == 8:
            msb = self._sim.read(addr + 4)
            return (msb << 32) + lsb if word_order == "little" else (lsb << 32) + msb
        return lsb & ((1 << (8 * length)) - 1)

    def _write(self, offset: int, data: int) -> None:
        if offset < 0:
            raise ValueError("Offset cannot be negative.")
        if offset % 4:
            raise MemoryError("Unaligned write: offset must be multiple of 4.")
        if not isinstance(data, int | np.integer):
            raise ValueError("sim_pynq: MMIO writes take an int")
        self._sim.write(self.base_addr - SHELL_BASE + offset, int(data))


class DefaultIP:
    """An IP without a dedicated driver: register reads and writes through its MMIO."""

    def __init__(self, description: dict):
        self.mmio = MMIO(description["phys_addr"], description["addr_range"])

    def read(self, offset: int = 0) -> int:
        return self.mmio.read(offset)

    def write(self, offset: int, value: int) -> None:
        self.mmio.write(offset, value)


class _SDMAChannel:
    """One simple-mode DMA channel; the harness moves the words when the clock runs."""

    def __init__(self, sim: _Sim, send: bool, width: int, max_size: int):
        self._sim = sim
        self._send = send
        self._width = width
        self._max_size = max_size
        self._active: tuple[PynqBuffer, int, int] | None = None
        self.transferred = 0

    @property
    def running(self) -> bool:
        return self._sim.proc.poll() is None

    @property
    def idle(self) -> bool:
        return self._active is None

    def transfer(self, array: PynqBuffer, start: int = 0, nbytes: int = 0) -> None:
        if self._active is not None:
            raise RuntimeError("DMA channel not idle (sim_pynq: wait() for the last transfer)")
        if not isinstance(array, PynqBuffer) or not array.flags["C_CONTIGUOUS"]:
            raise RuntimeError("sim_pynq: transfer a contiguous buffer from pynq.allocate()")
        if nbytes == 0:
            nbytes = array.nbytes - start
        if nbytes > self._max_size:
            raise ValueError(
                f"Transfer size is {nbytes} bytes, which exceeds "
                f"the maximum DMA buffer size {self._max_size}."
            )
        if start < 0 or nbytes <= 0 or start + nbytes > array.nbytes:
            raise RuntimeError("DMA Internal Error (transfer length 0?)")
        if (array.physical_address + start) % self._width or nbytes % self._width:
            raise RuntimeError(
                f"sim_pynq: a transfer of whole {self._width}-byte stream words from an "
                f"aligned address, got start {start}, {nbytes} bytes"
            )
        raw = array.reshape(-1).view(np.uint8)
        path = self._sim.tmp / ("send.bin" if self._send else "recv.bin")
        words = nbytes // self._width
        if self._send:
            path.write_bytes(raw[start : start + nbytes].tobytes())
            self._sim.ask(f"S {path} {words}")
        else:
            self._sim.ask(f"V {path} {words}")
        self.transferred = 0
        self._active = (array, start, nbytes)

    def wait(self) -> None:
        if self._active is None:
            return
        array, start, nbytes = self._active
        reply = self._sim.ask(f"T {'S' if self._send else 'V'} {self._sim.idle_cycles}")
        if reply[0] == "TIMEOUT":
            self._sim.cycle = int(reply[1])
            raise RuntimeError(
                f"sim_pynq: DMA {'send' if self._send else 'receive'} made no progress in "
                f"{self._sim.idle_cycles} cycles (on the board, wait() would hang)"
            )
        words, full, self._sim.cycle = int(reply[1]), reply[2] == "1", int(reply[3])
        self._active = None
        if self._send:
            self.transferred = nbytes
            return
        got = words * self._width
        data = np.frombuffer((self._sim.tmp / "recv.bin").read_bytes(), dtype=np.uint8)
        raw = array.reshape(-1).view(np.uint8)
        raw[start : start + got] = data[:got]
        self.transferred = got
        if full:
            raise RuntimeError(
                "DMA Internal Error: the stream packet (up to TLAST) is longer than the "
                f"{nbytes}-byte receive buffer"
            )


class DMA(DefaultIP):
    """The AXI DMA in simple mode: ``sendchannel`` (MM2S) and ``recvchannel`` (S2MM)."""

    def __init__(self, description: dict):
        self.description = description
        sim: _Sim = description["_sim"]
        params = description["parameters"]
        self.buffer_max_size = (1 << int(params["c_sg_length_width"])) - 1
        self.sendchannel = _SDMAChannel(
            sim, True, int(params["c_m_axis_mm2s_tdata_width"]) // 8, self.buffer_max_size
        )
        self.recvchannel = _SDMAChannel(
            sim, False, int(params["c_s_axis_s2mm_tdata_width"]) // 8, self.buffer_max_size
        )


class Overlay:
    """``Overlay(bitfile)``: the simulated design of the build named in ``TAPER_SIM_PYNQ``
    (the bitstream file itself is not read; it need not exist)."""

    def __init__(
        self,
        bitfile_name: str,
        dtbo: str | None = None,
        download: bool = True,
        ignore_version: bool = False,
        device: Any = None,
        gen_cache: bool = False,
    ):
        from compiler import ir

        build_dir = os.environ.get(ENV)
        if not build_dir:
            raise RuntimeError(f"sim_pynq: set {ENV} to the build directory (with ir.json)")
        m = ir.load(Path(build_dir))
        self.bitfile_name = str(bitfile_name)
        self._sim = _Sim(m)
        _SIMS.append(self._sim)
        p = self._sim.ports
        self.ip_dict = {
            DMA_CELL: {
                "fullpath": DMA_CELL,
                "type": "xilinx.com:ip:axi_dma:7.1",
                "phys_addr": DMA_BASE,
                "addr_range": ADDR_RANGE,
                "parameters": {
                    "c_include_sg": "0",
                    "c_sg_length_width": str(DMA_LENGTH_BITS),
                    "c_include_mm2s": "1",
                    "c_include_s2mm": "1",
                    "c_m_axis_mm2s_tdata_width": str(8 * p.in_bytes),
                    "c_s_axis_s2mm_tdata_width": str(8 * p.out_bytes),
                },
                "driver": DMA,
                "_sim": self._sim,
            },
            SHELL_CELL: {
                "fullpath": SHELL_CELL,
                "type": f"taper.dev:taper:{p.module}:1.0",
                "phys_addr": SHELL_BASE,
                "addr_range": ADDR_RANGE,
                "parameters": {},
                "driver": DefaultIP,
            },
        }
        self._drivers: dict[str, Any] = {}

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in self.__dict__.get("ip_dict", {}):
            raise AttributeError(f"Could not find IP or hierarchy {key} in overlay")
        if key not in self._drivers:
            desc = self.ip_dict[key]
            self._drivers[key] = desc["driver"](desc)
        return self._drivers[key]

    def is_loaded(self) -> bool:
        return self._sim.proc.poll() is None

    def free(self) -> None:
        self._sim.close()


def write_shim(directory: Path) -> Path:
    """Write ``directory/pynq/`` re-exporting this module (``pynq``, ``pynq.buffer``,
    ``pynq.lib.dma``); returns ``directory`` for PYTHONPATH."""
    directory = Path(directory)
    pkg = directory / "pynq"
    names = "Overlay, allocate, MMIO, DefaultIP, PynqBuffer"
    write_text(
        pkg / "__init__.py",
        f'"""Stand-in for pynq: compiler.deploy.sim_pynq."""\n'
        f"from compiler.deploy.sim_pynq import {names}  # noqa: F401\n"
        "from pynq import buffer, lib  # noqa: F401,E402\n",
    )
    write_text(
        pkg / "buffer.py",
        "from compiler.deploy.sim_pynq import PynqBuffer, allocate  # noqa: F401\n",
    )
    write_text(pkg / "lib" / "__init__.py", "from pynq.lib import dma  # noqa: F401\n")
    write_text(
        pkg / "lib" / "dma.py",
        "from compiler.deploy.sim_pynq import DMA, _SDMAChannel  # noqa: F401\n",
    )
    return directory
