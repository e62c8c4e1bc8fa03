"""The Vivado project of a PYNQ overlay: files, the Tcl run for real under stubbed Vivado
commands (tclsh; Python's tkinter.Tcl() where tclsh is missing), sanitized names, one-line
errors, and run() end to end with a fake ``vivado`` that writes the reports Vivado would."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_rtl import chain

from compiler.backends.rtl import vivado as V
from compiler.backends.rtl.generate import generate
from compiler.errors import TaperError

IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SEP = "\x1f"

# Stubs of every Vivado command the templates use. Each records its call (one line, fields
# separated by \x1f) and returns a plausible handle; set_property -dict is recorded one
# property per line. Any other command that is not core Tcl fails, and so does exec.
STUBS = r"""
set ::log [open $::stub_log w]
fconfigure $::log -encoding utf-8
array set ::prop {}
set ::cur_proj ""
set ::bd ""
proc rec {args} {
    puts $::log [string map [list "\n" "\\n"] [join $args "\x1f"]]
    flush $::log
}
rename unknown ::tcl_unknown
proc unknown {args} { error "unstubbed command: [lindex $args 0]" }
proc exec {args} { error "exec called: $args" }
proc opt {arglist name} {
    set i [lsearch -exact $arglist $name]
    if {$i < 0} { return "" }
    return [lindex $arglist [expr {$i + 1}]]
}
proc stubs {names body} {
    foreach n $names {
        proc $n {args} "rec $n {*}\$args\n$body"
    }
}
namespace eval ipx {}
stubs {update_compile_order ipx::remove_bus_interface ipx::remove_memory_map
       ipx::associate_bus_interfaces ipx::add_file ipx::create_xgui_files
       ipx::update_checksums ipx::check_integrity ipx::save_core close_project
       update_ip_catalog apply_bd_automation connect_bd_intf_net connect_bd_net
       assign_bd_address validate_bd_design save_bd_design wait_on_run open_run} {return ""}
stubs {get_bd_intf_pins get_bd_intf_ports get_bd_pins get_bd_cells get_bd_addr_spaces
       get_bd_addr_segs get_files} {return [lindex $args end]}
