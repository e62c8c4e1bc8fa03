"""A user's files are sacred: taper writes only into directories it created, never outside
the build, with ordinary permissions; a killed run leaves nothing a later run keeps."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import build as B
from compiler.errors import TaperError

from conftest import ROOT, ZOO

UNSW = ZOO / "unsw_nb15-mlp-w2a2.onnx"


def _user_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.txt").write_text("four years of work\n")
    (d / "sub" / "data.csv").write_text("1,2,3\n")
    return d


def _snapshot(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", ["compile", "build", "train"])
def test_a_users_directory_is_refused_and_untouched(tmp_path, taper, command):
    d = _user_dir(tmp_path)
    before = _snapshot(d)
    model = "digits_mlp" if command == "train" else UNSW
    r = taper(command, model, "--out", d)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (
        f"taper: error: {d}: not empty and not a taper build directory (no .taper-build); "
        "taper writes only into a new or empty directory, or one it created\n"
    )
    assert _snapshot(d) == before and sorted(p.name for p in d.iterdir()) == ["sub", "thesis.txt"]


def test_out_dot_is_refused_in_a_users_current_directory(tmp_path, taper):
    d = _user_dir(tmp_path)
    before = _snapshot(d)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "compiler.cli", "compile", str(UNSW), "--out", "."],
        cwd=d, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("taper: error: .: not empty"), r.stderr
    assert _snapshot(d) == before


def test_a_file_as_out_and_a_build_of_another_model_are_refused(tmp_path, taper):
    f = tmp_path / "file"
    f.write_text("x")
    r = taper("compile", UNSW, "--out", f)
    assert r.returncode == 2 and f"{f}: exists and is not a directory" in r.stderr
    assert f.read_text() == "x"


def test_recipe_names_that_become_paths_are_checked(tmp_path, taper):
    y = tmp_path / "r.yaml"
    text = (ROOT / "models" / "digits_mlp.yaml").read_text()
    y.write_text(f"name: ../escaped_recipe\n{text}")
    r = taper("build", y, "--until", "train")
    assert r.returncode == 2 and r.stderr.startswith(
        f"taper: error: {y}: field 'name': String should match pattern"
    ), r.stderr
    assert (
        not (ROOT / "escaped_recipe").exists()
        and not (ROOT / "build" / "..").joinpath("escaped_recipe").exists()
    )


def test_artifacts_get_the_permissions_a_normal_write_gives(tmp_path):
    old = os.umask(0o022)
    try:
        b = B.Build.open(tmp_path / "b")
        B.write_text(b / "a.txt", "x")
        with b.staging("s") as stage:
            (stage / "d").mkdir()
            (stage / "d" / "f").write_text("y")
            b.commit(stage, ["d"])
    finally:
        os.umask(old)
    assert stat.S_IMODE((b / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((b / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((b / "d" / "f").stat().st_mode) == 0o644
    assert stat.S_IMODE((b / B.MARKER).stat().st_mode) == 0o644


def test_stale_partials_of_a_killed_process_are_removed_by_the_next_run(tmp_path):
    b = B.Build.open(tmp_path / "b")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (b / f".lower.partial-{dead}-abc").mkdir()
    (b / f".lower.partial-{os.getpid()}-mine").mkdir()  # a live process's: kept
    (b / ".user-hidden").write_text("kept")  # not taper's pattern: kept
    B.Build.open(tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert f".lower.partial-{dead}-abc" not in names
    assert f".lower.partial-{os.getpid()}-mine" in names and ".user-hidden" in names


def test_a_hostile_checkpoint_is_not_executed_and_named(tmp_path):
    from compiler.qat.train import load_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    p = tmp_path / "checkpoint.pt"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(TaperError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: not a taper checkpoint (expected a weights-only state dict")
    assert "\n" not in msg and "weights_only=False" not in msg
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--clock-mhz", "inf"], "Invalid value for '--clock-mhz': 'inf' is not a finite number"),
        (["--clock-mhz", "nan"], "Invalid value for '--clock-mhz': 'nan' is not a finite number"),
        (["--clock-mhz", "-5"], "--clock-mhz: expected a clock from 1 to 2000 MHz, got -5.0"),
        (["--target-fps", "nan"], "Invalid value for '--target-fps': 'nan' is not a finite number"),
        (["--target-fps", "1e400"], "Invalid value for '--target-fps': '1e400' is not a finite"),
        (["--target-fps", "0"], "--target-fps: expected a positive frame rate, got 0.0"),
        (["--target-fps", "fast"], "Invalid value for '--target-fps': 'fast' is not a valid"),
        (["--target-fps", "max", "--folding", "f.json"], "--target-fps and --folding exclude"),
        (["--board", "de10"], "unknown board 'de10': expected one of pynq-z1, pynq-z2"),
    ],
)
def test_bad_compile_options_fail_first_with_one_line(tmp_path, taper, args, message):
    out = tmp_path / "o"
    r = taper("compile", UNSW, "--out", out, *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"taper: error: {message}") and r.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "nope.onnx", "{p}: file not found"),
        (lambda d: d, "{p}: is a directory, expected a recipe name, a recipe .yaml or a .onnx"),
        (lambda d: (d / "x.onnx").mkdir() or d / "x.onnx", "{p}: is a directory, expected a"),
    ],
)
def test_missing_and_directory_models(tmp_path, taper, make, message):
    p = make(tmp_path)
    r = taper("compile", p, "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.startswith("taper: error: " + message.format(p=p))


def test_verify_of_a_directory_that_is_no_build(tmp_path, taper):
    (tmp_path / "x").write_text("")
    r = taper("verify", tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"taper: error: {tmp_path}: is a directory"), r.stderr


def test_samples_are_bounded(tmp_path, taper):
    r = taper("verify", UNSW, "--samples", "10000000")
    assert r.returncode == 2 and "10000000 is not in the range 1<=x<=100000" in r.stderr


@pytest.mark.slow
def test_any_file_name_gives_valid_identifiers_and_a_working_rtl(tmp_path, taper):
    # spaces, brackets and non-ASCII become "__" under a plain sanitizer (Verilator renames
    # "__"), and 70 characters exceed what the old name check took
    src = tmp_path / f"TFC (copy) ü {'L' * 70}.onnx"
    src.write_bytes(UNSW.read_bytes())
    out = tmp_path / "o"
    r = taper("compile", src, "--out", out, "--target-fps", "1e5")  # a small design
    assert r.returncode == 0, r.stderr
    from compiler import ir
    from compiler.frontend.compile import model_name

    name = ir.load(out).name
    assert name == model_name(src.stem) and name.startswith("TFC_copy_LLL")
    assert "__" not in name and len(name) == 40 and name.isascii()
    r = taper("verify", out, "--against", "rtl", "--samples", "20")
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_names_are_identifiers():
    from compiler.frontend.compile import model_name

    assert model_name("TFC_2W2A") == "TFC_2W2A"
    assert model_name("TFC (copy)") == "TFC_copy"
    assert model_name("__x__y") == "x_y"
    assert model_name("2w2a") == "m_2w2a"
    assert model_name("日本") == "model"
    long = model_name("a" * 100)
    assert len(long) == 40 and long != model_name("a" * 101)
