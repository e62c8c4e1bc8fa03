#!/usr/bin/env python3
"""taper board driver: runs a taper accelerator on a PYNQ board. Needs numpy and pynq only.

    python3 driver.py run in.npy out.npy [--batch N] [--raw]
    python3 driver.py validate images.npy labels.npy [--batch N]
    python3 driver.py bench [--frames N]

Common options: --manifest PATH (default: manifest.json next to this file), --bitfile PATH
(default: the manifest's), --ip NAME / --dma NAME (the overlay's cells; default: found by
type), --json (machine-readable results on stdout).

``run`` maps float samples (N, *input shape) to float outputs through the host edges and the
accelerator (``--raw``: the accelerator's integers, before the output edge). ``validate``
prints the accuracy over labelled samples (argmax of the outputs; a single output is
compared rounded). ``bench`` streams N frames back to back in one DMA transfer and prints
the on-chip latency and II from the shell's counters, and, separately, the wall-clock
throughput of the transfer as seen from Python.

The host edges are host_edges.py next to this file: the module taper's bit-accurate
simulator runs, shipped unchanged. Each DMA word is the accelerator's stream word padded to
a power-of-two number of bytes, little-endian, element 0 in the low bits. A batch of frames
is one DMA transfer each way: the driver sets the shell's FRAMES_PER_TLAST so that the
output packet (an S2MM transfer ends at TLAST) holds the whole batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import host_edges  # noqa: E402  (shipped next to this file)

U32 = 0xFFFFFFFF


class DriverError(Exception):
    """Bad input or a board that does not answer as the manifest says; one line."""


# ---------------------------------------------------------------------------- words


def to_codes(q: np.ndarray, stream: dict) -> np.ndarray:
    """Integers -> unsigned stream codes of ``elem_bits`` bits (bipolar: -1 -> 0)."""
    q = np.asarray(q, dtype=np.int64)
    if stream["bipolar"]:
        return (q > 0).astype(np.uint64)
    return (q & ((1 << stream["elem_bits"]) - 1)).astype(np.uint64)


def from_codes(c: np.ndarray, stream: dict) -> np.ndarray:
    c = np.asarray(c, dtype=np.uint64).astype(np.int64)
    bits = stream["elem_bits"]
    if stream["bipolar"]:
        return 2 * c - 1
    if stream["signed"]:
        return np.where(c >= 1 << (bits - 1), c - (1 << bits), c)
    return c


def pack(q: np.ndarray, stream: dict) -> np.ndarray:
    """Frames of integers (N, features) -> DMA words (N * words_per_frame, dma_bytes) uint8."""
    e, b = stream["elems_per_word"], stream["elem_bits"]
    codes = to_codes(q, stream).reshape(-1, e)
    bits = (codes[:, :, None] >> np.arange(b, dtype=np.uint64)) & np.uint64(1)
    padded = np.zeros((len(codes), 8 * stream["dma_bytes"]), dtype=np.uint8)
    padded[:, : e * b] = bits.reshape(len(codes), e * b)
    return np.packbits(padded, axis=1, bitorder="little")


def unpack(words: np.ndarray, stream: dict) -> np.ndarray:
    """DMA words (N * words_per_frame, dma_bytes) uint8 -> frames of integers (N, features)."""
    e, b = stream["elems_per_word"], stream["elem_bits"]
    w = np.asarray(words, dtype=np.uint8).reshape(-1, stream["dma_bytes"])
    bits = np.unpackbits(w, axis=1, bitorder="little")[:, : e * b].reshape(-1, e, b)
    codes = (bits.astype(np.uint64) << np.arange(b, dtype=np.uint64)).sum(axis=2, dtype=np.uint64)
    return from_codes(codes, stream).reshape(-1, stream["features"])


# ---------------------------------------------------------------------------- the board


class Accelerator:
    """The overlay, its AXI DMA and the shell's registers."""

    def __init__(self, manifest: dict, bitfile: str, ip: str | None = None, dma: str | None = None):
        import pynq

        self.mf = manifest
        self.reg = manifest["registers"]
        self.ins, self.outs = manifest["input"], manifest["output"]
        self.overlay = pynq.Overlay(bitfile)
        types = {k: str(v.get("type", "")) for k, v in self.overlay.ip_dict.items()}
        shell = manifest["shell"]
        ip = ip or manifest.get("ip_name") or _one(types, ":" + shell + ":", "the shell " + shell)
        dma = dma or manifest.get("dma_name") or _one(types, ":axi_dma:", "an AXI DMA")
        self.regs = getattr(self.overlay, ip)
        self.dma = getattr(self.overlay, dma)
        magic = self.read("MAGIC")
        if magic != manifest["magic"]:
            raise DriverError(
                f"cell {ip}: MAGIC reads 0x{magic:08X}, expected 0x{manifest['magic']:08X}"
            )
        for reg, side in (("IN_WORDS", self.ins), ("OUT_WORDS", self.outs)):
            got = self.read(reg)
            if got != side["words_per_frame"]:
                raise DriverError(
                    f"cell {ip}: {reg} reads {got}, the manifest says {side['words_per_frame']}: "
                    "the bitstream is not this package's"
                )
        frame_bytes = max(_frame_bytes(self.ins), _frame_bytes(self.outs))
        self.max_frames = max(1, int(self.dma.buffer_max_size) // frame_bytes)
        self._frames_per_tlast = None

    def read(self, name: str) -> int:
        return int(self.regs.read(self.reg[name])) & U32

    def write(self, name: str, value: int) -> None:
        self.regs.write(self.reg[name], int(value) & U32)

    def counters(self) -> dict:
        names = ("FRAMES_IN", "FRAMES_OUT", "CYCLES", "FIRST_IN", "FIRST_LAST", "LAST_LAST")
        return {n.lower(): self.read(n) for n in names}

    def buffers(self, frames: int):
        import pynq

        ibuf = pynq.allocate(
            shape=(frames * self.ins["words_per_frame"], self.ins["dma_bytes"]), dtype=np.uint8
        )
        obuf = pynq.allocate(
            shape=(frames * self.outs["words_per_frame"], self.outs["dma_bytes"]), dtype=np.uint8
        )
        return ibuf, obuf

    def packet(self, frames: int) -> None:
        """Make the shell close an output packet (TLAST) every ``frames`` frames."""
        if self._frames_per_tlast != frames:
            self.write("FRAMES_PER_TLAST", frames)
            self._frames_per_tlast = frames

    def transfer(self, ibuf, obuf, frames: int) -> None:
        """``frames`` frames from ``ibuf`` through the accelerator into ``obuf``."""
        self.packet(frames)
        n_out = frames * _frame_bytes(self.outs)
        self.dma.recvchannel.transfer(obuf, 0, n_out)
        self.dma.sendchannel.transfer(ibuf, 0, frames * _frame_bytes(self.ins))
        self.dma.sendchannel.wait()
        self.dma.recvchannel.wait()
        got = int(self.dma.recvchannel.transferred)
        if got != n_out:
            raise DriverError(f"DMA receive: {got} bytes, expected {n_out} ({frames} frames)")

    def execute(self, q: np.ndarray, batch: int = 0) -> np.ndarray:
        """Integer frames (N, input features) -> integer outputs (N, output features)."""
        q = np.asarray(q).reshape(len(q), -1)
        n = len(q)
        batch = min(batch or n, self.max_frames, max(n, 1))
        out = np.empty((n, self.outs["features"]), dtype=np.int64)
        ibuf, obuf = self.buffers(batch)
        try:
            wi, wo = self.ins["words_per_frame"], self.outs["words_per_frame"]
            for lo in range(0, n, batch):
                k = min(batch, n - lo)
                ibuf[: k * wi] = pack(q[lo : lo + k], self.ins)
                self.transfer(ibuf, obuf, k)
                out[lo : lo + k] = unpack(obuf[: k * wo], self.outs)
        finally:
            ibuf.freebuffer()
            obuf.freebuffer()
        return out


def _frame_bytes(stream: dict) -> int:
    return stream["words_per_frame"] * stream["dma_bytes"]


def _one(types: dict, needle: str, what: str) -> str:
    found = sorted(k for k, t in types.items() if needle in t)
    if len(found) != 1:
        raise DriverError(
            f"overlay: {len(found)} cells of {what} (types {sorted(set(types.values()))}); "
            "name it with --ip / --dma"
        )
    return found[0]


# ---------------------------------------------------------------------------- commands


class Edges:
    """The manifest's host edges, run by host_edges.py."""

    def __init__(self, manifest: dict):
        self.input = host_edges.input_edge_from_json(manifest["input_edge"])
        self.output = host_edges.output_edge_from_json(manifest["output_edge"])
        self.features = manifest["input"]["features"]
        self.manifest = manifest

    def quantize(self, x: np.ndarray, where: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 1 or len(x) == 0 or x[0].size != int(np.prod(self.input.in_shape)):
            raise DriverError(
                f"{where}: samples of shape {list(x.shape[1:])}, expected "
                f"{list(self.input.in_shape)} (N samples first)"
            )
        try:
            return host_edges.quantize_input(self.input, x).reshape(len(x), self.features)
        except ValueError as e:
            raise DriverError(f"{where}: {e}") from None

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        out = host_edges.dequantize_output(self.output, y)
        shape = tuple(self.output.out_shape)
        if shape and int(np.prod(shape)) == out.shape[-1]:
            out = out.reshape(len(out), *shape)
        return out


def _load(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DriverError(f"{path}: cannot read {what} ({e})") from None


def cmd_run(board, edges: Edges, args) -> dict:
    x = _load(args.input, "input samples")
    t0 = time.perf_counter()
    q = edges.quantize(x, args.input)
    quantize_s = time.perf_counter() - t0
    acc = board()  # the overlay's loading is not part of the run
    t0 = time.perf_counter()
    y = acc.execute(q, args.batch)
    accelerator_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = y if args.raw else edges.dequantize(y)
    dequantize_s = time.perf_counter() - t0
    np.save(args.output, out)
    n = len(x)
    return {
        "frames": n,
        "output": str(args.output),
        "quantize_s": quantize_s,
        "accelerator_s": accelerator_s,
        "accelerator_fps": n / accelerator_s if accelerator_s > 0 else float("inf"),
        "dequantize_s": dequantize_s,
    }


def predictions(y: np.ndarray, labels: bool = False) -> np.ndarray:
    """The predicted class per sample: the first label when the output edge ends in ``topk``
    (its outputs are class indices, best first), else the single output or the argmax."""
    y = np.asarray(y).reshape(len(y), -1)
    if labels or y.shape[1] == 1:
        return np.rint(y[:, 0]).astype(np.int64)
    return np.argmax(y, axis=1)


def cmd_validate(board, edges: Edges, args) -> dict:
    x = _load(args.images, "images")
    labels = _load(args.labels, "labels").reshape(-1)
    if len(labels) != len(x):
        raise DriverError(f"{args.labels}: {len(labels)} labels for {len(x)} images")
    edges.quantize(x[:1], args.images)  # bad input is told before the overlay loads
    acc = board()
    t0 = time.perf_counter()
    y = edges.dequantize(acc.execute(edges.quantize(x, args.images), args.batch))
    seconds = time.perf_counter() - t0
    topk = any(st.op == "topk" for st in edges.output.steps)
    correct = int((predictions(y, topk) == labels).sum())
    return {
        "samples": len(x),
        "correct": correct,
        "accuracy": correct / len(x),
        "seconds": seconds,
        "fps": len(x) / seconds if seconds > 0 else float("inf"),
    }


def cmd_bench(board, edges: Edges, args) -> dict:
    n = args.frames or edges.manifest["expected"]["frames"]
    if n < 2:
        raise DriverError(f"--frames: expected at least 2 frames (the II needs two), got {n}")
    acc = board()
    if n > acc.max_frames:
        raise DriverError(
            f"--frames: expected 2..{acc.max_frames} (one DMA transfer each way), got {n}"
        )
    s = acc.ins
    rng = np.random.default_rng(0)
    if s["bipolar"]:
        q = rng.choice(np.array([-1, 1]), size=(n, s["features"]))
    else:
        lo = -(1 << (s["elem_bits"] - 1)) if s["signed"] else 0
        q = rng.integers(lo, lo + (1 << s["elem_bits"]), size=(n, s["features"]))
    ibuf, obuf = acc.buffers(n)
    try:
        ibuf[:] = pack(q, s)
        acc.packet(n)
        acc.write("CONTROL", 1)  # clear the counters: this run only
        t0 = time.perf_counter()
        acc.transfer(ibuf, obuf, n)
        wall = time.perf_counter() - t0
    finally:
        ibuf.freebuffer()
        obuf.freebuffer()
    c = acc.counters()
    if c["frames_in"] != n or c["frames_out"] != n:
        raise DriverError(
            f"counters: FRAMES_IN {c['frames_in']}, FRAMES_OUT {c['frames_out']}, expected {n}"
        )
    latency = ((c["first_last"] - c["first_in"]) & U32) + 1
    ii = ((c["last_last"] - c["first_last"]) & U32) / (c["frames_out"] - 1)
    mhz = acc.mf["clock_mhz"]
    return {
        "frames": n,
        "counters": c,
        "clock_mhz": mhz,
        "latency_cycles": latency,
        "latency_us": latency / mhz,
        "ii_cycles": ii,
        "onchip_fps": mhz * 1e6 / ii if ii > 0 else float("inf"),
        "wall_seconds": wall,
        "wall_fps": n / wall if wall > 0 else float("inf"),
        "expected": acc.mf["expected"],
    }


def _report(cmd: str, r: dict) -> str:
    if cmd == "run":
        return (
            f"{r['frames']} frames -> {r['output']}: quantize {r['quantize_s']:.3f} s, "
            f"accelerator {r['accelerator_s']:.3f} s ({r['accelerator_fps']:,.0f} frames/s "
            f"with DMA and packing), dequantize {r['dequantize_s']:.3f} s"
        )
    if cmd == "validate":
        return (
            f"accuracy {100 * r['accuracy']:.2f} % ({r['correct']} of {r['samples']}), "
            f"{r['fps']:,.0f} samples/s end to end"
        )
    e = r["expected"]
    return "\n".join(
        [
            f"on chip ({r['frames']} frames back to back, counters at {r['clock_mhz']:g} MHz):",
            f"  latency {r['latency_cycles']} cycles ({r['latency_us']:.2f} us), "
            f"II {r['ii_cycles']:.2f} cycles ({r['onchip_fps']:,.0f} frames/s)",
            f"  cycle model ({e['frames']} frames): latency {e['latency_cycles']} cycles, "
            f"II {e['ii_cycles']:.2f} cycles",
            f"wall clock (DMA transfer seen from Python): {r['wall_seconds'] * 1e3:.3f} ms, "
            f"{r['wall_fps']:,.0f} frames/s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="driver.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", default=str(HERE / "manifest.json"))
    p.add_argument("--bitfile", default=None)
    p.add_argument("--ip", default=None, help="the shell's cell name in the overlay")
    p.add_argument("--dma", default=None, help="the AXI DMA's cell name in the overlay")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="float samples in, float outputs out")
    r.add_argument("input")
    r.add_argument("output")
    r.add_argument("--batch", type=int, default=0, help="frames per DMA transfer")
    r.add_argument("--raw", action="store_true", help="save the accelerator's integers")
    v = sub.add_parser("validate", help="accuracy over labelled samples")
    v.add_argument("images")
    v.add_argument("labels")
    v.add_argument("--batch", type=int, default=0)
    b = sub.add_parser("bench", help="on-chip latency/II and wall-clock throughput")
    b.add_argument("--frames", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if getattr(args, "batch", 0) < 0:
            raise DriverError(f"--batch: expected frames >= 1, got {args.batch}")
        try:
            manifest = json.loads(Path(args.manifest).read_text())
        except (OSError, ValueError) as e:
            raise DriverError(f"{args.manifest}: cannot read the manifest ({e})") from None
        bitfile = args.bitfile or manifest.get("bitfile")
        if not bitfile:
            raise DriverError(f"{args.manifest}: no bitstream in this package: pass --bitfile")
        if not args.bitfile:
            bitfile = str(Path(args.manifest).resolve().parent / bitfile)
        edges = Edges(manifest)

        def board() -> Accelerator:  # opened once the input has been checked
            return Accelerator(manifest, bitfile, args.ip, args.dma)

        command = {"run": cmd_run, "validate": cmd_validate, "bench": cmd_bench}[args.cmd]
        result = command(board, edges, args)
    except DriverError as e:
        print(f"driver.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else _report(args.cmd, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