stubs {current_fileset} {return sources_1}
stubs {current_project} {return $::cur_proj}
stubs {ipx::current_core} {return core}
stubs {ipx::get_file_groups} {return fg_[lindex $args 0]}
stubs {ipx::get_files} {if {"-quiet" in $args} {return ""}; return file_[lindex $args end]}
stubs {ipx::get_memory_maps} {return {inferred_map}}
stubs {ipx::get_bus_interfaces} {
    if {[lindex $args 0] eq "-of_objects"} { return {inferred_S_AXIS inferred_CLK} }
    return busif_[lindex $args 0]
}
stubs {ipx::add_bus_interface} {return busif_[lindex $args 0]}
stubs {ipx::add_port_map ipx::add_bus_parameter ipx::add_address_block} {
    return [lindex $args 1]/[lindex $args 0]
}
stubs {ipx::add_memory_map} {return mm_[lindex $args 0]}
stubs {ipx::package_project} {file mkdir [opt $args -root_dir]; return ""}
stubs {create_project} {
    set pos [lsearch -all -inline -not -glob [lreplace $args end-1 end] -*]
    set ::cur_proj [lindex $pos 0]
    set ::proj_dir [lindex $pos 1]
    file mkdir $::proj_dir
    return $::cur_proj
}
stubs {add_files} {return [lindex $args end]}
stubs {get_board_parts} {return $::stub_board_parts}
stubs {create_bd_design} {set ::bd [lindex $args 0]; return $::bd}
stubs {get_ipdefs} {
    regexp {"(.*):\*"} [opt $args -filter] -> prefix
    return [list $prefix:1.10 $prefix:1.9]
}
stubs {create_bd_cell create_bd_intf_port} {return [lindex $args end]}
stubs {get_runs} {return run_[lindex $args 0]}
stubs {make_wrapper} {return [file join $::proj_dir ${::bd}_wrapper.v]}
stubs {generate_target} {
    set hh [list sources_1 bd $::bd hw_handoff]
    switch $::stub_hwh {
        gen { set d [file join $::proj_dir $::cur_proj.gen {*}$hh] }
        srcs { set d [file join $::proj_dir $::cur_proj.srcs {*}$hh] }
        odd { set d [file join $::proj_dir somewhere else] }
        none { return "" }
    }
    file mkdir $d
    set f [open [file join $d $::bd.hwh] w]; puts $f "<hwh/>"; close $f
    return ""
}
stubs {launch_runs} {
    if {[lindex $args 0] eq "impl_1"} {
        set d [file join $::proj_dir $::cur_proj.runs impl_1]
        file mkdir $d
        set f [open [file join $d ${::bd}_wrapper.bit] w]; puts $f bits; close $f
        set ::prop(run_impl_1,DIRECTORY) $d
    }
    return ""
}
stubs {report_utilization report_timing_summary} {
    set f [open [opt $args -file] w]; puts $f "stub report"; close $f
    return ""
}
proc set_property {args} {
    if {[lindex $args 0] eq "-dict"} {
        foreach {k v} [lindex $args 1] {
            set_property $k $v [lindex $args 2]
        }
        return ""
    }
    lassign $args name value obj
    rec set_property $name $value $obj
    set ::prop($obj,$name) $value
    return ""
}
proc get_property {name obj} {
    rec get_property $name $obj
    if {[info exists ::prop($obj,$name)]} { return $::prop($obj,$name) }
    switch -- $name {
        PROGRESS { return 100% }
        STATUS { return "write_bitstream Complete!" }
        NAME { return $obj }
        CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ {
            return $::prop($obj,CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ)
        }
    }
    return ""
}
"""


def tcl_interpreter() -> str:
    if shutil.which("tclsh"):
        return "tclsh"
    try:
        import tkinter

        tkinter.Tcl()
        return "tkinter"
    except Exception:  # noqa: BLE001 - no Tk in this Python
        pytest.fail("neither tclsh nor tkinter.Tcl(): the Tcl cannot be checked")


def source_stubbed(out: Path, board_parts: str = "", hwh: str = "gen") -> list[list[str]]:
    """Source out/build.tcl with the Vivado commands stubbed; the recorded calls."""
    drv = out.parent / "driver.tcl"
    log = out.parent / "calls.log"
    drv.write_text(
        f"set ::stub_log {{{log}}}\nset ::stub_board_parts {{{board_parts}}}\n"
        f"set ::stub_hwh {hwh}\n{STUBS}\nsource {{{out / V.BUILD_TCL}}}\n"
    )
    if tcl_interpreter() == "tclsh":
        r = subprocess.run(["tclsh", str(drv)], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
    else:
        import tkinter

        try:
            tkinter.Tcl().eval(f"source {{{drv}}}")
        except tkinter.TclError as e:
            raise RuntimeError(str(e)) from None
    return [ln.split(SEP) for ln in log.read_text(encoding="utf-8").splitlines()]


def model_and_rtl(tmp_path: Path, name: str = "t", layers: int = 2):
    specs = [({"mw": 12, "mh": 6}, 2, 3), ({"mw": 6, "mh": 4, "ibits": 2}, 4, 6)][:layers]
    m = chain(np.random.default_rng(0), specs)
    rtl = tmp_path / "rtl"
    generate(m, rtl)
    m.name = name
    shell = f"{V.tcl_name(name)}_shell"
    ports = ",\n".join(f"    {p}" for p in V.SHELL_PORTS)
    (rtl / f"{shell}.sv").write_text(f"module {shell} (\n{ports}\n);\nendmodule\n")
    return m, rtl


def props(calls: list[list[str]], obj: str) -> dict[str, str]:
    return {c[1]: c[2] for c in calls if c[0] == "set_property" and c[3] == obj}


def calls_of(calls: list[list[str]], cmd: str) -> list[list[str]]:
    return [c[1:] for c in calls if c[0] == cmd]


@pytest.fixture
def project(tmp_path):
    m, rtl = model_and_rtl(tmp_path)
    out = V.write_project(m, rtl, tmp_path / "vivado", "pynq-z2", 100)
    return m, rtl, out


def test_project_is_self_contained_and_deterministic(project, tmp_path):
    m, rtl, out = project
    meta = json.loads((out / V.PROJECT_JSON).read_text())
    hdl = (rtl / "filelist.f").read_text().split()
    mems = sorted(p.name for p in rtl.glob("*.mem"))
    assert mems and meta["rtl_files"] == [*hdl, "t_shell.sv"] and meta["mem_files"] == mems
    for f in meta["rtl_files"] + mems:
        assert (out / "rtl" / f).read_bytes() == (rtl / f).read_bytes()
    for f in V.TEMPLATE_STEPS:
        assert (out / "tcl" / f).read_text() == (V.TEMPLATES / f).read_text()
    assert (out / V.BUILD_TCL).read_text() == (V.TEMPLATES / V.BUILD_TCL).read_text()
    assert "vivado -mode batch -source build.tcl" in (out / "README.md").read_text()
    assert V.command(out) == ["vivado", "-mode", "batch", "-source", "build.tcl"]
    design = json.loads((rtl / "design.json").read_text())
    # the shell's streams: power-of-two bytes holding the top's words
    assert design["input"]["width"] == 12 and meta["in_bytes"] == 2  # 3 lanes of 4 bits
    assert 8 * meta["out_bytes"] >= design["output"]["width"]
    assert meta["max_batch_frames"] >= 1000 and meta["fclk_mhz"] == 100
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    V.write_project(m, rtl, out, "pynq-z2", 100)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_build_tcl_runs_with_stubbed_vivado_and_builds_the_design(project):
    m, rtl, out = project
    meta = json.loads((out / V.PROJECT_JSON).read_text())
    calls = source_stubbed(out)
    cells = {c[-1]: c[c.index("-vlnv") + 1] for c in calls_of(calls, "create_bd_cell")}
    assert cells == {
        "ps7": "xilinx.com:ip:processing_system7:1.10",  # the newest in the catalog
        "axi_dma": "xilinx.com:ip:axi_dma:1.10",
        "accel": "taper.dev:taper:t_shell:1.10",
        "ctrl_interconnect": "xilinx.com:ip:axi_interconnect:1.10",
        "mem_smartconnect": "xilinx.com:ip:smartconnect:1.10",
        "fabric_reset": "xilinx.com:ip:proc_sys_reset:1.10",
    }
    dma = props(calls, "axi_dma")
    assert dma["CONFIG.c_include_sg"] == "0" and dma["CONFIG.c_sg_length_width"] == "26"
    assert dma["CONFIG.c_m_axis_mm2s_tdata_width"] == str(8 * meta["in_bytes"]) == "16"
    assert dma["CONFIG.c_s_axis_s2mm_tdata_width"] == str(8 * meta["out_bytes"])
    assert dma["CONFIG.c_include_mm2s"] == dma["CONFIG.c_include_s2mm"] == "1"
    ps = props(calls, "ps7")
    assert float(ps["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"]) == 100
    assert ps["CONFIG.PCW_USE_M_AXI_GP0"] == ps["CONFIG.PCW_USE_S_AXI_HP0"] == "1"
    # no board files: PYNQ's PS7 values, DDR and MIO included
    assert ps["CONFIG.PCW_UIPARAM_DDR_PARTNO"] == "MT41J256M16 RE-125"
    assert ps["CONFIG.PCW_UART0_UART0_IO"] == "MIO 14 .. 15"
    assert (out / "reports" / "ps_config.txt").read_text().strip() == "table pynq_z2"
    assert not calls_of(calls, "apply_bd_automation")
    # the IP: the sources, the contract's interfaces, the clock
    added = calls_of(calls, "add_files")[0][-1].split()
    assert added == [str(out / "rtl" / f) for f in meta["rtl_files"] + meta["mem_files"]]
    mem_files = [c[0] for c in calls_of(calls, "ipx::add_file")]
    assert mem_files == [f"src/{f}" for f in meta["mem_files"]]  # none imported by the stub
    assert all((out / "work" / "ip" / f).is_file() for f in mem_files)
    busifs = [c[0] for c in calls_of(calls, "ipx::add_bus_interface")]
    assert busifs == ["s_axis", "m_axis", "s_axil", "rst_n", "clk"]
    assert calls_of(calls, "ipx::remove_bus_interface")  # inferred ones replaced
    assert props(calls, "busif_clk/FREQ_HZ")["value"] == "100000000"
    assert props(calls, "busif_clk/FREQ_TOLERANCE_HZ")["value"] == "-1"
    assert props(calls, "busif_rst_n/POLARITY")["value"] == "ACTIVE_LOW"
    maps = {c[3].split("/")[-1]: c[2] for c in calls if c[0] == "set_property" and
            c[1] == "physical_name" and c[3].startswith("busif_m_axis/")}  # fmt: skip
    assert maps == {"TDATA": "m_axis_tdata", "TVALID": "m_axis_tvalid",
                    "TREADY": "m_axis_tready", "TLAST": "m_axis_tlast", "TKEEP": "m_axis_tkeep"}  # fmt: skip
    axil = [c for c in calls if c[0] == "set_property" and c[3].startswith("busif_s_axil/")]
    assert {c[2] for c in axil} == {p for p in V.SHELL_PORTS if p.startswith("s_axil_")}
    for bi, bus in (("s_axis", "axis"), ("s_axil", "aximm"), ("clk", "clock")):
        p = props(calls, f"busif_{bi}")
        assert p["abstraction_type_vlnv"].endswith(f":{bus}_rtl:1.0"), p
    assert props(calls, "mm_s_axil/regs")["range"] == "4096"
    # stream and memory paths, addresses
    nets = {tuple(c) for c in calls_of(calls, "connect_bd_intf_net")}
    assert ("axi_dma/M_AXIS_MM2S", "accel/s_axis") in nets
    assert ("accel/m_axis", "axi_dma/S_AXIS_S2MM") in nets
    assert ("mem_smartconnect/M00_AXI", "ps7/S_AXI_HP0") in nets
    assert ("ctrl_interconnect/M01_AXI", "accel/s_axil") in nets
    clock_net = next(c for c in calls_of(calls, "connect_bd_net") if c[0] == "ps7/FCLK_CLK0")
    assert "accel/clk" in clock_net and "axi_dma/m_axi_s2mm_aclk" in clock_net
    addrs = {c[-1]: c[c.index("-offset") + 1] for c in calls_of(calls, "assign_bd_address") if c}
    assert addrs == {"axi_dma/S_AXI_LITE/Reg": "0x40400000", "accel/s_axil/regs": "0x43C00000"}
    # synthesis, implementation, reports where run() reads them, the overlay files
    runs = calls_of(calls, "launch_runs")
    assert runs[0][0] == "synth_1" and runs[1][:3] == ["impl_1", "-to_step", "write_bitstream"]
    reports = {c[c.index("-file") + 1] for c in calls if c[0].startswith("report_")}
    assert reports == {str(out / "reports" / f) for f in (V.UTILIZATION, V.UTILIZATION_HIER, V.TIMING)}  # fmt: skip
    assert (out / "output" / "t.bit").read_text() == "bits\n"
    assert (out / "output" / "t.hwh").read_text() == "<hwh/>\n"


@pytest.mark.parametrize("board", ["pynq-z1", "pynq-z2"])
def test_board_files_installed_apply_the_board_preset(tmp_path, board):
    m, rtl = model_and_rtl(tmp_path)
    out = V.write_project(m, rtl, tmp_path / "vivado", board, 125)
    part = V.PS_BOARDS[board].board_part
    calls = source_stubbed(out, board_parts=f"xilinx.com:zc702:part0:1.4 {part}")
    assert props(calls, m.name)["board_part"] == part
    (auto,) = calls_of(calls, "apply_bd_automation")
    assert 'apply_board_preset "1"' in auto[auto.index("-config") + 1] and auto[-1] == "ps7"
    ps = props(calls, "ps7")
    assert "CONFIG.PCW_UIPARAM_DDR_PARTNO" not in ps
    assert float(ps["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"]) == 125
    assert props(calls, "busif_clk/FREQ_HZ")["value"] == "125000000"
    assert (out / "reports" / "ps_config.txt").read_text().strip() == f"board_part {part}"


@pytest.mark.parametrize("layout", ["srcs", "odd"])
def test_hwh_is_found_in_older_vivado_layouts_and_anywhere_below(project, layout):
    _, _, out = project
    source_stubbed(out, hwh=layout)
    assert (out / "output" / "t.hwh").read_text() == "<hwh/>\n"


def test_no_hwh_fails_the_build(project):
    _, _, out = project
    with pytest.raises(RuntimeError, match=r"no t_bd\.hwh"):
        source_stubbed(out, hwh="none")
    assert not (out / "output" / "t.bit").exists()


def test_odd_model_name_never_reaches_tcl_unsanitized(tmp_path):
    evil = 'a"; exec rm -rf /; "'
    m, rtl = model_and_rtl(tmp_path, name=evil)
    out = V.write_project(m, rtl, tmp_path / "vivado", "pynq-z2", 100)
    name = V.tcl_name(evil)
    assert name == "a___exec_rm__rf_____"
    for p in out.rglob("*"):
        if p.is_file():
            text = p.read_text(errors="replace")
            assert evil not in text and "rm -rf" not in text, p
    assert f"set taper_name {name}\n" in (out / V.SETTINGS_TCL).read_text()
    calls = source_stubbed(out)  # exec is stubbed to fail: the run would stop on one
    named = [c[-1] for c in calls_of(calls, "create_bd_cell")]
    named += [c[0] for c in calls_of(calls, "create_bd_design")]
    named += [c[1] for c in calls_of(calls, "create_project")]
    assert named and all(IDENT.fullmatch(n) for n in named), named
    assert (out / "output" / f"{name}.bit").is_file() and (out / "output" / f"{name}.hwh").is_file()
    assert V.tcl_name("9 lives") == "m_9_lives"


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


def test_unknown_board_and_bad_clocks_are_one_line_errors(tmp_path):
    m, rtl = model_and_rtl(tmp_path, layers=1)
    out = tmp_path / "vivado"
    with pytest.raises(TaperError) as e:
        V.write_project(m, rtl, out, "zcu104", 100)
    assert one_line(e).startswith("board: ") and "pynq-z1, pynq-z2" in str(e.value)
    for bad in (300, 5, float("nan"), 0):
        with pytest.raises(TaperError) as e:
            V.write_project(m, rtl, out, "pynq-z2", bad)
        assert one_line(e).startswith("clock_mhz: ") and "10 to 250 MHz" in str(e.value)
    with pytest.raises(TaperError) as e:  # between 142.857 (1000/7) and 166.667 (1000/6)
        V.write_project(m, rtl, out, "pynq-z2", 150)
    assert "nearest 142.857 or 166.667 MHz" in one_line(e)
    with pytest.raises(TaperError) as e:  # 1000/67: 67 is prime, above the 6-bit dividers
        V.write_project(m, rtl, out, "pynq-z2", 1000 / 67)
    one_line(e)
    assert not out.exists()
    f, (a, b) = V.fclk(166.67)
    assert f == pytest.approx(1000 / 6) and a * b == 6
    assert V.fclk(10)[0] == 10 and V.fclk(250)[0] == 250 and V.fclk(50)[0] == 50


def test_shell_and_file_list_are_checked(tmp_path):
    m, rtl = model_and_rtl(tmp_path, layers=1)
    out = tmp_path / "vivado"
    shell = rtl / "t_shell.sv"
    shell.write_text(shell.read_text().replace("m_axis_tkeep", "m_axis_tuser"))
    with pytest.raises(TaperError) as e:
        V.write_project(m, rtl, out, "pynq-z2", 100)
    assert "ports m_axis_tkeep" in one_line(e)
    shell.unlink()
    with pytest.raises(TaperError) as e:
        V.write_project(m, rtl, out, "pynq-z2", 100)
    assert "no t_shell.sv" in one_line(e)
    m, rtl = model_and_rtl(tmp_path / "b", layers=1)
    (rtl / "filelist.f").write_text("taper_fifo.sv\nx; exec y.sv\n")
    with pytest.raises(TaperError) as e:
        V.write_project(m, rtl, out, "pynq-z2", 100)
    assert "'x; exec y.sv'" in one_line(e)


def test_shell_file_list_sets_the_sources_and_their_order(tmp_path):
    m, rtl = model_and_rtl(tmp_path, layers=1)
    (rtl / "taper_axil_regs.sv").write_text("module taper_axil_regs; endmodule\n")
    hdl = (rtl / "filelist.f").read_text().split()
    out = V.write_project(m, rtl, tmp_path / "a", "pynq-z2", 100)
    # without the shell step's list: the accelerator's, then the other sources, shell last
    assert json.loads((out / V.PROJECT_JSON).read_text())["rtl_files"] == [
        *hdl,
        "taper_axil_regs.sv",
        "t_shell.sv",
    ]
    order = ["taper_axil_regs.sv", "t_shell.sv", *hdl]
    (rtl / V.SHELL_FILELIST).write_text("\n".join(order) + "\n")
    out = V.write_project(m, rtl, tmp_path / "b", "pynq-z2", 100)
    meta = json.loads((out / V.PROJECT_JSON).read_text())
    assert meta["rtl_files"] == [*order[:1], *hdl, "t_shell.sv"]
    assert (
        f"set taper_rtl_files {{{' '.join(meta['rtl_files'])}}}"
        in (out / V.SETTINGS_TCL).read_text()
    )


def test_run_is_none_without_vivado(project, monkeypatch, tmp_path):
    _, _, out = project
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert V.run(out, timeout=10) is None
    assert not (out / V.RESULT_JSON).exists()


UTILIZATION_RPT = """\
Copyright 1986-2022 Xilinx, Inc. All Rights Reserved.
| Design       : t_bd_wrapper
| Device       : 7z020clg400-1

