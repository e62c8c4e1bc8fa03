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


def run_taper(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*TAPER, *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT, env=env
    )


@pytest.fixture
def taper():
    return run_taper
