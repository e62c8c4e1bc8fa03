"""ULX3S (ECP5) deploy: the UART frame protocol, the wrapper + accelerator in Verilator over
its serial lines, board and clock checks, and a real bitstream (yosys, nextpnr, ecppack)."""

import json
import os
import threading

import numpy as np
import pytest
from test_rtl import chain

from compiler.backends.rtl import ecp5
from compiler.backends.rtl.generate import decode, encode, generate
from compiler.boards import board
from compiler.deploy import serial as S
from compiler.errors import TaperError
from compiler.sim import bitexact


def small_model(seed: int = 3):
    """Two MatVec layers whose stream words span two bytes each way (12 bits in, 14 out)."""
    rng = np.random.default_rng(seed)
    m = chain(
        rng,
        [({"mw": 12, "mh": 6, "ibits": 4}, 2, 3), ({"mw": 6, "mh": 4, "thresholds": False}, 2, 2)],
    )
    m.check()
    return m


def inputs(m, n: int, seed: int = 0) -> np.ndarray:
    t = m.layers[0].input_type
    return np.random.default_rng(seed).integers(t.min, t.max + 1, size=(n, m.layers[0].in_features))


def crc_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE the slow way, to check the one the protocol uses."""
    c = 0xFFFF
    for b in data:
        c ^= b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else c << 1
            c &= 0xFFFF
    return c


def test_frame_codec():
    assert S.crc16(b"123456789") == 0x29B1  # the catalogue's check value
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    assert S.crc16(data) == crc_bitwise(data)
    for elems, bits in [(1, 1), (1, 7), (1, 8), (2, 7), (3, 4), (5, 9), (4, 16), (3, 24)]:
        codes = rng.integers(0, 1 << bits, size=(6, elems), dtype=np.int64)
        raw = S.pack(codes, bits)
        assert len(raw) == 6 * -(-(elems * bits) // 8)
        assert np.array_equal(S.unpack(raw, elems, bits), codes)
    # little-endian words, element 0 in the low bits
    assert S.pack(np.array([[0x5, 0xA, 0x3]]), 4) == bytes([0xA5, 0x03])
    frame = S.encode_frame(b"\x01\x02\x03")
    assert frame[:3] == bytes([0xA5, 3, 0]) and len(frame) == 8
    replies = S.decode_replies(b"\x00\x42" + frame + bytes([0x15, 2]) + frame[:-1])
    assert [r.kind for r in replies] == ["frame", "nak"]  # junk skipped, a cut frame dropped
    assert replies[0].payload == b"\x01\x02\x03" and replies[0].crc_ok
    assert replies[1].reason == 2 and "checksum" in replies[1].describe()
    bad = bytearray(frame)
    bad[4] ^= 1
    assert not S.decode_replies(bytes(bad))[0].crc_ok


def test_model_frames_round_trip():
    m = small_model()
    s = S.streams(m)
    assert (s.in_width, s.in_words, s.in_len, s.out_width, s.out_words, s.out_len) == (
        12, 4, 8, 14, 2, 4
    )  # fmt: skip
    q = inputs(m, 2)
    frames = S.input_frames(m, q)
    assert [len(f) for f in frames] == [5 + s.in_len] * 2
    with pytest.raises(TaperError, match="expected \\(frames, 12\\)"):
        S.input_frames(m, q[:, :5])
    with pytest.raises(TaperError, match="outside INT4"):
        S.input_frames(m, q + 100)
    with pytest.raises(TaperError, match="expected 4"):
        S.output_values(m, b"\x00")


def test_ulx3s_board_and_existing_boards():
    b = board("ulx3s")
    assert (b.part, b.family, b.device, b.package, b.speed) == (
        "LFE5U-85F-6BG381C", "ecp5", "85k", "CABGA381", 6
    )  # fmt: skip
    assert b.limits == {"LUT4": 83_640, "FF": 83_640, "DP16KD": 208, "MULT18": 156}
    assert (b.osc_mhz, b.clock_pin, b.uart_rx_pin, b.uart_tx_pin) == (25.0, "G2", "M1", "L4")
    z = board("pynq-z2")
    assert (z.part, z.lut, z.ff, z.bram36, z.dsp, z.family) == (
        "xc7z020clg400-1", 53_200, 106_400, 140, 220, "xilinx"
    )  # fmt: skip
    with pytest.raises(TaperError, match="ECP5 boards \\(ulx3s\\); pynq-z2 has a xc7z020"):
        ecp5.ecp5_board("pynq-z2")


def test_clock_and_baud(tmp_path):
    b = board("ulx3s")
    assert ecp5.clks_per_bit(25.0, 115_200) == 217
    for clock, baud, msg in [
        (25.0, 10_000_000, "at most 6,250,000 at 25 MHz"),
        (25.0, 3_000_000, "4.2% off"),
        (25.0, 0, "positive integer"),
    ]:
        with pytest.raises(TaperError, match=msg) as e:
            ecp5.clks_per_bit(clock, baud)
        assert "\n" not in str(e.value)
    assert ecp5.make_clock(b, 25.0, tmp_path).pll is None
    for mhz in (1000.0, 5.0, -3.0):
        with pytest.raises(TaperError, match="MHz") as e:
            ecp5.make_clock(b, mhz, tmp_path)
        assert "\n" not in str(e.value)
    c = ecp5.make_clock(b, 40.0, tmp_path)  # ecppll: 25 / 5 * 8 / 15... = 40 MHz exactly
    assert c.mhz == 40.0 and "EHXPLLL" in c.pll and "module taper_pll" in c.pll


def test_board_top_and_pins(tmp_path):
    m = small_model()
    rtl = tmp_path / "rtl"
    generate(m, rtl)
    src = ecp5.board_sources(m, rtl, tmp_path / "work")
    top = (tmp_path / "work" / f"{src['top']}.sv").read_text()
    assert src["top"] == "t_ulx3s" and "t_uart #(.CLKS_PER_BIT(217)" in top
    assert "assign clk = clk_osc;" in top and "assign wifi_gpio0 = 1'b1;" in top
    pins = (tmp_path / "work" / src["lpf"]).read_text()
    for port, pin in [("clk_osc", "G2"), ("uart_rx", "M1"), ("uart_tx", "L4"), ("led[0]", "B2")]:
        assert f'LOCATE COMP "{port}" SITE "{pin}";' in pins
    assert 'FREQUENCY PORT "clk_osc" 25 MHz;' in pins
    other = small_model(seed=4)
    other.name = "u"
    with pytest.raises(TaperError, match="top is 't_top', expected u_top"):
        ecp5.board_sources(other, rtl, tmp_path / "w2")
    other.name = "bad name"
    with pytest.raises(TaperError, match="not a safe Verilog identifier"):
        ecp5.uart_verilog(other, S.streams(other), 8, 100)


def test_fit_is_checked_by_resource():
    b = board("ulx3s")
    used = ecp5.ecp5_cells({"LUT4": 10, "CCU2C": 2, "TRELLIS_DPR16X4": 1, "DP16KD": 300})
    assert used == {"LUT4": 20, "FF": 0, "DP16KD": 300, "MULT18": 0}
    with pytest.raises(
        TaperError, match="does not fit the ulx3s .*: 300 DP16KD needed, 208 available"
    ):
        ecp5.check_fit(used, b)
    ecp5.check_fit({"LUT4": 83_640, "FF": 1}, b)


def test_run_serial_names_a_missing_port():
    m = small_model()
    with pytest.raises(TaperError, match="serial port /dev/taper-no-such-port: cannot open") as e:
        S.run_serial(m, inputs(m, 1), "/dev/taper-no-such-port")
    assert "\n" not in str(e.value)


def emulated_board(m, master: int, mode: str) -> None:
    """The board's side of the protocol over a pty, with the bit-accurate simulator as the
    accelerator. mode: "ok" (the second frame it sees is NAKed once), "nak" (every frame is
    NAKed), "mute" (never answers)."""
    s = S.streams(m)

    def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            try:
                chunk = os.read(master, n - len(data))
            except OSError:  # the host closed the port
                return data
            if not chunk:
                return data
            data += chunk
        return data

    seen = 0
    while (frame := S.read_reply(read)) is not None:
        seen += 1
        if mode == "mute":
            continue
        if mode == "nak" or seen == 2:
            os.write(master, bytes([S.NAK, 2]))
            continue
        x = decode(S.unpack(frame.payload, s.in_elems, s.in_type.bits), s.in_type)
        y = bitexact.run_hardware(m, x.reshape(1, -1))[m.output_tensor]
        codes = encode(y, s.out_type).reshape(s.out_words, s.out_elems)
        os.write(master, S.encode_frame(S.pack(codes, s.out_type.bits)))


@pytest.mark.parametrize("mode", ["ok", "nak", "mute"])
def test_run_serial_through_a_pty(mode):
    """run_serial over a real pseudo-terminal (pyserial) to an emulated board: outputs equal
    the simulator's and a NAKed frame is sent again; a board that keeps NAKing or never
    answers is a one-line error."""
    m = small_model()
    q = inputs(m, 3)
    master, slave = os.openpty()
    board_side = threading.Thread(target=emulated_board, args=(m, master, mode), daemon=True)
    board_side.start()
    try:
        if mode == "ok":
            out = S.run_serial(m, q, os.ttyname(slave), timeout=2.0)
            np.testing.assert_array_equal(out, bitexact.run_hardware(m, q)[m.output_tensor])
        else:
            msg = "frame 0 failed 3 times, last: NAK 2" if mode == "nak" else "no reply to frame 0"
            with pytest.raises(TaperError, match=msg) as e:
                S.run_serial(m, q, os.ttyname(slave), timeout=0.3)
            assert "\n" not in str(e.value)
    finally:
        os.close(slave)
        os.close(master)
        board_side.join(timeout=5)


def test_uart_wrapper_and_accelerator_in_verilator():
    """Frames bit-serial over the UART line into the wrapper + accelerator: outputs equal the
    bit-accurate simulator's; a bad CRC, a wrong length and a frame that stops are NAKed,
    bytes outside frames are skipped, and the next frame is answered right."""
    m = small_model()
    s = S.streams(m)
    q = inputs(m, 4)
    ref = bitexact.run_hardware(m, q)[m.output_tensor]
    frames = S.input_frames(m, q)
    reply = 5 + s.out_len
    corrupt = bytearray(frames[1])
    corrupt[5] ^= 0x10  # a payload bit
    wrong_length = bytes([S.SYNC]) + (s.in_len + 1).to_bytes(2, "little")
    messages = [
        (frames[0], reply),
        (bytes(corrupt), 2),
        (frames[1], reply),
        (b"\x00\x15\x42", 0),  # line noise between frames
        (wrong_length, 2),
        (frames[2][:6], 2),  # the frame stops: the wrapper times out
        (frames[2], reply),
        (frames[3], reply),
    ]
    run = ecp5.uart_simulate(m, messages, clks_per_bit=4)
    assert run.timed_out == []  # every expected reply came: nothing hangs
    got = [S.decode_replies(r) for r in run.replies]
    assert [[r.describe() for r in g] for g in got] == [
        ["a reply of 4 bytes"],
        ["NAK 2 (checksum mismatch)"],
        ["a reply of 4 bytes"],
        [],
        ["NAK 1 (wrong payload length)"],
        ["NAK 3 (frame timed out (bytes stopped inside it))"],
        ["a reply of 4 bytes"],
        ["a reply of 4 bytes"],
    ]
    outputs = [S.output_values(m, r.payload) for g in got for r in g if r.kind == "frame"]
    np.testing.assert_array_equal(np.array(outputs), ref)


@pytest.mark.slow
# the first Yosys run compiles YoWASP's Yosys (minutes on a fresh machine): on the worker that
# runs test_rtl's synth test, once, not on both at the same time
@pytest.mark.xdist_group("yowasp")
def test_a_recipe_to_a_ulx3s_bitstream_through_the_flow(tmp_path, taper):
    """The README's main job for the open board, on the digits recipe: a real .bit, nextpnr's
    Fmax and utilisation in bitstream.json and the report, Yosys in the board's cells."""
    d = tmp_path / "digits"
    r = taper(
        "build", "digits_mlp", "--board", "ulx3s", "--epochs", "1", "--out", d,
        "--target-fps", "1e5", "--samples", "50", "--against", "qonnx,brevitas,rtl",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = d / "bitstream"
    bit = (out / "digits_mlp.bit").read_bytes()
    # ECP5 bitstream: 0xFF 0x00, a comment naming the part, 0x00 0xFF, the preamble, then
    # VERIFY_ID (0xE2) with the LFE5U-85F's IDCODE
    assert bit[:2] == b"\xff\x00" and b"LFE5U-85F" in bit[:64]
    pre = bit.find(b"\xff\xff\xbd\xb3")
    assert 0 < pre < 64
    assert bit.find(b"\xe2\x00\x00\x00\x41\x11\x30\x43", pre) > pre
    report = json.loads((out / ecp5.REPORT_JSON).read_text())
    assert report["bitstream"] == "digits_mlp.bit" and report["clock_mhz"] == 25.0
    assert not report["pll"] and report["timing_met"] and report["fmax_mhz"] > 25.0
    util = report["utilization"]
    assert set(util) == {"LUT4", "FF", "DP16KD", "MULT18"}
    assert util["LUT4"]["used"] > 0 and util["FF"]["used"] > 0
    assert util["DP16KD"]["available"] == 208
    assert util["MULT18"]["used"] == 0  # low-bit products in LUTs, as FINN's MVAUs
    assert set(report["seconds"]) == {"yosys", "nextpnr", "ecppack"}
    assert (out / "digits_mlp_ulx3s.lpf").is_file() and (out / "digits_mlp_ulx3s.sv").is_file()
    assert f"Fmax {report['fmax_mhz']} MHz at 25 MHz" in r.stdout
    # the synth step counts the ECP5's cells, per layer; the report has both
    synth = json.loads((d / "synth.json").read_text())
    assert synth["labels"]["lut"] == "LUT4" and "synth_ecp5" in synth["tool"]
    ir_layers = [x["name"] for x in json.loads((d / "ir.json").read_text())["model"]["layers"]]
    assert list(synth["layers"]) == ir_layers
    assert all(c["lut"] > 0 for c in synth["layers"].values())
    md = (d / "report.md").read_text()
    assert f"Fmax {report['fmax_mhz']} MHz (nextpnr), timing met at 25 MHz" in md
    assert f"{util['LUT4']['used']:,} LUT4" in md and "| Yosys LUT4 |" in md
    assert "bit-exact against qonnx, brevitas, rtl" in md
    r = taper("status", d)
    assert r.returncode == 0 and "stale" not in r.stdout and "missing" not in r.stdout, r.stdout
