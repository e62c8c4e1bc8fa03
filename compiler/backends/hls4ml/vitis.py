"""hls4ml's HLS build (C synthesis, IP export, Vivado synthesis) where Vitis HLS is installed.

Without Vitis the project is complete and its build options are set, so one command on a
machine with Vitis builds it; :func:`build` says which.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from compiler.backends.hls4ml import convert
from compiler.build import write_json, write_text

VITIS = "vitis-run"  # what hls4ml 1.3's Vitis back end runs
BUILD_OPTS = {
    "reset": 1,
    "csim": 0,  # the C-simulation runs here already (taper verify --against hls4ml)
    "synth": 1,
    "cosim": 0,
    "validation": 0,
    "export": 1,
    "vsynth": 1,
    "fifo_opt": 0,
}


def write_build_options(project: Path) -> None:
    """The options hls4ml's build_prj.tcl reads, so that one command builds the project."""
    opts = "".join(f"    {k:10s} {v}\n" for k, v in BUILD_OPTS.items())
    write_text(Path(project) / "build_opt.tcl", "array set opt {\n" + opts + "}\n")


def build(d: Path, quiet: bool = False) -> Path | None:
    """Build the project of build directory ``d``; returns its report, or None without Vitis."""
    project = Path(d) / convert.HLS_DIR
    if shutil.which(VITIS) is None:
        print(
            f"[taper] Vitis HLS not found ({VITIS} is not on PATH): nothing synthesized. The "
            f"complete hls4ml project is in {project}; on a machine with Vitis run\n"
            f"    cd {project} && {VITIS} --tcl build_prj.tcl --mode hls\n"
            "  (C synthesis, IP export and Vivado synthesis; options in build_opt.tcl)",
            flush=True,
        )
        return None
    hm = convert.hls_model(d)
    report = hm.build(**{k: bool(v) for k, v in BUILD_OPTS.items()}, log_to_stdout=not quiet)
    return write_json(project / "build_report.json", report)
