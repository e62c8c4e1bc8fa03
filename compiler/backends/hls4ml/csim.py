"""hls4ml's C-simulation: the project's HLS C++ built by g++ into a shared library (cached by
content hash) and called through ctypes, one sample per call as the hardware streams them.

The C-simulation reads its weights at run time from ``firmware/weights/*.txt`` under the
directory it was built in (hls4ml compiles that path in, and exits the process if a file is
missing), so each cache entry is a complete copy of the project, built in place.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from compiler.backends.hls4ml.convert import HLS_DIR, read_meta
from compiler.errors import TaperError

DEFAULT_CACHE = Path(os.environ.get("TAPER_CACHE", Path.home() / ".cache" / "taper")) / "hls4ml"
_SOURCES = ("*.cpp", "*.h", "*.hpp", "*.txt")


def _content_key(project: Path) -> str:
    h = hashlib.sha256()
    files = [f for pat in _SOURCES for f in project.rglob(pat)]
    for f in sorted(files):
        h.update(str(f.relative_to(project)).encode() + b"\0" + f.read_bytes())
    # build_lib.sh differs per write only in hls4ml's random LIB_STAMP.
    script = (project / "build_lib.sh").read_text().splitlines()
    h.update("\n".join(ln for ln in script if not ln.startswith("LIB_STAMP=")).encode())
    return h.hexdigest()[:20]


def library(d: Path, cache: Path = DEFAULT_CACHE) -> Path:
    """The compiled C-simulation library of build directory ``d``'s hls4ml project."""
    project = Path(d) / HLS_DIR
    meta = read_meta(d)
    if meta is None:
        raise TaperError(f"{d}: no hls4ml project (taper compile --backend hls4ml)")
    key = _content_key(project)
    entry = Path(cache) / key
    lib = entry / "csim.so"
    if lib.is_file() and (entry / "firmware" / "weights").is_dir():
        return lib
    if entry.exists():  # incomplete (weights removed): the library would exit the process
        shutil.rmtree(entry, ignore_errors=True)
    if shutil.which("g++") is None:
        raise TaperError("g++ not found: hls4ml's C-simulation needs a C++ compiler")
    Path(cache).mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache))
    try:
        shutil.copytree(project, stage, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.so"))
        # The library reads its weights from a path compiled in: point it at the final entry.
        weights = str(entry.resolve() / "firmware" / "weights")
        if any(c in weights for c in '"$`\\'):
            raise TaperError(f"{cache}: cache path must not contain quotes, $ or backslashes")
        script = stage / "build_lib.sh"
        text = script.read_text()
        assert "${BASEDIR}/firmware/weights" in text, "hls4ml's build_lib.sh changed"
        script.write_text(text.replace("${BASEDIR}/firmware/weights", weights))
        r = subprocess.run(["bash", "build_lib.sh"], cwd=stage, capture_output=True, text=True)
        if r.returncode != 0:
            errs = [ln for ln in (r.stdout + r.stderr).splitlines() if "error" in ln][:3]
            raise TaperError(f"{project}: g++ failed to build the C-simulation: {' | '.join(errs)}")
        built = sorted((stage / "firmware").glob(f"{meta['project']}-*.so"))
        built[-1].rename(stage / "csim.so")
        try:
            stage.rename(entry)
        except OSError:  # another process built the same entry meanwhile
            if not lib.is_file():
                raise
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return lib


def run(d: Path, x: np.ndarray, cache: Path = DEFAULT_CACHE) -> np.ndarray:
    """Outputs of the C-simulation for inputs ``x`` (samples, in_size), in double precision."""
    meta = read_meta(d)
    lib = ctypes.cdll.LoadLibrary(str(library(d, cache)))
    fn = getattr(lib, f"{meta['project']}_double")
    arr = np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")
    fn.argtypes = [arr, arr]
    fn.restype = None
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
    if x.shape[1] != meta["in_size"]:
        raise TaperError(f"{d}: hls4ml project takes {meta['in_size']} inputs, got {x.shape[1]}")
    out = np.zeros((len(x), meta["out_size"]), dtype=np.float64)
    for i in range(len(x)):
        fn(x[i], out[i])
    return out
