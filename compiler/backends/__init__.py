"""Back ends behind one interface: each reads the IR and the front end's record of a build
and writes its project (one flow step), names the reference that checks it, and runs its
vendor build where the tool is installed. A new back end is one registered class."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from compiler import build as B
from compiler.errors import TaperError


class Backend:
    name: ClassVar[str]
    step: ClassVar[str]  # the flow step that writes the project
    writes: ClassVar[str]  # the artifact it writes in the build
    reference: ClassVar[str]  # the `taper verify` reference that checks the project
    vendor_tool: ClassVar[str]  # what the bitstream step needs
    vendor_command: ClassVar[str]

    def check_model(self, qonnx: Path, input_type: str | None, display: str) -> None:
        """Refuse, before the front end runs, a model this back end cannot take exactly."""

    def write(self, build: Path, out: Path, quiet: bool) -> str:
        """Write the project into ``out`` (a staging path for ``build / self.writes``)."""
        raise NotImplementedError

    def vendor_available(self) -> bool:
        return shutil.which(self.vendor_command) is not None

    def bitstream(self, build: Path, quiet: bool) -> str | None:
        """The vendor build; None when the tool is missing (the step then waits)."""
        return None


class RTL(Backend):
    name = "rtl"
    step = "rtl"
    writes = B.RTL_DIR
    reference = "rtl"
    vendor_tool = "Vivado"
    vendor_command = "vivado"

    def write(self, build: Path, out: Path, quiet: bool) -> str:
        from compiler import ir
        from compiler.backends.rtl.generate import generate
        from compiler.backends.rtl.shell import write_shell

        m = ir.load(build)
        s = generate(m, out)
        note = f"top {s['top']}, {len(s['files'])} files"
        try:  # the PYNQ overlay's AXI wrapper (DMA streams, counters)
            return f"{note}, shell {write_shell(m, out)}"
        except TaperError as e:  # e.g. a stream wider than the DMA: the Vivado project says so
            return f"{note}; no PYNQ shell ({e})"

    def bitstream_project(self, build: Path, out: Path, quiet: bool) -> tuple[str, str | None]:
        """Write the board's bitstream build into ``out`` and run it where the tools are:
        (note, the tool it waits for or None)."""
        from compiler import ir
        from compiler.boards import board

        m = ir.load(build)
        b = board(m.board)
        rtl = Path(build) / B.RTL_DIR
        if b.family == "ecp5":
            from compiler.backends.rtl import ecp5

            r = ecp5.bitstream(m, rtl, out, b.name, m.clock_mhz)
            u = r["utilization"]
            return (
                f"{r['bitstream']}: Fmax {r['fmax_mhz']} MHz at {r['clock_mhz']:g} MHz, "
                f"{u['LUT4']['used']:,} LUT4, {u['FF']['used']:,} FF, "
                f"{u['DP16KD']['used']} DP16KD, {u['MULT18']['used']} MULT18",
                None,
            )
        from compiler.backends.rtl import vivado

        vivado.write_project(m, rtl, out, b.name, m.clock_mhz)
        r = vivado.run(out)
        if r is None:
            cmd = " ".join(vivado.command(out))
            final = Path(build) / B.BITSTREAM_DIR  # `out` is the step's staging copy of it
            return (
                f"Vivado project written; on a machine with Vivado: cd {final} && {cmd}",
                "Vivado",
            )
        return (
            f"{Path(r['bitstream']).name}: {r['lut']:,.0f} LUT, {r['ff']:,.0f} FF, "
            f"{r['bram36']:g} BRAM36, {r['dsp']:.0f} DSP; WNS {r['wns_ns']} ns, "
            f"{r['achieved_mhz']:.1f} MHz",
            None,
        )


class HLS4ML(Backend):
    name = "hls4ml"
    step = "hls4ml"
    writes = B.HLS4ML_DIR
    reference = "hls4ml"
    vendor_tool = "Vitis HLS"
    vendor_command = "vitis-run"

    def check_model(self, qonnx: Path, input_type: str | None, display: str) -> None:
        from compiler.backends.hls4ml import convert

        convert.check_source(qonnx, input_type, display)

    def write(self, build: Path, out: Path, quiet: bool) -> str:
        from compiler.backends.hls4ml import convert, vitis

        meta = convert.write_project(build, out, Path(build) / B.HLS4ML_DIR, quiet=quiet)
        vitis.write_build_options(out)
        return f"project {meta['project']}"

    def bitstream(self, build: Path, quiet: bool) -> str | None:
        from compiler.backends.hls4ml import vitis

        report = vitis.build(build, quiet=quiet)
        return None if report is None else f"hls4ml build report {report}"


BACKENDS: dict[str, Backend] = {b.name: b for b in (RTL(), HLS4ML())}


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise TaperError(
            f"--backend: unknown back end '{name}': expected {', '.join(BACKENDS)}"
        ) from None