1. Slice Logic
--------------

+----------------------------+------+-------+------------+-----------+-------+
|          Site Type         | Used | Fixed | Prohibited | Available | Util% |
+----------------------------+------+-------+------------+-----------+-------+
| Slice LUTs                 | 4321 |     0 |          0 |     53200 |  8.12 |
|   LUT as Logic             | 4000 |     0 |          0 |     53200 |  7.52 |
| Slice Registers            | 6543 |     0 |          0 |    106400 |  6.15 |
+----------------------------+------+-------+------------+-----------+-------+

3. Memory
---------

+-------------------+------+-------+------------+-----------+-------+
|     Site Type     | Used | Fixed | Prohibited | Available | Util% |
+-------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    |  3.5 |     0 |          0 |       140 |  2.50 |
|   RAMB36/FIFO*    |    3 |     0 |          0 |       140 |  2.14 |
+-------------------+------+-------+------------+-----------+-------+

4. DSP
------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           |    2 |     0 |          0 |       220 |  0.91 |
+----------------+------+-------+------------+-----------+-------+
"""

HIER_RPT = """\
+----------------------------+--------------------------+------------+------------+---------+------+------+--------+--------+--------------+
|          Instance          |          Module          | Total LUTs | Logic LUTs | LUTRAMs | SRLs |  FFs | RAMB36 | RAMB18 | DSP48 Blocks |
+----------------------------+--------------------------+------------+------------+---------+------+------+--------+--------+--------------+
| t_bd_wrapper               |                    (top) |       4321 |       4000 |     300 |   21 | 6543 |      3 |      1 |            2 |
|   t_bd_i                   |                     t_bd |       4321 |       4000 |     300 |   21 | 6543 |      3 |      1 |            2 |
|     accel                  |             t_bd_accel_0 |       1200 |       1100 |     100 |    0 | 1500 |      2 |      1 |            0 |
|     axi_dma                |           t_bd_axi_dma_0 |       1800 |       1700 |     100 |    0 | 2500 |      1 |      0 |            0 |
+----------------------------+--------------------------+------------+------------+---------+------+------+--------+--------+--------------+
"""

TIMING_RPT = """\
------------------------------------------------------------------------------------------------
| Design Timing Summary
| ---------------------
------------------------------------------------------------------------------------------------

    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)
    -------      -------  ---------------------  -------------------      -------      -------
      {wns}        0.000                      0                12345        0.031        0.000


