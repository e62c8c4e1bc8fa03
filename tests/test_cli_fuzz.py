"""Every command's options with hostile values and hostile files: exit 2 with one line, no
traceback, nothing outside the build directory touched (sentinels beside it and in it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pytest

from compiler.cli import cli, main

from conftest import ZOO

UNSW = ZOO / "unsw_nb15-mlp-w2a2.onnx"
# Values no option of taper accepts (seeds accept 0, so no 0 here; strings are checked below)
NUMBERS = ["inf", "-inf", "nan", "-1", "1e400", "abc", "", "99999999999999999999999"]
# (a frame rate above the clock, 1e23 trials or epochs, workers beyond reason: refused too)
STRINGS = ["../../escape", "$(touch pwned)", "a;rm -rf ~", "x" * 300, "日本", "\t", ""]
# options whose every string is a free-form value that a later step checks
SKIP = {"out", "help", "version"}


def _commands() -> dict[str, click.Command]:
    return {name: c for name, c in cli.commands.items()}


class WorkStarted(Exception):
    """A hostile value was accepted and real work began (the test fails at once)."""


def _refuse_work(*args, **kwargs):
    raise WorkStarted("a step started: the hostile value was accepted")


def _invoke(monkeypatch, capsys, args: list[str], steps: bool = False) -> tuple[int, str, str]:
    from compiler import flow
    from compiler.qat import train

    monkeypatch.setattr(sys, "argv", ["taper", *args])
    if not steps:  # options are checked before any step runs
        monkeypatch.setattr(flow, "_run_step", _refuse_work)
    monkeypatch.setattr(train, "fit", _refuse_work)
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _model_for(cmd: str, tmp_path: Path) -> list[str]:
    if cmd in ("train", "prune", "search"):
        return ["digits_mlp", "--out", str(tmp_path / "build" / "o")]
    if cmd in ("synth", "status", "show"):
        return [str(tmp_path / "build" / "none")]
    if cmd in ("compile", "build"):
        return [str(UNSW), "--out", str(tmp_path / "build" / "o")]
    if cmd == "verify":
        return [str(UNSW)]
    if cmd == "bitstream":
        return [str(UNSW)]
    return []


def _cases():
    for name, c in _commands().items():
        for p in c.params:
            if not isinstance(p, click.Option) or p.is_flag or p.name in SKIP:
                continue
            numeric = isinstance(p.type, click.types._NumberParamTypeBase)
            for v in NUMBERS if numeric else STRINGS:
                yield pytest.param(name, p.opts[0], v, id=f"{name} {p.opts[0]} {v[:12]!r}")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working directory with a user's files beside the build and a sentinel in it."""
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "sentinel.txt").write_text("inside")
    (tmp_path / "beside.txt").write_text("beside")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert (tmp_path / "build" / "sentinel.txt").read_text() == "inside"
    assert (tmp_path / "beside.txt").read_text() == "beside"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert not (tmp_path.parent / "escape").exists()


@pytest.mark.parametrize("cmd,opt,value", list(_cases()))
def test_hostile_option_values(sandbox, monkeypatch, capsys, cmd, opt, value):
    extra = ["--budget", "weight_bits=1000"] if cmd == "search" and opt != "--budget" else []
    args = [cmd, *_model_for(cmd, sandbox), *extra, f"{opt}={value}"]
    code, out, err = _invoke(monkeypatch, capsys, args)
    assert code == 2, (args, out, err)
    assert err.startswith("taper: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err
    # a refused command leaves no build behind
    assert sorted(p.name for p in (sandbox / "build").iterdir()) == ["sentinel.txt"]


HOSTILE_FILES = {
    "empty.onnx": lambda p: p.write_bytes(b""),
    "text.onnx": lambda p: p.write_text("not a model\n"),
    "dir.onnx": lambda p: p.mkdir(),
    "dangling.onnx": lambda p: p.symlink_to(p.parent / "nowhere.onnx"),
    "bad.yaml": lambda p: p.write_text("name: [unclosed\n"),
    "list.yaml": lambda p: p.write_text("- 1\n- 2\n"),
    "huge_bits.yaml": lambda p: p.write_text("quant: {weights: {policy: uniform, bits: 99}}\n"),
}


@pytest.mark.parametrize("cmd", ["compile", "build", "verify", "bitstream", "train"])
@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_hostile_model_files(sandbox, monkeypatch, capsys, cmd, name):
    p = sandbox / name
    HOSTILE_FILES[name](p)
    args = [cmd, str(p)]
    if cmd in ("compile", "build", "train"):
        args += ["--out", str(sandbox / "build" / "o")]
    code, out, err = _invoke(monkeypatch, capsys, args, steps=True)
    assert code == 2, (args, out, err)
    assert err.startswith("taper: error: ") and err.count("\n") == 1, err
    assert str(p) in err or p.name in err, err  # the message names the file
    assert sorted(q.name for q in (sandbox / "build").iterdir()) == ["sentinel.txt"]


@pytest.mark.parametrize(
    "cmd,make",
    [
        ("status", lambda d: d),
        ("synth", lambda d: d),
        ("show", lambda d: d),
        ("verify", lambda d: d),
        ("status", lambda d: d / "nope"),
        ("synth", lambda d: d / "sentinel.txt"),
    ],
)
def test_directories_that_are_no_build(sandbox, monkeypatch, capsys, cmd, make):
    target = make(sandbox / "build")
    code, out, err = _invoke(monkeypatch, capsys, [cmd, str(target)])
    assert code == 2, (out, err)
    assert err.startswith(f"taper: error: {target}") and err.count("\n") == 1, err
    assert sorted(p.name for p in (sandbox / "build").iterdir()) == ["sentinel.txt"]


def test_the_fuzz_covers_every_command():
    covered = {c for c, *_ in (p.values for p in _cases())}
    assert covered >= set(_commands()) - {"recipes", "status", "show", "synth"}
    assert os.environ.get("TAPER_DEBUG") is None  # the one-line handler is what is tested
