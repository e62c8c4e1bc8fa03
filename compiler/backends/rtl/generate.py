"""Generate a stitched Verilog top, memory files and a file list from the IR.

Deterministic: the same IR gives byte-identical files. Identifiers come from the IR's
sanitized names, checked again here before they reach Verilog.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from compiler.build import write_text
from compiler.errors import TaperError
from compiler.ir.model import (
    Layer,
    MatVec,
    MaxPool,
    Model,
    Recurrent,
    SlidingWindow,
    Thresholding,
)
from compiler.ir.types import IntType, sum_range

LIBRARY = Path(str(files("compiler.hw"))) / "rtl"
LIBRARY_FILES = (
    "taper_fifo.sv",
    "taper_dwc.sv",
    "taper_mvu.sv",
    "taper_thresholding.sv",
    "taper_swg.sv",
    "taper_maxpool.sv",
    "taper_rnn.sv",
)
MAX_IN_BITS = 16
MAX_W_BITS = 8
MAX_ACC_BITS = 48
IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class Stream:
    elems: int
    elem_bits: int

    @property
    def width(self) -> int:
        return self.elems * self.elem_bits


def ident(name: str) -> str:
    if not IDENT.fullmatch(name):
        raise TaperError(f"'{name}' is not a safe Verilog identifier")
    return name


def encode(values: np.ndarray, t: IntType) -> np.ndarray:
    """IR integers -> unsigned stream/memory codes of ``t.bits`` bits (bipolar: -1 -> 0)."""
    v = np.asarray(values, dtype=np.int64)
    if t.bipolar:
        return (v > 0).astype(np.uint64)
    return (v & ((1 << t.bits) - 1)).astype(np.uint64)


def decode(codes: np.ndarray, t: IntType) -> np.ndarray:
    c = np.asarray(codes, dtype=np.int64)
    if t.bipolar:
        return 2 * c - 1
    if t.signed:
        return np.where(c >= 1 << (t.bits - 1), c - (1 << t.bits), c)
    return c


def pack_words(lanes: np.ndarray, bits: int) -> list[str]:
    """Rows of lane codes (lane 0 lowest) -> hex words, most significant digit first."""
    lanes = np.asarray(lanes, dtype=np.uint64)
    n, k = lanes.shape
    bitmat = ((lanes[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(
        np.uint8
    )
    bitmat = bitmat.reshape(n, k * bits)
    pad = (-bitmat.shape[1]) % 4
    if pad:
        bitmat = np.concatenate([bitmat, np.zeros((n, pad), np.uint8)], axis=1)
    nibbles = bitmat.reshape(n, -1, 4) @ np.array([1, 2, 4, 8], dtype=np.uint8)
    digits = np.array(list("0123456789abcdef"))[nibbles[:, ::-1]]
    return ["".join(row) for row in digits]


# Memory styles. A ROM in LUTs costs one LUT6 per bit and 64 words (Yosys maps a logic ROM so;
# deeper ones add MUXF7/F8, which are not LUTs; one or two words are wires); in block RAM,
# 18 Kb blocks of 512 x 36 ... 16K x 1 bits, as Yosys packs them. Block RAMs the design does
# not use are free, so memories go to block RAM, those saving the most LUTs per block RAM
# first, while the board's block RAMs last and each saves more than MIN_LUTS_PER_BRAM36.
MIN_LUTS_PER_BRAM36 = 32
BRAM18_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


def rom_luts(depth: int, width: int) -> int:
    return 0 if depth <= 2 else width * -(-depth // 64)


def lutram_cells(depth: int, width: int) -> int:
    """Distributed RAM cells (one write, one read port) of a ``depth`` x ``width`` memory as
    Yosys maps it: RAM32M (32 x 6) or RAM64M (64 x 3) each; the synth step counts a cell as
    one LUT."""
    if depth <= 32:
        return -(-width // 6)
    return -(-width // 3) * -(-depth // 64)


# Read-write memories (the sliding window's line buffer), keyed by style parameter: in LUTs
# they are distributed RAM (ram_style "distributed"; Yosys' "logic" would mean flip-flops),
# not a logic ROM.
RAM_KEYS = frozenset({"RAM_STYLE"})


def memory_luts(key: str, depth: int, width: int) -> int:
    """LUTs of memory ``key`` of ``depth`` x ``width`` bits when it is not in block RAM."""
    return lutram_cells(depth, width) if key in RAM_KEYS else rom_luts(depth, width)


def style_value(key: str, style: str) -> str:
    """The Verilog parameter value of memory ``key`` in ``style`` ("block" or "logic")."""
    return '"distributed"' if style == "logic" and key in RAM_KEYS else f'"{style}"'


def rom_bram36(depth: int, width: int) -> float:
    return min(-(-depth // d) * -(-width // w) for d, w in BRAM18_SHAPES) / 2


def ram_style(depth: int, width: int, key: str = "W_STYLE") -> str:
    """ "block" (block RAM) when memory ``key`` of ``depth`` words of ``width`` bits (a ROM,
    or a RAM of RAM_KEYS) saves at least MIN_LUTS_PER_BRAM36 LUTs per block RAM there, else
    "logic" (LUTs): shallow memories stay in LUTs, however wide."""
    saving = memory_luts(key, depth, width) / rom_bram36(depth, width)
    return "block" if saving > MIN_LUTS_PER_BRAM36 else "logic"


def swg_lines(layer: SlidingWindow) -> int:
    """Rows of taper_swg's line buffer at its default LINES (its header): a power of two,
    at least K + S and the rows a frame's last window and the next frame's first span."""
    d, k, s, pad, o = layer.ifm_dim, layer.kernel, layer.stride, layer.pad, layer.ofm_dim
    lo_last = min(max((o - 1) * s - pad, 0), d)
    hi_first = min(max(k - pad, 0), d)
    need = max(d + hi_first - lo_last, k + s)
    return 1 << (need - 1).bit_length()


def memory_shapes(layer: Layer, p: dict) -> dict[str, tuple[int, int]]:
    """(depth, width) of each memory of a layer in block RAM or LUTs as the generator
    decides (parameter ROMs, the window's line buffer), keyed by its style parameter. The
    maxpool's row of partial maxima is LUT RAM always (read asynchronously): not here."""
    if isinstance(layer, SlidingWindow):
        words = swg_lines(layer) * layer.ifm_dim * (layer.channels // layer.simd)
        return {"RAM_STYLE": (words, layer.simd * layer.input_type.bits)}
    if isinstance(layer, Recurrent):
        return rnn_memory_shapes(layer, p)
    if not isinstance(layer, MatVec | Thresholding):
        return {}
    nf = layer.out_features // layer.pe
    shapes = {}
    if isinstance(layer, MatVec):
        shapes["W_STYLE"] = (
            nf * (layer.in_features // layer.simd),
            layer.pe * layer.simd * int(p["W_BITS"]),
        )
    if int(p.get("N_THRESH", 0)):
        shapes["T_STYLE"] = (nf, layer.pe * int(p["N_THRESH"]) * int(p["T_BITS"]))
    return shapes


def assign_styles(m: Model, params: list[dict], bram36: float | None) -> None:
    """Set every memory's style parameter: "block" for those ``ram_style`` puts in block RAM,
    the most LUTs saved per block RAM first, while their block RAMs stay within ``bram36``
    (the board's; None: no limit); "logic" for the rest, but for the first weight memory that
    does not fit: the block RAMs left hold its low bits (``W_SPLIT``). Block RAM reads 72 bits
    per cycle, so a fast layer can need more of them than the board has, and a part of it in
    LUTs costs less than all of it."""
    mems = []
    for layer, p in zip(m.layers, params, strict=True):
        p.pop("W_SPLIT", None)
        p.pop("WEIGHT_FILE_HI", None)
        for key, (depth, width) in memory_shapes(layer, p).items():
            p[key] = style_value(key, "logic")
            if ram_style(depth, width, key) == "block":
                b = rom_bram36(depth, width)
                mv = isinstance(layer, MatVec)  # only taper_mvu splits its weights
                mems.append((memory_luts(key, depth, width) / b, b, p, key, depth, width, mv))
    used, split = 0.0, False
    for _, b, p, key, depth, width, mv in sorted(mems, key=lambda e: -e[0]):
        if bram36 is None or used + b <= bram36:
            p[key] = '"block"'
            used += b
        elif key == "W_STYLE" and mv and not split:
            split = True
            bits = split_bits(depth, width, bram36 - used)
            if bits:
                p.update(W_STYLE='"block"', W_SPLIT=bits)
                p["WEIGHT_FILE_HI"] = str(p["WEIGHT_FILE"]).replace(
                    "_weights.mem", "_weights_hi.mem"
                )
                used += rom_bram36(depth, bits)


def split_bits(depth: int, width: int, bram36: float) -> int:
    """The most low bits of a ``depth`` x ``width`` memory that ``bram36`` block RAMs hold
    (0: none, or all of it: no split)."""
    best = 0
    for d, w in BRAM18_SHAPES:
        best = max(best, int(2 * bram36 + 1e-9) // -(-depth // d) * w)
    return best if 0 < best < width and ram_style(depth, best) == "block" else 0


def memory_parts(layer: Layer, p: dict) -> dict[str, tuple[int, int, str]]:
    """(depth, width, style) of each parameter memory as the RTL has them: the style
    parameter's, and with ``W_SPLIT`` the weights' block RAM part (``W_STYLE``) and their
    LUT part (``W_SPLIT``)."""
    parts = {}
    for key, (depth, width) in memory_shapes(layer, p).items():
        style = str(p.get(key, f'"{ram_style(depth, width, key)}"')).strip('"')
        style = "logic" if style == "distributed" else style
        split = int(p.get("W_SPLIT", 0)) if key == "W_STYLE" else 0
        if split:
            parts[key] = (depth, split, "block")
            parts["W_SPLIT"] = (depth, width - split, "logic")
        else:
            parts[key] = (depth, width, style)
    return parts


def _split_words(words: list[str], bits: int, width: int) -> tuple[list[str], list[str]]:
    """Hex words of ``width`` bits -> (their low ``bits``, the rest), as hex words."""
    lo_d, hi_d = -(-bits // 4), -(-(width - bits) // 4)
    mask = (1 << bits) - 1
    lo, hi = [], []
    for word in words:
        v = int(word, 16)
        lo.append(f"{v & mask:0{lo_d}x}")
        hi.append(f"{v >> bits:0{hi_d}x}")
    return lo, hi


def _signed_bits(lo: int, hi: int) -> int:
    return IntType.for_range(min(lo, -1), max(hi, 0)).bits


def mvu_params(layer: MatVec, prefix: str) -> dict[str, object]:
    it, wt, at, ot = layer.input_type, layer.weight_type, layer.acc_type, layer.out_type
    name = layer.name
    if it.bits > MAX_IN_BITS:
        raise TaperError(
            f"layer {name}: {it.bits}-bit inputs, the RTL library takes at most {MAX_IN_BITS}"
        )
    if wt.bits > MAX_W_BITS:
        raise TaperError(
            f"layer {name}: {wt.bits}-bit weights, the RTL library takes at most {MAX_W_BITS}"
        )
    if it.bipolar and wt.bipolar and not layer.xnor:
        # taper_mvu takes one bipolar operand (or XNOR of {0, 1} codes); with both, it would
        # read the weights' codes 0/1 as integers: refuse rather than compute another layer
        raise TaperError(
            f"layer {name}: bipolar inputs times bipolar weights; the RTL library takes them "
            "as an XNOR layer (FINN's ConvertBipolarMatMulToXnorPopcount)"
        )
    acc_bits = at.bits + (0 if at.signed else 1)
    if acc_bits > MAX_ACC_BITS:
        raise TaperError(
            f"layer {name}: {acc_bits}-bit accumulator, the RTL library takes at most {MAX_ACC_BITS}"
        )
    p: dict[str, object] = {
        "MW": layer.in_features,
        "MH": layer.out_features,
        "PE": layer.pe,
        "SIMD": layer.simd,
        "IN_BITS": it.bits,
        "IN_SIGNED": int(it.signed),
        "IN_BIPOLAR": int(it.bipolar and not layer.xnor),
        "W_BITS": wt.bits,
        "W_SIGNED": int(wt.signed),
        "W_BIPOLAR": int(wt.bipolar and not layer.xnor),
        "XNOR": int(layer.xnor),
        "ACC_BITS": acc_bits,
        "WEIGHT_FILE": f'"{prefix}{name}_weights.mem"',
    }
    if layer.thresholds is None:
        p.update(N_THRESH=0, T_BITS=acc_bits, OUT_BITS=at.bits, OUT_BIAS=0, OUT_BIPOLAR=0)
    else:
        # the memory holds T[0] and the steps T[k] - T[0] (see taper_mvu.sv)
        t = _offset_thresholds(layer.thresholds)
        tb = _signed_bits(int(t.min()), int(t.max()))
        p.update(
            N_THRESH=t.shape[1],
            T_BITS=tb,
            OUT_BITS=ot.bits,
            OUT_BIAS=layer.out_bias,
            OUT_BIPOLAR=int(ot.bipolar),
            THRESH_FILE=f'"{prefix}{name}_thresholds.mem"',
        )
    return p


def _offset_thresholds(t: np.ndarray) -> np.ndarray:
    """T[:, 0] and the steps T[:, k] - T[:, 0]: the MVU's accumulator starts at -T[:, 0]."""
    t = t.astype(np.int64)
    return np.concatenate([t[:, :1], t[:, 1:] - t[:, :1]], axis=1)


def thresholding_params(layer: Thresholding, prefix: str) -> dict[str, object]:
    it, ot, t = layer.input_type, layer.out_type, layer.thresholds
    if it.bits > MAX_IN_BITS:
        raise TaperError(
            f"layer {layer.name}: {it.bits}-bit inputs, the RTL library takes at most {MAX_IN_BITS}"
        )
    tb = max(it.bits + 1, _signed_bits(int(t.min()), int(t.max())))
    return {
        "C": layer.channels,
        "PE": layer.pe,
        "IN_BITS": it.bits,
        "IN_SIGNED": int(it.signed),
        "N_THRESH": t.shape[1],
        "T_BITS": tb,
        "OUT_BITS": ot.bits,
        "OUT_BIAS": layer.out_bias,
        "OUT_BIPOLAR": int(ot.bipolar),
        "THRESH_FILE": f'"{prefix}{layer.name}_thresholds.mem"',
    }


def _elem_bits(layer: Layer) -> int:
    it = layer.input_type
    if it.bits > MAX_IN_BITS:
        raise TaperError(
            f"layer {layer.name}: {it.bits}-bit inputs, the RTL library takes at most {MAX_IN_BITS}"
        )
    return it.bits


def window_params(layer: SlidingWindow, prefix: str) -> dict[str, object]:
    # the pad value as the stream encodes it (bipolar -1 is code 0; signed: two's complement
    # in ELEM_BITS), so the unit pads with the word a real pixel of that value would be
    pad = int(encode(np.array([layer.pad_value]), layer.input_type)[0])
    return {
        "IFM_DIM": layer.ifm_dim,
        "C": layer.channels,
        "SIMD": layer.simd,
        "ELEM_BITS": _elem_bits(layer),
        "K": layer.kernel,
        "S": layer.stride,
        "PAD": layer.pad,
        "PAD_VALUE": pad,
        "RAM_STYLE": '"block"',  # set by assign_styles
    }


def maxpool_params(layer: MaxPool, prefix: str) -> dict[str, object]:
    return {
        "IFM_DIM": layer.ifm_dim,
        "C": layer.channels,
        "PE": layer.pe,
        "ELEM_BITS": _elem_bits(layer),
        # bipolar codes 0 (-1) < 1 (+1) compare as unsigned, in the order of their values
        "SIGNED": int(layer.input_type.signed),
        "K": layer.kernel,
    }


def weight_words(layer: MatVec) -> list[str]:
    nf, sf, pe, simd = (
        layer.out_features // layer.pe,
        layer.in_features // layer.simd,
        layer.pe,
        layer.simd,
    )
    codes = encode(layer.weights, layer.weight_type)  # (MH, MW), o = nf*PE + pe, i = sf*SIMD + s
    w = codes.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3).reshape(nf * sf, pe * simd)
    return pack_words(w, layer.weight_type.bits)


def threshold_words(layer: Layer, t_bits: int, offset: bool = False) -> list[str]:
    """One word per fold: PE lanes of N thresholds each (channel = fold*PE + pe); ``offset``:
    T[0] and the steps T[k] - T[0], as the MVU takes them."""
    channels = layer.out_features
    t = _offset_thresholds(layer.thresholds) if offset else layer.thresholds
    t = np.broadcast_to(t, (channels, t.shape[1]))
    codes = (t.astype(np.int64) & ((1 << t_bits) - 1)).astype(np.uint64)
    return pack_words(codes.reshape(channels // layer.pe, layer.pe * t.shape[1]), t_bits)


def in_elems(layer: Layer) -> int:
    return layer.in_elems


def _mvu_memories(layer: MatVec, p: dict) -> dict[str, list[str]]:
    mems = {"weights": weight_words(layer)}
    if layer.thresholds is not None:
        mems["thresholds"] = threshold_words(layer, int(p["T_BITS"]), offset=True)
    return mems


def _thresholding_memories(layer: Thresholding, p: dict) -> dict[str, list[str]]:
    return {"thresholds": threshold_words(layer, int(p["T_BITS"]))}


def _no_memories(layer: Layer, p: dict) -> dict[str, list[str]]:
    return {}


# ---------------------------------------------------------------------------- recurrent


def rnn_groups(layer: Recurrent) -> list[tuple[int, int]]:
    """(gate, unit group) in taper_rnn's issue order: LSTM unit group by unit group, the four
    gates each; GRU r and z per unit group (pass A), then the candidate per group (pass B)."""
    nf = layer.hidden // layer.pe
    if layer.cell == "lstm":
        return [(g, u) for u in range(nf) for g in range(4)]
    return [(g, u) for u in range(nf) for g in range(2)] + [(2, u) for u in range(nf)]


def _rnn_acc_range(layer: Recurrent) -> tuple[int, int]:
    """The exact range of a gate row's sum over [x << x_shift; h << h_shift] (h and rh lie in
    [h_min, h_max], or are 0 in a frame's first step): the accumulator never wraps, whatever
    acc_type says."""
    it, F = layer.input_type, layer.in_features
    lo_v = [it.min << layer.x_shift] * F + [min(layer.h_min, 0) << layer.h_shift] * layer.hidden
    hi_v = [it.max << layer.x_shift] * F + [max(layer.h_max, 0) << layer.h_shift] * layer.hidden
    w = layer.weights.astype(object)
    lo, hi = sum_range(w, np.array(lo_v, dtype=object), np.array(hi_v, dtype=object))
    return int(min(lo.min(), 0)), int(max(hi.max(), 0))


def _rnn_thresholds(layer: Recurrent, lo: int, hi: int) -> np.ndarray:
    """Gate and candidate thresholds per weight row (rows = gate*H + unit), padded to one
    count with hi + 1 (no sum reaches it) and clipped to [lo, hi + 1] (same counts)."""
    H, sig = layer.hidden, (layer.n_gates - 1) * layer.hidden
    gt = np.broadcast_to(layer.gate_thresholds, (sig, layer.gate_thresholds.shape[1]))
    ct = np.broadcast_to(layer.cand_thresholds, (H, layer.cand_thresholds.shape[1]))
    n = max(gt.shape[1], ct.shape[1], 1)
    t = np.full((sig + H, n), hi + 1, dtype=np.int64)
    t[:sig, : gt.shape[1]] = gt
    t[sig:, : ct.shape[1]] = ct
    return np.clip(t, lo, hi + 1)


def _rnn_cell_thresholds(layer: Recurrent) -> np.ndarray:
    ct = layer.cell_thresholds
    ct = np.zeros((1, 0), np.int64) if ct is None else ct
    t = np.broadcast_to(ct, (layer.hidden, ct.shape[1])).astype(np.int64)
    if t.shape[1] == 0:  # no threshold: a count of 0 (the ROM needs one word)
        t = np.full((layer.hidden, 1), layer.cell_max + 1, dtype=np.int64)
    return np.clip(t, layer.cell_min, layer.cell_max + 1)


def rnn_params(layer: Recurrent, prefix: str) -> dict[str, object]:
    name, it, wt, ot = layer.name, layer.input_type, layer.weight_type, layer.out_type
    for what, t in (("input", it), ("weight", wt), ("output", ot), ("gate", layer.gate_type)):
        if t.bipolar:
            raise TaperError(f"layer {name}: bipolar {what}s; taper_rnn takes integers")
    if it.bits > MAX_IN_BITS or wt.bits > MAX_W_BITS:
        raise TaperError(
            f"layer {name}: {it.bits}-bit inputs, {wt.bits}-bit weights; taper_rnn takes at "
            f"most {MAX_IN_BITS} and {MAX_W_BITS}"
        )
    lo, hi = _rnn_acc_range(layer)
    acc_bits = _signed_bits(lo, hi)
    if acc_bits > MAX_ACC_BITS:
        raise TaperError(f"layer {name}: {acc_bits}-bit accumulator, at most {MAX_ACC_BITS}")
    t = _rnn_thresholds(layer, lo, hi)
    nt, nc = layer.gate_thresholds.shape[1], layer.cand_thresholds.shape[1]
    gv_lo, gv_hi = min(0, layer.cand_bias), max(t.shape[1], layer.cand_bias + nc)
    ge = layer.gate_exp
    gmax = nt  # sigmoid gates are counts in [0, nt]
    c_lo, c_hi = layer.cand_bias, layer.cand_bias + nc
    cmag = max(abs(c_lo), abs(c_hi))
    hmag = max(abs(layer.h_min), abs(layer.h_max))
    p: dict[str, object] = {
        "GRU": int(layer.cell == "gru"),
        "T_STEPS": layer.steps,
        "IF": layer.in_features,
        "H": layer.hidden,
        "PE": layer.pe,
        "SIMD": layer.simd,
        "RET_SEQ": int(layer.return_sequences),
        "IN_BITS": it.bits,
        "IN_SIGNED": int(it.signed),
        "X_SHIFT": layer.x_shift,
        "H_SHIFT": layer.h_shift,
        "W_BITS": wt.bits,
        "W_SIGNED": int(wt.signed),
        "TERNARY": int(bool(np.isin(layer.weights, (-1, 0, 1)).all())),
        "ACC_BITS": acc_bits,
        "N_THRESH": t.shape[1],
        "T_BITS": _signed_bits(lo, hi + 1),
        "CAND_BIAS": layer.cand_bias,
        "GV_BITS": _signed_bits(gv_lo, gv_hi),
        "OUT_BITS": ot.bits,
        "HS_BITS": _signed_bits(layer.h_min, layer.h_max),
        "H_MIN": layer.h_min,
        "H_MAX": layer.h_max,
    }
    if layer.cell == "lstm":
        e1, e2 = ge + layer.cell_exp, ge + layer.cand_exp
        m = min(e1, e2)
        ct = _rnn_cell_thresholds(layer)
        cellmag = max(abs(layer.cell_min), abs(layer.cell_max))
        tc_lo, tc_hi = layer.cell_bias, layer.cell_bias + ct.shape[1]
        k_h = layer.h_exp - ge - layer.cell_act_exp
        mags = [
            (gmax * cellmag << (e1 - m)) + (gmax * cmag << (e2 - m)),
            gmax * max(abs(tc_lo), abs(tc_hi)) << max(0, -k_h),
        ]
        shifts = [layer.cell_exp - m, abs(k_h)]
        p.update(
            CS_BITS=_signed_bits(layer.cell_min, layer.cell_max),
            CELL_MIN=layer.cell_min,
            CELL_MAX=layer.cell_max,
            N_CT=ct.shape[1],
            CT_BITS=_signed_bits(layer.cell_min, layer.cell_max + 1),
            CELL_BIAS=layer.cell_bias,
            SH_FC=e1 - m,
            SH_IG=e2 - m,
            K_C=layer.cell_exp - m,
            K_H=k_h,
            CELL_THRESH_FILE=f'"{prefix}{name}_cell_thresholds.mem"',
        )
    else:
        e1, e2 = ge + layer.cand_exp, ge + layer.h_exp
        m = min(e1, e2)
        one = 1 << -ge
        mags = [gmax * hmag, ((one + gmax) * cmag << (e1 - m)) + (gmax * hmag << (e2 - m))]
        shifts = [-ge, layer.h_exp - m]
        p.update(K_RH=-ge, ONE=one, SH_N=e1 - m, SH_ZH=e2 - m, K_HN=layer.h_exp - m)
    bound = max([*mags, abs(layer.h_min), abs(layer.h_max), 1 << max(shifts)])
    p["EW"] = bound.bit_length() + 3
    p["WEIGHT_FILE"] = f'"{prefix}{name}_weights.mem"'
    p["THRESH_FILE"] = f'"{prefix}{name}_thresholds.mem"'
    return p


def rnn_memory_shapes(layer: Recurrent, p: dict) -> dict[str, tuple[int, int]]:
    nf, sf = layer.hidden // layer.pe, layer.v_features // layer.simd
    shapes = {
        "W_STYLE": (layer.n_gates * nf * sf, layer.pe * layer.simd * int(p["W_BITS"])),
        "T_STYLE": (layer.n_gates * nf, layer.pe * int(p["N_THRESH"]) * int(p["T_BITS"])),
    }
    if layer.cell == "lstm":
        shapes["C_STYLE"] = (nf, layer.pe * int(p["N_CT"]) * int(p["CT_BITS"]))
    return shapes


def _rnn_memories(layer: Recurrent, p: dict) -> dict[str, list[str]]:
    H, pe, simd = layer.hidden, layer.pe, layer.simd
    sf = layer.v_features // simd
    codes = encode(layer.weights, layer.weight_type)  # (NG*H, V)
    lo, hi = _rnn_acc_range(layer)
    t = _rnn_thresholds(layer, lo, hi)
    tb = int(p["T_BITS"])
    w_rows, t_rows = [], []
    for g, u in rnn_groups(layer):
        rows = g * H + u * pe + np.arange(pe)
        # one word per fold: lane p*SIMD + s = row p, column sf*SIMD + s
        w_rows.append(codes[rows].reshape(pe, sf, simd).transpose(1, 0, 2).reshape(sf, pe * simd))
        t_rows.append(t[rows].reshape(1, -1))
    mems = {
        "weights": pack_words(np.concatenate(w_rows), layer.weight_type.bits),
        "thresholds": pack_words((np.concatenate(t_rows) & ((1 << tb) - 1)).astype(np.uint64), tb),
    }
    if layer.cell == "lstm":
        ct, cb = _rnn_cell_thresholds(layer), int(p["CT_BITS"])
        words = (ct & ((1 << cb) - 1)).astype(np.uint64).reshape(H // pe, -1)
        mems["cell_thresholds"] = pack_words(words, cb)
    return mems


@dataclass(frozen=True)
class RtlKind:
    """How one IR layer kind becomes Verilog: its library module, its parameters and the
    memory files it reads (``<layer>_<memory>.mem``)."""

    module: str
    params: Callable[[Layer, str], dict[str, object]]
    memories: Callable[[Layer, dict], dict[str, list[str]]]


MODULES: dict[str, RtlKind] = {
    "matvec": RtlKind("taper_mvu", mvu_params, _mvu_memories),
    "thresholding": RtlKind("taper_thresholding", thresholding_params, _thresholding_memories),
    "window": RtlKind("taper_swg", window_params, _no_memories),
    "maxpool": RtlKind("taper_maxpool", maxpool_params, _no_memories),
    "recurrent": RtlKind("taper_rnn", rnn_params, _rnn_memories),
}


def rtl_kind(layer: Layer) -> RtlKind:
    try:
        return MODULES[layer.kind]
    except KeyError:
        raise TaperError(
            f"layer {layer.name}: the RTL library has no {layer.kind} module yet"
        ) from None


def streams(m: Model) -> tuple[Stream, Stream]:
    first, last = m.layers[0], m.layers[-1]
    return (
        Stream(in_elems(first), first.input_type.bits),
        Stream(last.out_elems, last.out_type.bits),
    )


def _fifo_depth(m: Model, tensor: str) -> int:
    return next((f.depth for f in m.fifos if f.tensor == tensor), 2)


def top_verilog(m: Model, params: list[dict]) -> tuple[str, str]:
    top = ident(f"{m.name}_top")
    s_in, s_out = streams(m)
    frame_words = m.layers[-1].out_frame // m.layers[-1].out_elems
    lines = [
        "// Generated by taper from the IR; do not edit.",
        f"// {m.name}: {len(m.layers)} layers, II {m.ii_cycles} cycles per frame.",
        f"module {top} (",
        "    input  logic clk,",
        "    input  logic rst_n,",
        f"    input  logic [{s_in.width - 1}:0] s_axis_tdata,",
        "    input  logic s_axis_tvalid,",
        "    output logic s_axis_tready,",
        f"    output logic [{s_out.width - 1}:0] m_axis_tdata,",
        "    output logic m_axis_tvalid,",
        "    input  logic m_axis_tready,",
        "    output logic m_axis_tlast",
        ");",
    ]
    prev = ("s_axis_tdata", "s_axis_tvalid", "s_axis_tready", Stream(s_in.elems, s_in.elem_bits))
    for layer, p in zip(m.layers, params, strict=True):
        n = ident(layer.name)
        want = Stream(in_elems(layer), layer.input_type.bits)
        data, valid, ready, have = prev
        if have.elem_bits != want.elem_bits:
            raise TaperError(
                f"layer {n}: {want.elem_bits}-bit inputs after a {have.elem_bits}-bit stream"
            )
        if have.elems != want.elems:
            w = f"{n}_dwc"
            lines += [
                f"    logic [{want.width - 1}:0] {w}_tdata;",
                f"    logic {w}_tvalid, {w}_tready;",
                f"    taper_dwc #(.ELEM_BITS({want.elem_bits}), .IN_ELEMS({have.elems}), .OUT_ELEMS({want.elems})) {w} (",
                f"        .clk(clk), .rst_n(rst_n), .s_tdata({data}), .s_tvalid({valid}), .s_tready({ready}),",
                f"        .m_tdata({w}_tdata), .m_tvalid({w}_tvalid), .m_tready({w}_tready));",
            ]
            data, valid, ready = f"{w}_tdata", f"{w}_tvalid", f"{w}_tready"
        f = f"{n}_fifo"
        lines += [
            f"    logic [{want.width - 1}:0] {f}_tdata;",
            f"    logic {f}_tvalid, {f}_tready;",
            f"    taper_fifo #(.WIDTH({want.width}), .DEPTH({_fifo_depth(m, layer.input)})) {f} (",
            f"        .clk(clk), .rst_n(rst_n), .s_tdata({data}), .s_tvalid({valid}), .s_tready({ready}),",
            f"        .m_tdata({f}_tdata), .m_tvalid({f}_tvalid), .m_tready({f}_tready));",
        ]
        out = Stream(layer.out_elems, layer.out_type.bits)
        plist = ", ".join(f".{k}({v})" for k, v in p.items())
        lines += [
            f"    logic [{out.width - 1}:0] {n}_tdata;",
            f"    logic {n}_tvalid, {n}_tready;",
            f"    {rtl_kind(layer).module} #({plist}) {n} (",
            f"        .clk(clk), .rst_n(rst_n), .s_tdata({f}_tdata), .s_tvalid({f}_tvalid), .s_tready({f}_tready),",
            f"        .m_tdata({n}_tdata), .m_tvalid({n}_tvalid), .m_tready({n}_tready));",
        ]
        prev = (f"{n}_tdata", f"{n}_tvalid", f"{n}_tready", out)
    data, valid, ready, _ = prev
    cb = max(1, (frame_words - 1).bit_length())
    lines += [
        f"    assign m_axis_tdata = {data};",
        f"    assign m_axis_tvalid = {valid};",
        f"    assign {ready} = m_axis_tready;",
        f"    logic [{cb - 1}:0] out_words;  // words of the current output frame",
        f"    assign m_axis_tlast = (out_words == {cb}'d{frame_words - 1});",
        "    always_ff @(posedge clk) begin",
        "        if (!rst_n) out_words <= '0;",
        "        else if (m_axis_tvalid && m_axis_tready)",
        "            out_words <= m_axis_tlast ? '0 : out_words + 1'b1;",
        "    end",
        "endmodule",
        "",
    ]
    return top, "\n".join(lines)


def _board_bram36(m: Model) -> float | None:
    from compiler.boards import board

    try:
        return board(m.board).bram36
    except (TaperError, KeyError, ValueError):
        return None


def generate(m: Model, out: Path, mem_prefix: str = "") -> dict:
    """Write ``out``: library sources, ``<top>.sv``, memory files, ``filelist.f``,
    ``design.json``. ``mem_prefix`` is prepended to memory file names in the Verilog."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = []
    for layer in m.layers:
        ident(layer.name)
        params.append(rtl_kind(layer).params(layer, mem_prefix))
    assign_styles(m, params, _board_bram36(m))
    for layer, p in zip(m.layers, params, strict=True):
        for mem, words in rtl_kind(layer).memories(layer, p).items():
            if mem == "weights" and "W_SPLIT" in p:
                width = layer.pe * layer.simd * int(p["W_BITS"])
                words, hi = _split_words(words, int(p["W_SPLIT"]), width)
                write_text(out / f"{layer.name}_weights_hi.mem", "\n".join(hi) + "\n")
            write_text(out / f"{layer.name}_{mem}.mem", "\n".join(words) + "\n")
    top, text = top_verilog(m, params)
    for f in LIBRARY_FILES:
        shutil.copyfile(LIBRARY / f, out / f)
    write_text(out / f"{top}.sv", text)
    files = [*LIBRARY_FILES, f"{top}.sv"]
    write_text(out / "filelist.f", "\n".join(files) + "\n")
    s_in, s_out = streams(m)
    summary = {
        "top": top,
        "files": files,
        "input": {
            "width": s_in.width,
            "elems": s_in.elems,
            "elem_bits": s_in.elem_bits,
            "type": m.layers[0].input_type.name,
            "words_per_frame": m.layers[0].in_frame // in_elems(m.layers[0]),
        },
        "output": {
            "width": s_out.width,
            "elems": s_out.elems,
            "elem_bits": s_out.elem_bits,
            "type": m.layers[-1].out_type.name,
            "words_per_frame": m.layers[-1].out_frame // m.layers[-1].out_elems,
        },
        "ii_cycles": m.ii_cycles,
        "layers": [
            {
                "name": layer.name,
                "cycles": layer.cycles,
                **{k: v for k, v in p.items() if not str(v).startswith('"')},
                "memories": {
                    key: {
                        "depth": d,
                        "width": w,
                        "style": style,
                        "lut": memory_luts(key, d, w) if style == "logic" else 0,
                        "bram36": rom_bram36(d, w) if style == "block" else 0,
                    }
                    for key, (d, w, style) in memory_parts(layer, p).items()
                },
            }
            for layer, p in zip(m.layers, params, strict=True)
        ],
    }
    write_text(out / "design.json", json.dumps(summary, indent=1) + "\n")
    return summary
