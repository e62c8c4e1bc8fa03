"""`taper deploy`: copy a deployment package to a PYNQ board and run its driver there, over
scp and ssh (argument lists; the remote command's words are quoted for the remote shell)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from compiler.errors import TaperError

HOST = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_.-]{0,31}@)?[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
REMOTE_DIR = re.compile(r"[A-Za-z0-9_./~-]{1,200}")


def commands(
    package: Path, host: str, remote_dir: str, images: Path | None, labels: Path | None
) -> list[list[str]]:
    """The scp and ssh commands that copy the package (and validation data) and run the
    driver: `validate` with images and labels, else `bench`."""
    if not HOST.fullmatch(host):
        raise TaperError(f"--host: expected [USER@]ADDRESS, got {host!r}")
    if not REMOTE_DIR.fullmatch(remote_dir) or ".." in remote_dir.split("/"):
        raise TaperError(f"--remote-dir: expected a plain path without '..', got {remote_dir!r}")
    if (images is None) != (labels is None):
        raise TaperError("--images and --labels go together")
    if not (Path(package) / "manifest.json").is_file():
        raise TaperError(f"{package}: not a deployment package (no manifest.json)")
    cmds = [["ssh", host, "mkdir", "-p", shlex.quote(remote_dir)]]
    files = sorted(str(p) for p in Path(package).iterdir() if p.is_file())
    data = [str(images), str(labels)] if images is not None else []
    for f in data:
        if not Path(f).is_file():
            raise TaperError(f"{f}: file not found")
    cmds.append(["scp", "-q", *files, *data, f"{host}:{remote_dir}/"])
    run = ["validate", Path(images).name, Path(labels).name] if images is not None else ["bench"]
    remote = ["cd", shlex.quote(remote_dir), "&&", "sudo", "-E", "python3", "driver.py"]
    cmds.append(["ssh", host, *remote, *(shlex.quote(a) for a in run)])
    return cmds


def deploy(commands_: list[list[str]]) -> None:
    for cmd in commands_:
        r = subprocess.run(cmd)
        if r.returncode != 0:
            raise TaperError(f"{cmd[0]} failed (exit {r.returncode}): {' '.join(cmd)}")
