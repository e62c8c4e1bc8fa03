"""The build flow: named steps, one up-to-date rule, resume after a kill, status reasons."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compiler import build as B
from compiler import flow
from compiler.ir.model import LAYER_KINDS

from conftest import ROOT, TAPER, ZOO

UNSW = ZOO / "unsw_nb15-mlp-w2a2.onnx"


def _status(d: Path) -> dict[str, tuple[str, str]]:
    return {r.name: (r.state, r.why) for r in flow.status(d)}


def test_every_layer_kind_has_every_concern():
    from compiler.backends.rtl import generate
    from compiler.report import ROWS
    from compiler.sim import bitexact, cycles

    for kind in LAYER_KINDS:
        for concern, table in (
            ("bit-accurate simulation", bitexact.KERNELS),
            ("cycle model", cycles.UNITS),
            ("RTL generation", generate.MODULES),
            ("report", ROWS),
        ):
            assert kind in table, f"layer kind {kind} has no {concern} entry"


def test_steps_declare_their_artifacts_and_each_artifact_has_one_writer():
    writers: dict[str, str] = {}
    for s in flow.STEPS:
        for w in s.writes:
            assert w not in writers, f"{w} written by {writers[w]} and {s.name}"
            writers[w] = s.name
    for s in flow.STEPS:
        for r in s.reads:
            assert r in writers, f"step {s.name} reads {r}, which no step writes"
            assert flow.STEP_NAMES.index(writers[r]) < flow.STEP_NAMES.index(s.name)


def test_step_code_covers_its_own_code_not_the_whole_package(tmp_path):
    """A comment in qat/search.py changes no step's code version; one in frontend/lower.py
    changes exactly the steps that run it (in a copy of the package)."""
    pkg = tmp_path / "pkg"
    shutil.copytree(ROOT / "compiler", pkg / "compiler", ignore=shutil.ignore_patterns("hw"))
    shutil.copytree(ROOT / "hw", pkg / "compiler" / "hw")
    shutil.copytree(ROOT / "models", pkg / "models")
    probe = (
        "import json; from compiler import flow; "
        "print(json.dumps({s.name: s.code_version() for s in flow.STEPS}))"
    )

    def versions() -> dict:
        env = {**os.environ, "PYTHONPATH": str(pkg)}
        r = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    before = versions()
    with (pkg / "compiler" / "qat" / "search.py").open("a") as f:
        f.write("# a comment\n")
    assert versions() == before
    with (pkg / "compiler" / "frontend" / "lower.py").open("a") as f:
        f.write("# a comment\n")
    after = versions()
    assert {k for k in before if before[k] != after[k]} == {"lower"}


@pytest.fixture(scope="module")
def unsw_build(tmp_path_factory):
    d = tmp_path_factory.mktemp("flow") / "unsw"
    # what is tested is the flow: 100k FPS (not the default, the fastest that fits) keeps the
    # Verilator build small
    opts = flow.Options(samples=64, target_fps=1e5)
    flow.run(d, flow.Source.onnx(UNSW), opts, until="verify", quiet=True)
    return d


@pytest.mark.xdist_group("flow_unsw_build")  # shares the module fixture unsw_build
def test_a_finished_build_is_current_and_a_rerun_does_nothing(unsw_build, capsys):
    st = _status(unsw_build)
    for name in ("export", "frontend", "lower", "fifo", "rtl", "verify"):
        assert st[name] == ("current", ""), (name, st[name])
    assert st["train"][0] == "skipped" and st["hls4ml"][0] == "skipped"
    assert st["bitstream"] == ("waiting", "needs Vivado")
    mtime = (unsw_build / B.IR_JSON).stat().st_mtime_ns
    flow.run(unsw_build, None, until="verify")
    out = capsys.readouterr().out
    assert out.count("up to date") == 7 and "running" not in out  # 6 steps and the report
    assert (unsw_build / B.IR_JSON).stat().st_mtime_ns == mtime


@pytest.mark.xdist_group("flow_unsw_build")  # shares the module fixture unsw_build
def test_changing_the_folding_makes_exactly_the_steps_after_frontend_stale(tmp_path, unsw_build):
    d = tmp_path / "b"
    shutil.copytree(unsw_build, d)
    names = [layer["name"] for layer in json.loads((d / B.IR_JSON).read_text())["model"]["layers"]]
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({names[0]: {"PE": 2}}))
    # asked for, not yet run: status names the option, and what it makes out of date
    flow.run(d, None, flow.Options(folding=str(fold)), until="frontend", quiet=True)
    st = _status(d)
    assert st["export"][0] == st["frontend"][0] == "current"
    assert st["lower"][0] == "stale" and st["lower"][1].startswith("option folding changed")
    assert st["fifo"] == ("stale", "input lowered is out of date (lower is stale)"), st["fifo"]
    for name in ("rtl", "verify"):
        assert st[name] == ("stale", "input ir.json is out of date (fifo is stale)"), st[name]
    # run: only the steps after frontend run again
    b = flow.run(d, None, until="verify", quiet=True)
    assert b is not None
    recs = B.Build(d).state().steps
    assert recs["frontend"].finished == B.Build(unsw_build).state().steps["frontend"].finished
    assert recs["lower"].finished > recs["frontend"].finished
    assert all(
        s == "current" for s, _ in (_status(d)[n] for n in ("lower", "fifo", "rtl", "verify"))
    )
    # the folding file is an input: editing it makes lower stale again
    fold.write_text(json.dumps({names[0]: {"PE": 4}}))
    assert _status(d)["lower"] == ("stale", "input folding changed")


@pytest.mark.xdist_group("flow_unsw_build")  # shares the module fixture unsw_build
def test_an_output_edited_by_hand_is_kept_named_and_rebuilt_when_forced(tmp_path, unsw_build):
    d = tmp_path / "b"
    shutil.copytree(unsw_build, d)
    (d / B.REPORT_MD).write_text("edited\n")
    assert _status(d)["report"] == (
        "edited",
        "output report.md was changed by hand (kept; --force report rebuilds)",
    )
    flow.run(d, None, until="fifo", quiet=True)
    assert (d / B.REPORT_MD).read_text() == "edited\n"
    flow.run(d, None, until="fifo", force={"report"}, quiet=True)
    assert (d / B.REPORT_MD).read_text() != "edited\n"
    assert _status(d)["report"][0] == "current"


def _taper(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*TAPER, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, cwd=ROOT, **kw,
    )  # fmt: skip


# a short build: what is tested is where it stops and resumes, not its accuracy
BUILD = ["build", "digits_mlp", "--until", "verify", "--epochs", "1", "--samples", "200"]


def _kill_during_verify(d: Path, sig: int) -> list[str]:
    p = _taper(*BUILD, "--out", d)
    seen = []
    for line in p.stdout:
        seen.append(line)
        if "verify    running" in line:
            time.sleep(1.0)  # inside the verification
            p.send_signal(sig)
            break
    p.wait(timeout=120)
    assert any("verify    running" in s for s in seen), "".join(seen)
    assert p.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
    return seen


@pytest.mark.slow
def test_killed_during_verification_resumes_without_retraining_or_recompiling(tmp_path):
    d = tmp_path / "digits"
    # SIGTERM unwinds like Ctrl-C: the staging directory is removed on the way out
    _kill_during_verify(d, signal.SIGTERM)
    assert not (d / B.VERIFY_JSON).exists()
    assert [q.name for q in d.iterdir() if ".partial-" in q.name] == []
    recs = B.Build(d).state().steps
    assert set(recs) == {"train", "export", "frontend", "lower", "fifo", "rtl"}
    # SIGKILL leaves the staging directory; the next run removes it
    seen = _kill_during_verify(d, signal.SIGKILL)
    for name in ("train", "export", "frontend", "lower", "fifo", "rtl"):
        assert any(f"{name:9s} up to date" in s for s in seen), seen
    assert [q.name for q in d.iterdir() if ".partial-" in q.name] != []
    q = _taper(*BUILD, "--out", d)
    out = q.communicate(timeout=600)[0]
    assert q.returncode == 0, out
    for name in ("train", "export", "frontend", "lower", "fifo", "rtl"):
        assert f"{name:9s} up to date" in out, out
    assert "verify    running (never ran)" in out
    assert [q.name for q in d.iterdir() if ".partial-" in q.name] == []
    after = B.Build(d).state().steps
    assert all(after[n].finished == recs[n].finished for n in recs)  # nothing re-ran
    assert json.loads((d / B.VERIFY_JSON).read_text())["references"]["rtl"]["mismatches"] == 0
