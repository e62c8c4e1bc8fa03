"""The build directory: every artifact's name, the record of each step, one up-to-date rule,
and the one staged-write helper.

A build directory is recognisably taper's: ``.taper-build`` is written when taper creates
it, and taper writes into no other non-empty directory. Steps write into a staging directory
inside the build (``.<step>.partial-<pid>-*``) that is moved into place only when the step
succeeded, so a reader never sees half an artifact; a partial left by a killed process is
removed by the next run. A step is current when the digests of its inputs, its options and
the version of its own code are the ones it recorded (:meth:`Build.why_stale`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler.errors import TaperError

MARKER = ".taper-build"
STATE = "build.json"

# Every artifact of a build, by step (the flow's steps declare them from here).
RECIPE = "recipe.yaml"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
QONNX = "model.onnx"
REFERENCE_ONNX = "reference.onnx"
FINN_HW_ONNX = "finn_hw.onnx"
FRONTEND_JSON = "frontend.json"
FINN_FOLDED_ONNX = "finn_folded.onnx"
LOWERED_DIR = "lowered"  # the IR as lowered, before FIFO sizing
FIFO_JSON = "fifo.json"
TIMELINE_PNG = "timeline.png"
IR_JSON = "ir.json"
IR_NPZ = "ir.npz"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
VERIFY_JSON = "verify.json"
RTL_DIR = "rtl"
SYNTH_JSON = "synth.json"
HLS4ML_DIR = "hls4ml"
BITSTREAM_DIR = "bitstream"
DEPLOY_DIR = "deploy"
FINN_WORK = ".finn-exec"  # FINN's own scratch (FINN_BUILD_DIR) for references


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_mode(path: Path) -> None:
    """The permissions a plain open()/mkdir() would give (mkstemp/mkdtemp give 0600/0700)."""
    mode = 0o777 if path.is_dir() else 0o666
    os.chmod(path, mode & ~_umask())


def _normal_modes(root: Path) -> None:
    _normal_mode(root)
    if root.is_dir():
        for p in root.rglob("*"):
            if not p.is_symlink():
                _normal_mode(p)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        _normal_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def digest(path: Path) -> str | None:
    """sha256 of a file, or of a directory's relative paths and contents; None if absent."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                h.update(p.relative_to(path).as_posix().encode() + b"\0")
                h.update(digest(p).encode())
    else:
        return None
    return h.hexdigest()[:24]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged_dir(parent: Path, name: str) -> Iterator[Path]:
    """A fresh directory ``parent/.name.partial-<pid>-*``, removed unless the caller moved
    what it wanted out of it. The pid lets a later run remove it after a SIGKILL."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-{os.getpid()}-", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_partials(parent: Path) -> list[Path]:
    """Remove ``.*.partial-<pid>-*`` and ``.*.tmp`` entries whose process is gone."""
    removed = []
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        if not p.name.startswith("."):
            continue
        if ".partial-" in p.name:
            try:
                pid = int(p.name.split(".partial-", 1)[1].split("-", 1)[0])
            except ValueError:
                continue
            if _pid_alive(pid):  # a running process's (this one's too): in use
                continue
        elif not p.name.endswith(".tmp") or time.time() - p.stat().st_mtime < 3600:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst`` (both inside one build): files by rename, directories by
    renaming the old one aside first."""
    if src.is_dir() and dst.exists():
        old = dst.with_name(f".{dst.name}.partial-{os.getpid()}-old")
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        dst.rename(old)
        src.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


@dataclass
class StepRecord:
    """What a step read, with which options and code, and what it wrote."""

    inputs: dict[str, str | None]
    options: dict[str, Any]
    code: str
    outputs: dict[str, str | None]
    finished: float = 0.0
    seconds: float = 0.0
    note: str = ""


@dataclass
class State:
    source: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    requested: dict[str, dict[str, Any]] = field(default_factory=dict)


