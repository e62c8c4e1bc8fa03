"""hls4ml's C-simulation: the project's HLS C++ built by g++ into a shared library (cached by
content hash) and called through ctypes, one sample per call as the hardware streams them."""

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
_SOURCES = ("*.cpp", "*.h", "*.hpp")


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
    lib = Path(cache) / f"{key}.so"
    if lib.is_file():
        return lib
    if shutil.which("g++") is None:
        raise TaperError("g++ not found: hls4ml's C-simulation needs a C++ compiler")
    r = subprocess.run(["bash", "build_lib.sh"], cwd=project, capture_output=True, text=True)
    if r.returncode != 0:
        errs = [ln for ln in (r.stdout + r.stderr).splitlines() if "error" in ln][:3]
        raise TaperError(f"{project}: g++ failed to build the C-simulation: {' | '.join(errs)}")
    built = sorted((project / "firmware").glob(f"{meta['project']}-*.so"), key=os.path.getmtime)
    lib.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=lib.parent)
    os.close(fd)
    shutil.copyfile(built[-1], tmp)
    os.replace(tmp, lib)
    for f in built:  # the cache holds it; keep the project as hls4ml wrote it
        f.unlink()
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
