"""Host side of the UART frame protocol (hw/rtl/taper_uart_frame.sv): frames are encoded and
decoded here only, for the board and for the Verilator test alike.

A frame, in both directions::

    0xA5 | length (2 bytes, little-endian) | payload (length bytes) | CRC (2 bytes, little-endian)

The payload is one inference's stream words in order (the accelerator's input words to the
board, its output words back), each word ``ceil(width / 8)`` bytes little-endian, element 0
in the low bits, unused high bits 0. The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021,
initial value 0xFFFF, not reflected, no final XOR; 0x29B1 for ``b"123456789"``) over the two
length bytes and the payload. A frame the board rejects is answered with two bytes, 0x15 and
a reason (:data:`NAK_REASONS`). The host sends one frame and waits for its reply (stop and
wait): there is no flow control on the line.
"""

from __future__ import annotations

import binascii
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compiler.backends.rtl.generate import decode, encode, in_elems
from compiler.errors import TaperError
from compiler.ir.model import Model
from compiler.ir.types import IntType

SYNC = 0xA5
NAK = 0x15
MAX_PAYLOAD = 0xFFFF  # the length field's limit
NAK_REASONS = {
    1: "wrong payload length",
    2: "checksum mismatch",
    3: "frame timed out (bytes stopped inside it)",
    4: "overrun (payload arrived while the previous frame was still entering the accelerator)",
}


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data``. binascii.crc_hqx is this CRC given the initial 0xFFFF."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class Streams:
    """The accelerator's input and output streams as frames carry them."""

    in_elems: int
    in_type: IntType
    in_words: int
    out_elems: int
    out_type: IntType
    out_words: int

    @property
    def in_width(self) -> int:
        return self.in_elems * self.in_type.bits

    @property
    def out_width(self) -> int:
        return self.out_elems * self.out_type.bits

    @property
    def in_len(self) -> int:
        """Payload bytes of an input frame."""
        return self.in_words * -(-self.in_width // 8)

    @property
    def out_len(self) -> int:
        return self.out_words * -(-self.out_width // 8)


def streams(m: Model) -> Streams:
    """The frame geometry of ``m`` (as the generated top's ports: generate.streams)."""
    first, last = m.layers[0], m.layers[-1]
    s = Streams(
        in_elems=in_elems(first),
        in_type=first.input_type,
        in_words=first.in_frame // in_elems(first),
        out_elems=last.out_elems,
        out_type=last.out_type,
        out_words=last.out_frame // last.out_elems,
    )
    for what, n in (("input", s.in_len), ("output", s.out_len)):
        if n > MAX_PAYLOAD:
            raise TaperError(
                f"model {m.name}: an {what} frame of {n:,} bytes exceeds the UART frame's "
                f"length field ({MAX_PAYLOAD:,} bytes)"
            )
    return s


def pack(codes: np.ndarray, bits: int) -> bytes:
    """Words of lane codes (words, elems), lane 0 lowest -> ceil(elems*bits/8) bytes each, LE."""
    codes = np.asarray(codes, dtype=np.uint64)
    n, k = codes.shape
    bitmat = ((codes[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(
        np.uint8
    )
    bitmat = bitmat.reshape(n, k * bits)
    pad = (-(k * bits)) % 8
    if pad:
        bitmat = np.concatenate([bitmat, np.zeros((n, pad), np.uint8)], axis=1)
    return np.packbits(bitmat, axis=1, bitorder="little").tobytes()


def unpack(data: bytes, elems: int, bits: int) -> np.ndarray:
    """The inverse of :func:`pack`: (words, elems) int64 lane codes."""
    nbytes = -(-(elems * bits) // 8)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, nbytes)
    bitmat = np.unpackbits(raw, axis=1, bitorder="little")[:, : elems * bits]
    weights = np.int64(1) << np.arange(bits, dtype=np.int64)
    return (bitmat.reshape(-1, elems, bits).astype(np.int64) * weights).sum(axis=2)


def encode_frame(payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise TaperError(f"frame payload of {len(payload):,} bytes: at most {MAX_PAYLOAD:,}")
    body = len(payload).to_bytes(2, "little") + bytes(payload)
    return bytes([SYNC]) + body + crc16(body).to_bytes(2, "little")


def input_frames(m: Model, q: np.ndarray) -> list[bytes]:
    """One frame per row of integer inputs ``q`` (frames, in features)."""
    s = streams(m)
    q = np.asarray(q)
    features = m.layers[0].in_frame
    if q.ndim != 2 or q.shape[1] != features:
        raise TaperError(f"inputs: expected (frames, {features}) integers, got shape {q.shape}")
    if not s.in_type.contains(q):
        raise TaperError(f"inputs: values outside {s.in_type.name}")
    codes = encode(q, s.in_type).reshape(len(q), s.in_words, s.in_elems)
    return [encode_frame(pack(c, s.in_type.bits)) for c in codes]


def output_values(m: Model, payload: bytes) -> np.ndarray:
    """A reply frame's payload -> the model's output integers (out features,)."""
    s = streams(m)
    if len(payload) != s.out_len:
        raise TaperError(f"reply payload: {len(payload)} bytes, expected {s.out_len}")
    return decode(unpack(payload, s.out_elems, s.out_type.bits), s.out_type).reshape(-1)


@dataclass(frozen=True)
class Reply:
    kind: str  # "frame" or "nak"
    payload: bytes = b""
    reason: int = 0  # a NAK's reason
    crc_ok: bool = True

    def describe(self) -> str:
        if self.kind == "nak":
            return f"NAK {self.reason} ({NAK_REASONS.get(self.reason, 'unknown reason')})"
        return f"a reply of {len(self.payload)} bytes" + ("" if self.crc_ok else " with a bad CRC")


def read_reply(read: Callable[[int], bytes]) -> Reply | None:
    """The next reply from ``read(n)`` (returns at most n bytes, fewer when it runs dry);
    bytes before a 0xA5 or 0x15 are skipped. None when the bytes ran out inside or before a
    reply."""
    while True:
        b = read(1)
        if not b:
            return None
        if b[0] == NAK:
            r = read(1)
            return Reply("nak", reason=r[0]) if r else None
        if b[0] != SYNC:
            continue
        head = read(2)
        if len(head) < 2:
            return None
        n = int.from_bytes(head, "little")
        rest = read(n + 2)
        if len(rest) < n + 2:
            return None
        payload = rest[:n]
        return Reply(
            "frame", payload, crc_ok=crc16(head + payload) == int.from_bytes(rest[n:], "little")
        )


def decode_replies(data: bytes) -> list[Reply]:
    """Every reply in a byte stream (what the board sent)."""
    stream = io.BytesIO(data)
    replies = []
    while (r := read_reply(stream.read)) is not None:
        replies.append(r)
    return replies


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def run_serial(
    m: Model, q_ints: np.ndarray, port: str, baud: int = 115_200, timeout: float = 2.0,
    retries: int = 2,
) -> np.ndarray:  # fmt: skip
    """Run integer inputs ``q_ints`` (frames, in features) through the board at ``port``
    (its bitstream built for ``m`` at ``baud``), one frame at a time; returns the outputs
    (frames, out features) int64. A NAKed frame or one with a corrupt reply is sent again,
    up to ``retries`` times; ``timeout`` is the wait for a reply beyond its line time."""
    import serial  # pyserial; imported here: the rest of taper does not need it

    s = streams(m)
    frames = input_frames(m, q_ints)
    # 10 bits per byte on the line, both ways
    line = 10 * (s.in_len + s.out_len + 10) / baud
    try:
        # a device path, or a pyserial URL (socket://host:port for a board behind a server)
        conn = serial.serial_for_url(port, baud, timeout=timeout + line)
    except (serial.SerialException, ValueError, OSError) as e:
        raise TaperError(f"serial port {port}: cannot open it ({_one_line(e)})") from None
    outputs = []
    try:
        with conn:
            conn.reset_input_buffer()
            for i, frame in enumerate(frames):
                for _ in range(retries + 1):
                    conn.write(frame)
                    conn.flush()
                    reply = read_reply(conn.read)
                    if reply is None:
                        raise TaperError(
                            f"serial port {port}: no reply to frame {i} within {timeout + line:.1f} s "
                            f"(is the bitstream for {m.name} at {baud} baud loaded?)"
                        )
                    if reply.kind == "frame" and reply.crc_ok and len(reply.payload) == s.out_len:
                        outputs.append(output_values(m, reply.payload))
                        break
                    conn.reset_input_buffer()  # whatever else came with a bad reply
                else:
                    raise TaperError(
                        f"serial port {port}: frame {i} failed {retries + 1} times, last: "
                        f"{reply.describe()}"
                    )
    except serial.SerialException as e:
        raise TaperError(f"serial port {port}: {_one_line(e)}") from None
    return np.array(outputs, dtype=np.int64).reshape(len(frames), -1)
