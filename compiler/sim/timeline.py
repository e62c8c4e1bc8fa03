"""Pictures and waveforms of a cycle-model run: ``timeline.png`` (per stage: busy, starved,
blocked) and a VCD of every stream's valid, ready and data for GTKWave or Surfer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler.build import atomic_write
from compiler.ir.model import Model
from compiler.sim.cycles import CycleRun
from compiler.sim.patterns import fmt_cycles


def _blocked(run: CycleRun, out_link: str, horizon: int) -> np.ndarray:
    valid, taken = run.links[out_link]
    keep = (taken > valid) & (valid < horizon)
    return np.stack([valid[keep], taken[keep] - 1], axis=1)


def _cut(spans: np.ndarray, holes: np.ndarray) -> list[tuple[int, int]]:
    """Spans [a, b] minus the cycles of holes [c, d] (both sorted, inclusive)."""
    out = []
    j = 0
    for a, b in spans.tolist():
        while j < len(holes) and holes[j][1] < a:
            j += 1
        k = j
        while a <= b:
            if k < len(holes) and holes[k][0] <= b:
                c, d = holes[k]
                if c > a:
                    out.append((a, c - 1))
                a = max(a, d + 1)
                k += 1
            else:
                out.append((a, b))
                break
    return out


def plot(run: CycleRun, path: Path, title: str, horizon: int) -> None:
    """Per stage, over cycles [0, horizon): busy (green), blocked (red), starved (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(run.busy)
    fig, ax = plt.subplots(figsize=(11, 0.6 * len(stages) + 1.6))
    for i, name in enumerate(reversed(stages)):
        _, out_link, spans = run.busy[name]
        blocked = _blocked(run, out_link, horizon)
        busy = _cut(spans[spans[:, 0] < horizon], blocked)
        y = (i - 0.4, 0.8)
        ax.broken_barh([(0, horizon)], y, color="0.88")
        ax.broken_barh([(a, b - a + 1) for a, b in busy], y, color="tab:green")
        ax.broken_barh([(a, b - a + 1) for a, b in blocked.tolist()], y, color="tab:red")
    for t in run.frame_start_cycles[run.frame_start_cycles < horizon]:
        ax.axvline(t, color="tab:blue", lw=0.6, ls=":")
    ax.set_yticks(range(len(stages)), list(reversed(stages)))
    ax.set_xlim(0, horizon)
    ax.set_xlabel("cycle (dotted: a frame enters)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:green", "tab:red", "0.88")]
    ax.legend(handles, ["busy", "blocked", "starved"], loc="upper right", ncols=3)
    ax.set_title(
        f"{title}: latency {run.latency_cycles:,} cycles, II {fmt_cycles(run.ii_cycles)} cycles"
    )
    fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def write_vcd(
    run: CycleRun, m: Model, words: dict[str, np.ndarray], path: Path, max_cycles: int = 1 << 20
) -> None:
    """Every link's valid, ready and data, per cycle, until the last word is taken (at most
    ``max_cycles``).

    ``words`` gives each link's data words (per word, as integers) by link name; a link
    missing from it gets valid and ready only. Ready is drawn at the handshake cycles: a
    consumer that waited for data shows ready only from the cycle the word arrived."""
    from vcd import VCDWriter

    end = min(int(run.output_cycles[-1]) + 2, max_cycles)

    def fh(name: str) -> str:
        return name.replace(".", "_")

    def write(p: Path) -> None:
        with open(p, "w") as f, VCDWriter(f, timescale="1 ns", date="today") as w:
            clk = w.register_var(m.name, "clk", "wire", size=1)
            vars_ = []
            for name, (valid, taken) in run.links.items():
                width = int(words[name].max()).bit_length() if name in words else 0
                v = w.register_var(f"{m.name}.{fh(name)}", "tvalid", "wire", size=1)
                r = w.register_var(f"{m.name}.{fh(name)}", "tready", "wire", size=1)
                d = (
                    w.register_var(f"{m.name}.{fh(name)}", "tdata", "wire", size=max(1, width))
                    if name in words
                    else None
                )
                vars_.append((v, r, d, valid, taken, words.get(name)))
            changes: dict[int, list] = {}
            for v, r, d, valid, taken, data in vars_:
                for k in range(len(taken)):
                    changes.setdefault(int(valid[k]), []).append((v, 1))
                    changes.setdefault(int(taken[k]) + 1, []).append((v, 0))
                    # ready: the handshake cycle (drawn for one cycle)
                    changes.setdefault(int(taken[k]), []).append((r, 1))
                    changes.setdefault(int(taken[k]) + 1, []).append((r, 0))
                    if d is not None:
                        changes.setdefault(int(valid[k]), []).append((d, int(data[k])))
            for t in range(end):
                w.change(clk, 10 * t, 1)
                for var, value in _last_per_var(changes.get(t, [])):
                    w.change(var, 10 * t, value)
                w.change(clk, 10 * t + 5, 0)

    atomic_write(Path(path), write)


def _last_per_var(changes: list) -> list:
    """A 0 then 1 in the same cycle (a word leaves, the next arrives) keeps the last."""
    seen: dict[int, tuple] = {}
    for var, value in changes:
        seen[id(var)] = (var, value)
    return list(seen.values())
