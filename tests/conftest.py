from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
TAPER = [sys.executable, "-m", "compiler.cli"]

# Most tests run `taper` in a subprocess, and each one imports torch, Brevitas, QONNX and FINN.
# The venv holds no bytecode (uv installs none) and PYTHONDONTWRITEBYTECODE may be set, so
# without this every subprocess compiles those packages from source again (~10 s each on CI's
# two cores). The bytecode goes to one directory (not beside the sources: a copy of the
# package, as test_flow makes, stays clean); it starts empty on a fresh clone.
PYCACHE = ROOT / ".cache" / "pycache"
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
sys.dont_write_bytecode = False  # this process (and each xdist worker) too
sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]

# One intra-op thread for torch (and BLAS) in every test process and every `taper` it starts:
# the networks trained here are small MLPs, and two test workers share CI's two cores; with a
# thread pool per process they oversubscribe them (tfc_w2a2, 2 epochs: 14 s on one thread,
# 80 s on two, on a busy machine). As `taper search` and `taper prune` do (qat/study.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:  # imported before this file (by a plugin): too late for the variable
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def run_taper(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*TAPER, *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT, env=env
    )


@pytest.fixture
def taper():
    return run_taper
