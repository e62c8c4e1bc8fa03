"""The flow's bitstream step for a PYNQ board: the complete Vivado project, and the step
waits for Vivado (then is stale once it is on PATH). The ECP5 tools' path is tested in
test_ecp5.py (a real .bit for a small model)."""

import os
import shutil
import stat

import pytest

from compiler import build as B
from compiler import flow

from conftest import ZOO

UNSW = ZOO / "unsw_nb15-mlp-w2a2.onnx"


@pytest.fixture(scope="module")
def rtl_build(tmp_path_factory):
    d = tmp_path_factory.mktemp("bitstream") / "unsw"
    flow.run(d, flow.Source.onnx(UNSW), flow.Options(target_fps=1e5), until="rtl", quiet=True)
    return d


def _status(d):
    return {r.name: (r.state, r.why) for r in flow.status(d)}


def test_a_pynq_build_writes_the_vivado_project_and_waits(tmp_path, rtl_build, monkeypatch):
    d = tmp_path / "b"
    shutil.copytree(rtl_build, d)
    assert _status(d)["bitstream"] == ("waiting", "needs Vivado")
    b = flow.run(d, None, only=("bitstream",), quiet=True)
    assert b.results["waiting"] == "Vivado"
    project = d / B.BITSTREAM_DIR
    assert (project / "build.tcl").is_file() and (project / "settings.tcl").is_file()
    assert any(p.name.endswith("_shell.sv") for p in (project / "rtl").iterdir())
    assert _status(d)["bitstream"][0] == "waiting"
    # a rerun without Vivado does nothing; with vivado on PATH the step is stale
    rec = B.Build(d).state().steps["bitstream"]
    assert f"cd {project} && vivado -mode batch" in rec.note  # the project, not a staging copy
    flow.run(d, None, only=("bitstream",), quiet=True)
    assert B.Build(d).state().steps["bitstream"].finished == rec.finished
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "vivado").write_text("#!/bin/sh\nexit 1\n")
    (fake / "vivado").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert _status(d)["bitstream"] == ("stale", "Vivado is available now")