class Build:
    """A taper build directory."""

    def __init__(self, path: Path, created: bool = False):
        self.path = Path(path)
        self.created = created

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, create: bool = True) -> Build:
        """The build at ``path``; created (with its marker) when missing or empty.

        A non-empty directory without the marker is a user's: refused, nothing touched.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise TaperError(f"{path}: exists and is not a directory")
        if path.is_dir() and (path / MARKER).is_file():
            b = cls(path)
            remove_stale_partials(path)
            return b
        if not create:
            raise TaperError(f"{path}: not a taper build directory (no {MARKER})")
        if path.is_dir() and any(path.iterdir()):
            raise TaperError(
                f"{path}: not empty and not a taper build directory (no {MARKER}); "
                "taper writes only into a new or empty directory, or one it created"
            )
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TaperError(f"{path}: cannot create the build directory ({e.strerror})") from None
        b = cls(path, created=created)
        write_json(path / MARKER, {"taper": _version(), "created": time.time()})
        return b

    def discard_if_unused(self, keep: tuple[str, ...] = ()) -> None:
        """Remove the directory this run created (after a failure) unless a step in ``keep``
        finished in it: a failed run leaves nothing behind but costly work."""
        if self.created and not set(self.state().steps) & set(keep):
            shutil.rmtree(self.path, ignore_errors=True)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ state

    def state(self) -> State:
        p = self.path / STATE
        if not p.is_file():
            return State()
        try:
            doc = json.loads(p.read_text())
            return State(
                source=doc.get("source", {}),
                steps={k: StepRecord(**v) for k, v in doc.get("steps", {}).items()},
                requested=doc.get("requested", {}),
            )
        except (json.JSONDecodeError, TypeError, AttributeError):
            return State()  # unreadable: every step is missing, and rewrites it

    def save_state(self, state: State) -> None:
        doc = {
            "source": state.source,
            "steps": {k: dataclasses.asdict(v) for k, v in state.steps.items()},
            "requested": state.requested,
        }
        write_json(self.path / STATE, doc)

    def record(self, step: str, rec: StepRecord) -> None:
        st = self.state()
        st.steps[step] = rec
        self.save_state(st)

    def forget(self, step: str) -> None:
        st = self.state()
        if st.steps.pop(step, None) is not None:
            self.save_state(st)

    def digests(self, names: list[str]) -> dict[str, str | None]:
        return {n: digest(self.path / n) for n in names}

    def why_stale(
        self, step: str, inputs: dict[str, str | None], options: dict, code: str, outputs: list[str]
    ) -> str | None:
        """The up-to-date rule. None when ``step`` is current: its outputs exist and the
        digests of its ``inputs``, its ``options`` and its ``code`` version are the ones it
        recorded; otherwise the reason, naming what changed. An output edited by hand is kept
        (see :meth:`edited`): the steps that read it see a changed input."""
        rec = self.state().steps.get(step)
        if rec is None:
            return "never ran"
        for name in outputs:
            # an output the step did not write (a recurrent model has no FINN graph) is not
            # missing
            if not (self.path / name).exists() and rec.outputs.get(name, "") is not None:
                return f"output {name} is missing"
        for k in sorted(set(options) | set(rec.options)):
            if options.get(k) != rec.options.get(k):
                return f"option {k} changed ({rec.options.get(k)!r} -> {options.get(k)!r})"
        for name in sorted(set(inputs) | set(rec.inputs)):
            if inputs.get(name) != rec.inputs.get(name):
                return f"input {name.split(':', 1)[0]} changed"
        if rec.code != code:
            return "its code changed"
        return None

    def edited(self, step: str, outputs: list[str]) -> list[str]:
        """Outputs of ``step`` that differ from what it wrote (changed by hand)."""
        rec = self.state().steps.get(step)
        if rec is None:
            return []
        return [n for n in outputs if rec.outputs.get(n) != digest(self.path / n)]

    @contextlib.contextmanager
    def staging(self, step: str) -> Iterator[Path]:
        """A staging directory for ``step``'s outputs; :meth:`commit` moves them in."""
        with staged_dir(self.path, step) as tmp:
            _normal_mode(tmp)
            yield tmp

    def commit(self, stage: Path, outputs: list[str]) -> None:
        """Move each output the step wrote in ``stage`` into the build."""
        for name in outputs:
            src = stage / name
            if src.exists():
                _normal_modes(src)
                _replace(src, self.path / name)


def _version() -> str:
    from compiler import __version__

    return __version__


def code_version(modules: list[str], extra: str = "") -> str:
    """Digest of the source of ``modules`` (a package means all of its files), plus
    ``extra`` (tool versions): the code a step runs, not the whole package."""
    import importlib.util

    h = hashlib.sha256(extra.encode())
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"no module {name}")
        origin = Path(spec.origin)
        root = origin.parent
        if origin.name == "__init__.py":  # a package: every file in it (Verilog too)
            files = sorted(
                f for f in root.rglob("*")
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
            )  # fmt: skip
        else:
            files = [origin]
        for f in files:
            h.update(f"{name}:{f.relative_to(root).as_posix()}".encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
