from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
TAPER = [sys.executable, "-m", "compiler.cli"]


def run_taper(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*TAPER, *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT, env=env
    )


@pytest.fixture
def taper():
    return run_taper
