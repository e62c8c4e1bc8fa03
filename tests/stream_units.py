"""A Verilator harness for single stream units (hw/tb/taper_stream_tb.cpp): several units
behind one selector in one binary, built once and cached, driven one at a time with random
stalls on both sides; shared by the CNN and recurrent unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from compiler.backends.rtl import simulate
from compiler.sim.patterns import READY, VALID, Pattern

ROOT = Path(__file__).resolve().parents[1]
TB = ROOT / "hw" / "tb" / "taper_stream_tb.cpp"


def select_top(top: str, units: list[tuple[str, int, int]]) -> str:
    """Module ``top``: each unit (its parameterized module ``taper_x #(...)``, input and
    output bits per word) on the shared stream ports, the one numbered ``sel`` connected."""
    iw = max(u[1] for u in units)
    ow = max(u[2] for u in units)
    lines = [
        f"module {top} (",
        "    input logic clk, input logic rst_n, input logic [7:0] sel,",
        f"    input logic [{iw - 1}:0] s_tdata, input logic s_tvalid, output logic s_tready,",
        f"    output logic [{ow - 1}:0] m_tdata, output logic m_tvalid, input logic m_tready",
        ");",
    ]
    mux = []
    for i, (verilog, b, o) in enumerate(units):
        lines += [
            f"    logic [{o - 1}:0] m{i}; logic v{i}, r{i};",
            f"    {verilog} u{i} (.clk(clk), .rst_n(rst_n), .s_tdata(s_tdata[{b - 1}:0]),",
            f"        .s_tvalid(s_tvalid && sel == 8'd{i}), .s_tready(r{i}), .m_tdata(m{i}),",
            f"        .m_tvalid(v{i}), .m_tready(m_tready && sel == 8'd{i}));",
        ]
        mux.append(
            f"            8'd{i}: begin s_tready = r{i}; m_tvalid = v{i}; "
            f"m_tdata = {ow}'(m{i}); end"
        )
    lines += [
        "    always_comb begin",
        "        s_tready = 1'b0; m_tvalid = 1'b0; m_tdata = '0;",
        "        case (sel)",
        *mux,
        "            default: ;",
        "        endcase",
        "    end",
        "endmodule",
    ]
    return "\n".join(lines) + "\n"


def build(src: Path, top: str, files: list[str], tag: bytes) -> Path:
    """The Verilator binary of ``top`` from ``files`` in ``src`` (memory files beside them),
    from the cache when the sources are unchanged."""
    cache = simulate.DEFAULT_CACHE
    d = cache / simulate.content_key(src, TB, tag)
    exe = d / "obj" / "Vtb"
    if not exe.is_file():
        with simulate.cache_entry(cache, d.name, src, top, TB) as stage:
            simulate.verilate(stage, top, [*files, TB.name], "Vtb", "verilator build", cache)
    return exe


def drive(
    exe: Path, tmp: Path, sel: int, words: list[int], n_out: int, stall: int, seed: int,
    budget: int, cwd: Path,
) -> tuple[list[int], list[tuple[int, int]]]:  # fmt: skip
    """Unit ``sel`` alone, ``stall`` % random stalls on both sides (seed ``seed``) within
    ``budget`` cycles: (input handshake cycles, [(cycle, word)] of the output)."""
    fin, fout = tmp / f"in{sel}_{seed}.hex", tmp / f"out{sel}_{seed}.txt"
    fin.write_text("".join(f"{w:x}\n" for w in words))
    valid = f"r:{stall}:{seed}:0" if stall else "1"
    ready = f"r:{stall}:{seed}:1" if stall else "1"
    r = subprocess.run(
        [str(exe), fin, fout, str(budget), str(sel), str(n_out), valid, ready, "40"],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    assert r.returncode == 0, r.stderr
    ins, outs = [], []
    for rec in fout.read_text().splitlines():
        p = rec.split()
        if p[0] == "I":
            ins.append(int(p[1]))
        else:
            outs.append((int(p[1]), int(p[2], 16)))
    return ins, outs


def patterns(stall: int, seed: int) -> dict[str, Pattern]:
    """The cycle model's port patterns for the stalls ``drive`` gives the testbench."""
    if not stall:
        return {}
    return {
        "in_valid": Pattern.random(stall, seed, VALID),
        "out_ready": Pattern.random(stall, seed, READY),
    }
