"""The deployment package for a PYNQ board: what to copy onto the board and run there.

``write_package(build_dir, out_dir)`` writes ``out_dir``:

- ``manifest.json`` (`compiler.deploy.manifest.Manifest`): streams, host edges, expected
  timing from the cycle model, the shell's register map, the bitstream's file names;
- ``driver.py`` (this package's driver, as is): ``python3 driver.py run|validate|bench``;
- ``host_edges.py``: `compiler.sim.host_edges`, byte for byte, the host-edge code the
  bit-accurate simulator runs;
- the overlay's ``.bit`` and ``.hwh`` when the build has them (in ``bitstream/``).

The directory is assembled aside and moved into place whole; an existing ``out_dir`` is
replaced only when it is a previous package (it has a manifest) or empty.
"""

from __future__ import annotations

import os
import shutil
from importlib.resources import files
from pathlib import Path

from compiler import __version__, ir
from compiler.backends.rtl.shell import MAGIC, REGISTERS, shell_ports
from compiler.build import BITSTREAM_DIR, IR_JSON, staged_dir, write_text
from compiler.deploy.manifest import MANIFEST, Expected, Manifest, Stream
from compiler.errors import TaperError
from compiler.ir.model import Model
from compiler.sim import cycles, host_edges

DRIVER = Path(str(files("compiler.deploy"))) / "driver.py"
HOST_EDGES = Path(host_edges.__file__)
EXPECT_FRAMES = 1000  # frames of the cycle-model run behind `Manifest.expected`


def streams(m: Model) -> tuple[Stream, Stream]:
    p = shell_ports(m)
    first, last = m.layers[0], m.layers[-1]
    ins = Stream(
        type=first.input_type.name,
        elem_bits=first.input_type.bits,
        signed=first.input_type.signed,
        bipolar=first.input_type.bipolar,
        elems_per_word=first.in_elems,
        word_bits=p.in_bits,
        dma_bytes=p.in_bytes,
        words_per_frame=p.in_words,
        features=first.in_frame,
        shape=list(m.input_edge.in_shape),
    )
    outs = Stream(
        type=last.out_type.name,
        elem_bits=last.out_type.bits,
        signed=last.out_type.signed,
        bipolar=last.out_type.bipolar,
        elems_per_word=last.out_elems,
        word_bits=p.out_bits,
        dma_bytes=p.out_bytes,
        words_per_frame=p.out_words,
        features=last.out_frame,
        shape=list(m.output_edge.out_shape) or [last.out_frame],
    )
    return ins, outs


def expected_timing(m: Model, frames: int = EXPECT_FRAMES) -> Expected:
    """Back-to-back frames through the cycle model, measured as the shell's counters do."""
    r = cycles.run(m, frames)
    last = r.last_cycles
    return Expected(
        frames=frames,
        latency_cycles=r.latency_cycles,
        ii_cycles=float(last[-1] - last[0]) / (len(last) - 1),
        steady_ii_cycles=float(r.steady_ii_cycles),
        fps=float(r.fps),
    )


def _bitstream(build_dir: Path, name: str) -> tuple[Path | None, Path | None]:
    """The overlay's .bit and its .hwh (same stem, as pynq requires) in ``bitstream/``."""
    d = build_dir / BITSTREAM_DIR
    if not d.is_dir():
        return None, None
    bits = sorted(d.rglob("*.bit"), key=lambda p: (p.stem != name, len(p.parts), p.name))
    for bit in bits:
        hwh = bit.with_suffix(".hwh")
        if hwh.is_file():
            return bit, hwh
    if bits:
        raise TaperError(f"{bits[0]}: no {bits[0].stem}.hwh next to it (pynq's Overlay needs both)")
    return None, None


def manifest_for(m: Model, bit: str | None = None, hwh: str | None = None) -> Manifest:
    ins, outs = streams(m)
    return Manifest(
        taper=__version__,
        name=m.name,
        board=m.board,
        part=m.part,
        clock_mhz=m.clock_mhz,
        shell=shell_ports(m).module,
        magic=MAGIC,
        registers=dict(REGISTERS),
        input=ins,
        output=outs,
        input_edge=host_edges.input_edge_to_json(m.input_edge),
        output_edge=host_edges.output_edge_to_json(m.output_edge),
        expected=expected_timing(m),
        bitfile=bit,
        hwh=hwh,
    )


def write_package(build_dir: Path, out_dir: Path) -> Manifest:
    """Write the deployment package of the build at ``build_dir`` into ``out_dir``."""
    build_dir, out_dir = Path(build_dir), Path(out_dir)
    if not (build_dir / IR_JSON).is_file():
        raise TaperError(f"{build_dir / IR_JSON}: missing; compile the model first")
    m = ir.load(build_dir)
    bit, hwh = _bitstream(build_dir, m.name)
    mf = manifest_for(m, bit.name if bit else None, hwh.name if hwh else None)
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())
    ):
        raise TaperError(
            f"{out_dir}: exists and is not a deployment package (no {MANIFEST}); "
            "taper writes a package only into a new or empty directory, or over a package"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(out_dir.parent, out_dir.name) as stage:
        mf.save(stage / MANIFEST)
        write_text(stage / mf.driver, DRIVER.read_text())
        write_text(stage / mf.host_edges, HOST_EDGES.read_text())
        for src in (bit, hwh):
            if src is not None:
                shutil.copyfile(src, stage / src.name)
        os.chmod(stage, 0o777 & ~_umask())
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            stage.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(out_dir)
    return mf


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