------------------------------------------------------------------------------------------------
| Clock Summary
| -------------
------------------------------------------------------------------------------------------------

Clock       Waveform(ns)         Period(ns)      Frequency(MHz)
-----       ------------         ----------      --------------
clk_fpga_0  {{0.000 4.000}}        8.000           125.000
"""


def fake_vivado(bin_dir: Path, body: str) -> Path:
    """An executable ``vivado`` in ``bin_dir``: checks its arguments, then runs ``body``
    (Python, with ``out`` the working directory and ``meta`` its project.json)."""
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "vivado"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, time\nfrom pathlib import Path\n"
        "assert sys.argv[1:] == ['-mode', 'batch', '-source', 'build.tcl'], sys.argv\n"
        "out = Path.cwd()\nassert (out / 'build.tcl').is_file()\n"
        "meta = json.loads((out / 'project.json').read_text())\n" + body
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


WRITES_REPORTS = """
r = out / 'reports'; r.mkdir(exist_ok=True)
(r / 'utilization.rpt').write_text({util!r})
(r / 'utilization_hier.rpt').write_text({hier!r})
(r / 'timing_summary.rpt').write_text({timing!r})
(r / 'ps_config.txt').write_text('table pynq_z2\\n')
o = out / 'output'; o.mkdir(exist_ok=True)
(o / (meta['name'] + '.bit')).write_bytes(b'bit')
(o / (meta['name'] + '.hwh')).write_text('<hwh/>')
print('write_bitstream completed successfully')
"""


@pytest.mark.parametrize(("wns", "achieved", "met"), [("1.600", 156.25, True), ("-0.500", 117.647, False)])  # fmt: skip
def test_run_parses_the_reports_of_a_fake_vivado(tmp_path, monkeypatch, wns, achieved, met):
    m, rtl = model_and_rtl(tmp_path)
    out = V.write_project(m, rtl, tmp_path / "vivado", "pynq-z2", 125)
    (out / "reports").mkdir()
    (out / "reports" / V.TIMING).write_text("stale")  # an earlier run's: removed first
    body = WRITES_REPORTS.format(util=UTILIZATION_RPT, hier=HIER_RPT, timing=TIMING_RPT.format(wns=wns))  # fmt: skip
    fake_vivado(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    r = V.run(out, timeout=60)
    assert r is not None
    assert (r["lut"], r["ff"], r["bram36"], r["dsp"]) == (4321, 6543, 3.5, 2)
    assert r["wns_ns"] == float(wns) and r["target_mhz"] == 125
    assert r["achieved_mhz"] == pytest.approx(achieved, abs=1e-3) and r["timing_met"] is met
    assert r["accelerator"] == {"lut": 1200, "ff": 1500, "bram36": 2.5, "dsp": 0}
    assert r["ps_config"] == "table pynq_z2" and 0 <= r["seconds"] < 60
    assert Path(r["bitstream"]) == out / "output" / "t.bit"
    assert Path(r["hwh"]) == out / "output" / "t.hwh"
    assert json.loads((out / V.RESULT_JSON).read_text()) == r
    assert "write_bitstream completed" in (out / V.RUN_LOG).read_text()


def test_run_failure_and_missing_outputs_are_one_line_errors(project, tmp_path, monkeypatch):
    _, _, out = project
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    fake_vivado(
        tmp_path / "bin",
        "print('INFO: starting')\nprint(\"ERROR: [Synth 8-439] module 'x' not found\")\n"
        "sys.exit(1)\n",
    )
    with pytest.raises(TaperError) as e:
        V.run(out, timeout=60)
    assert "vivado failed (exit 1" in one_line(e) and "module 'x' not found" in str(e.value)
    body = WRITES_REPORTS.format(util=UTILIZATION_RPT, hier=HIER_RPT, timing=TIMING_RPT.format(wns="1.0"))  # fmt: skip
    fake_vivado(tmp_path / "bin", body.replace("(o / (meta['name'] + '.hwh')).write_text('<hwh/>')", ""))  # fmt: skip
    with pytest.raises(TaperError) as e:
        V.run(out, timeout=60)
    assert "t.hwh: missing" in one_line(e)
    fake_vivado(tmp_path / "bin", "(out / 'reports').mkdir()\n(out / 'reports' / 'utilization.rpt').write_text('nothing')\n")  # fmt: skip
    with pytest.raises(TaperError) as e:
        V.run(out, timeout=60)
    assert "no lut, ff, bram36, dsp row" in one_line(e)


def test_run_timeout_ends_vivado_and_its_children(project, tmp_path, monkeypatch):
    _, _, out = project
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    fake_vivado(
        tmp_path / "bin",
        "import subprocess\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "(out / 'child.pid').write_text(str(child.pid))\ntime.sleep(60)\n",
    )
    t = time.monotonic()
    with pytest.raises(TaperError) as e:
        V.run(out, timeout=2)
    assert "did not finish within 2 s" in one_line(e) and time.monotonic() - t < 30
    pid = int((out / "child.pid").read_text())
    for _ in range(50):  # killed: gone, or a zombie until someone reaps it
        stat_file = Path(f"/proc/{pid}/stat")
        if not stat_file.exists() or stat_file.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"child {pid} of the fake vivado still runs")
