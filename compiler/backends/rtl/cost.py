"""Resource model of taper's own RTL (``hw/rtl``) on Xilinx 7-series as Yosys maps it
(``synth_xilinx -family xc7 -nodsp``): LUT, FF, BRAM36 and DSP (0) per layer, from the
layer's bits, PE, SIMD, sizes and memory styles. Used to pick foldings that fit a board.

The form follows the hardware; a few constants per term are fitted against Yosys by
``bench/calibrate_cost.py`` and stored in ``cost_coeffs.json`` (re-run it when the RTL
changes). Terms (per layer, all in LUTs or FFs):

- the dot product: PE bit heaps of SIMD x (bits per product) bits (XNOR: 1; a bipolar
  operand times a B-bit integer: B + 2; integers: IN_BITS x W_BITS), reduced by full adders
  and 6:3 counters (about one LUT per bit) to two rows that one adder of the heap's width
  sums; registers after level 1 or on the operands;
- PE accumulators of AW bits (ACC_BITS, one more with thresholds: the sum starts at -T[0]):
  an adder, its start value, the dot product's, the sum's and the completed sum's registers;
- PE x (N_THRESH - 1) comparators (the first is the sum's sign), their count and the output
  register;
- parameter memories (weights: NF*SF words of PE*SIMD*W_BITS; thresholds: NF words of
  PE*N_THRESH*T_BITS): in LUTs one LUT6 per bit per 64 words, or in block RAM, in the
  styles the generator gives them (``generate.assign_styles``, within the board's block RAMs;
  the search leaves 10 % of them free). The first LUT of every bit (``rom``) is fitted; each
  further 64 words (``rom_deep``) cost exactly one LUT6 per bit (MUXF7/F8 join them, as Yosys
  maps a 256-word ROM: 4 LUT6 per bit), fixed at 1: the calibration's random layers keep
  few deep memories in LUTs, and the fitted ``rom`` put lfc_w1a1_bin's 256-word weights at
  twice what Yosys used;
- the input double buffer (2 x 2^ceil(log2 SF) words of SIMD*IN_BITS) in distributed RAM
  (RAM32M/RAM64M cells) and its read multiplexers;
- the stream FIFO in front of the layer, per stream bit, and its width converter (a buffer
  of IN + OUT elements, each bit a multiplexer over the OUT + 1 places a word can land);
- control (counters, handshakes): a constant.

A standalone Thresholding layer has the comparator, memory and FIFO terms only. The CNN
units (sliding window, max pooling) have fixed terms counted from their RTL (see
``_window_unit``, ``_pool_unit``): the window's line buffer (LINES rows of IFM_DIM*C/SIMD
words of SIMD elements) in block RAM or distributed RAM as the generator puts it. The model
is of Xilinx LUT6s; for an ECP5 board the same numbers are held against its LUT4 count
(not calibrated there; a LUT4 does less, so ECP5 foldings may come out too fast).
"""

from __future__ import annotations

import dataclasses
import json
import math
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np

from compiler.backends.rtl import generate as G
from compiler.ir.model import (
    Layer,
    MatVec,
    MaxPool,
    Model,
    Recurrent,
    SlidingWindow,
    Thresholding,
)
from compiler.ir.types import IntType

COEFFS_FILE = Path(str(files("compiler.backends.rtl"))) / "cost_coeffs.json"

# the features of each fitted quantity; cost_coeffs.json holds one coefficient per name
LUT_TERMS = (
    "heap", "heap_out", "acc", "cmp", "thr", "rom", "rom_deep", "ibuf", "stream", "dwc", "const",
)  # fmt: skip
FIXED_LUT = {"rom_deep": 1.0}  # structural, not fitted (see above)
FF_TERMS = ("heap_reg", "acc", "operands", "tmem", "out", "stream", "dwc", "const")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def product_bits(layer: MatVec) -> int:
    """Bits one SIMD lane's product writes into the heap (taper_mvu's T)."""
    return product_bits_of(layer.input_type, layer.weight_type, layer.xnor)


def heap_width(layer: MatVec, acc_bits: int) -> int:
    """Columns of the heap (taper_mvu's OW): the popcount's width for XNOR, else ACC_BITS."""
    return max(1, math.ceil(math.log2(layer.simd + 1))) if layer.xnor else acc_bits


def ram_cells(depth: int, width: int) -> int:
    """Distributed RAM cells (each counted as one LUT, as the synth step counts them) of a
    memory with one write and one read port: RAM32M (32 x 6) or RAM64M (64 x 3) each."""
    return G.lutram_cells(depth, width)


@dataclasses.dataclass(frozen=True)
class Memory:
    name: str  # W_STYLE / T_STYLE (W_SPLIT: the weights' part in LUTs): taper_mvu's parameter;
    # RAM_STYLE: taper_swg's line buffer
    depth: int
    width: int
    style: str  # "logic" or "block"

    @property
    def lut(self) -> int:
        return G.memory_luts(self.name, self.depth, self.width) if self.style == "logic" else 0

    @property
    def bram36(self) -> float:
        return G.rom_bram36(self.depth, self.width) if self.style == "block" else 0.0


def params(layer: Layer) -> dict:
    """The RTL parameters the generator gives ``layer``."""
    return G.rtl_kind(layer).params(layer, "")


def memories(layer: Layer, p: dict | None = None) -> list[Memory]:
    """The layer's parameter memories, in the styles of ``p`` (as ``generate.assign_styles``
    set them), else each in the style ``generate.ram_style`` picks for it alone."""
    p = params(layer) if p is None else p
    return [Memory(k, d, w, style) for k, (d, w, style) in G.memory_parts(layer, p).items()]


def dwc_terms(layer: Layer, in_elems: int | None) -> tuple[int, int]:
    """Register bits and mux inputs of the width converter from words of ``in_elems``
    elements to ``layer``'s (none when they match)."""
    if in_elems is None or in_elems == layer.in_elems:
        return 0, 0
    bits = (2 * in_elems + layer.in_elems - 1) * layer.input_type.bits  # taper_dwc's CAP
    return bits, bits * _ceil_div(layer.in_elems + 2, 4)


def features(
    layer: Layer, in_elems: int | None = None, p: dict | None = None
) -> tuple[dict, dict, list[Memory]]:
    """LUT and FF features of ``layer`` (names as LUT_TERMS / FF_TERMS) and its memories.
    ``in_elems``: elements per word of the stream that feeds it (a width converter when
    it differs from the layer's own); ``p``: its RTL parameters, memory styles set."""
    p = params(layer) if p is None else p
    mems = memories(layer, p)
    stream = layer.in_width
    dwc_bits, dwc_mux = dwc_terms(layer, in_elems)
    if isinstance(layer, SlidingWindow | MaxPool | Recurrent):
        lut = dict.fromkeys(LUT_TERMS, 0.0)
        ff = dict.fromkeys(FF_TERMS, 0.0)
        if isinstance(layer, SlidingWindow):
            unit = _window_unit(layer, mems)
        elif isinstance(layer, MaxPool):
            unit = _pool_unit(layer)
        else:
            unit = _rnn_unit(layer, p, mems)
        lut.update(dwc=dwc_mux, unit=unit[0])
        ff.update(dwc=dwc_bits, unit=unit[1])
        return lut, ff, mems
    n = int(p.get("N_THRESH", 0))
    tb = int(p.get("T_BITS", 0))
    pe = layer.pe
    out = pe * int(p["OUT_BITS"])
    lut = dict.fromkeys(LUT_TERMS, 0.0)
    ff = dict.fromkeys(FF_TERMS, 0.0)
    logic = [m for m in mems if m.style == "logic" and m.depth > 2]
    lut.update(
        stream=stream,
        dwc=dwc_mux,
        const=1.0,
        rom=sum(m.width for m in logic),
        rom_deep=sum(m.width * (_ceil_div(m.depth, 64) - 1) for m in logic),
    )
    ff.update(out=out, stream=stream, dwc=dwc_bits, const=1.0, tmem=pe * n * tb)
    if isinstance(layer, Thresholding):
        lut["thr"] = pe * n * tb  # N comparators of T_BITS per lane
        if all(m.style == "block" for m in mems):
            ff["tmem"] = 0  # the block RAM's output register
        return lut, ff, mems
    # the MVU's accumulator (AW): with thresholds it starts at -T[0] (one bit more), and the
    # first comparison is its sign; the other N - 1 compare with the steps
    acc = int(p["ACC_BITS"])
    aw = max(tb, acc) + 1 if n else acc
    heap = pe * layer.simd * product_bits(layer)
    sf = layer.in_features // layer.simd
    words = 2 << max(1, math.ceil(math.log2(sf)) if sf > 1 else 1)
    xw = layer.simd * layer.input_type.bits
    lut.update(
        heap=heap,
        heap_out=pe * heap_width(layer, aw),
        acc=pe * aw * (2 if n else 1),  # the sum, and the start value KC - T[0]
        cmp=pe * max(0, n - 1) * aw,
        ibuf=ram_cells(words, xw),
    )
    ww = pe * layer.simd * layer.weight_type.bits
    style = {m.name: m.style for m in mems}
    w_logic = sum(m.width for m in mems if m.name in ("W_STYLE", "W_SPLIT") and m.style == "logic")
    ff.update(
        # level 1 of the heap (about 2 bits of every 3) registered, or its operands again,
        # whichever takes fewer flip-flops (taper_mvu's L1REG)
        heap_reg=min(2 * heap / 3 + pe * heap_width(layer, aw), ww + xw),
        acc=3 * pe * aw,  # the dot product, the accumulator, the completed sum
        # the input word read twice; the weights read (a block RAM's own output register)
        operands=2 * xw + w_logic,
        # the thresholds read (in a block RAM: its register) and again a stage later
        tmem=pe * n * tb * (2 if style.get("T_STYLE") == "logic" else 1),
    )
    return lut, ff, mems


# The CNN units (taper_swg, taper_maxpool) are not in the calibration: their cost, FIFO in
# front included, is one fixed "unit" term (coefficient 1), counted from their RTL and set
# against Yosys (synth_xilinx -family xc7 -nodsp, the synth step's count: a distributed RAM
# cell is one LUT) on 18 layers (10 windows, 8 pools: LUT -15 % .. +19 %, FF within 12 %
# but for single-lane 8-bit pools, -35 %: Yosys keeps their FIFO in flip-flops); the width
# converter in front keeps the calibrated "dwc" term. Block RAMs as Yosys' on all 18. Some
# (Yosys LUT/FF -> estimate LUT/FF):
#   window 8x8x3 INT4 SIMD 3 k3 s1 p1, LUT RAM 32 x 12        139/113 -> 143/111
#   window 24x24x3 UINT4 SIMD 3 k3 s2 p1, LUT RAM 192 x 12    179/121 -> 153/119
#   window 48x48x16 UINT1 SIMD 4 k3 s2, 0.5 BRAM36            140/100 -> 132/91
#   window 32x32x32 UINT8 SIMD 32 k3 s1 p1, 4 BRAM36          415/83  -> 426/83
#   window 36x36x64 UINT2 SIMD 8 k5 s1 p2, 1.5 BRAM36         153/88  -> 146/83
#   maxpool 32x32x16 INT4 PE 4 k2 (64 x 16 LUT RAM)           79/44   -> 83/44
#   maxpool 16x16x64 UINT1 PE 16 k2                           56/42   -> 62/41
#   maxpool 24x24x8 UINT8 PE 1 k2 (96 x 8 LUT RAM)            66/51   -> 62/34
SWG_CTL_LUT = 127  # counters, row/column arithmetic, handshakes (Yosys: 116..153)
SWG_CTL_FF = 3  # running, valid, pad flag: beside 8 counters of CW bits
POOL_CTL_LUT = 40  # position counters, window flags, handshakes
POOL_CTL_FF = 3
FIXED_TERMS = {"unit": 1.0}


def swg_counter_bits(layer: SlidingWindow) -> int:
    """taper_swg's CW: the width of its signed row and column counters."""
    need = 4 * (
        layer.ifm_dim + 2 * layer.pad + layer.kernel + layer.stride + G.swg_lines(layer)
        + layer.channels // layer.simd
    )  # fmt: skip
    return (need - 1).bit_length() + 2


def _window_unit(layer: SlidingWindow, mems: list[Memory]) -> tuple[float, float]:
    """LUT and FF of taper_swg and its FIFO: the line buffer (distributed RAM cells, or block
    RAM: none), the FIFO's distributed RAM, one LUT per output bit (the pad select after the
    read port), the control; 8 counters of CW bits and, with the line buffer in LUTs, its
    read register (Yosys keeps about three per bit)."""
    ww = layer.simd * layer.input_type.bits
    in_luts = sum(m.lut for m in mems)
    lut = SWG_CTL_LUT + ww + G.lutram_cells(32, layer.in_width) + in_luts
    ff = 8 * swg_counter_bits(layer) + SWG_CTL_FF + (3 * ww if in_luts else 0)
    return float(lut), float(ff)


def pool_memory_cells(depth: int, width: int) -> int:
    """taper_maxpool's row of partial maxima: read and written at one address (single-port
    distributed RAM, read asynchronously): RAM32M up to 32 words, else a RAM64X1S/RAM128X1S
    per bit and 128 words."""
    return -(-width // 6) if depth <= 32 else width * -(-depth // 128)


def _pool_unit(layer: MaxPool) -> tuple[float, float]:
    """LUT and FF of taper_maxpool and its FIFO: the partial maxima, a comparator and a
    select per lane (a 1-bit lane: one LUT), the FIFO's distributed RAM, the control; the
    output register and the position counters."""
    bits = layer.input_type.bits
    lane = 1 if bits == 1 else bits + bits // 2
    depth = layer.ofm_dim * (layer.channels // layer.pe)
    lut = (
        POOL_CTL_LUT
        + layer.pe * lane
        + pool_memory_cells(depth, layer.pe * bits)
        + G.lutram_cells(32, layer.in_width)
    )
    xb = layer.ifm_dim.bit_length()  # $clog2(IFM_DIM + 1)
    kb = layer.kernel.bit_length()  # $clog2(K + 1)
    cf = layer.channels // layer.pe
    fb = (cf - 1).bit_length() if cf > 1 else 1
    ff = layer.pe * bits + 3 * xb + 2 * kb + fb + 1 + POOL_CTL_FF
    return float(lut), float(ff)


RNN_CTL_LUT = 60  # issue counters, state machine, handshakes, the FIFO's control
RNN_CTL_FF = 40
# taper_rnn's LUT groups, each scaled by a relative non-negative least-squares fit against
# Yosys (synth_xilinx -family xc7 -nodsp, the FIFO in front included) on 17 layers: 8
# HitNet-like (INT4 x and h, UINT3 gates, ternary or INT4 weights: v 5 bits wide) and 9 whose
# v = [x << X_SHIFT; h << H_SHIFT] is 9 to 11 bits (UINT8 x, shifts up to 7; mnist_lstm's
# rnn0 among them). A ternary lane's LUTs follow v's width (VB), not ACC_BITS: a lane term
# of PE x SIMD x ACC_BITS got no weight, and the one of PE x SIMD x VB (2.7 LUT a bit: the
# select of v, ~v or 0 and its share of the adder tree) took it; fitted on v 5 bits wide only,
# the old model put rnn0 (VB 10) at -30 %. LUT -8 % .. +6 %, FF -12 % .. +21 %.
#   (Yosys LUT/FF/BRAM36 -> estimate LUT/FF/BRAM36)
#   LSTM 28 steps x 28 in x 64 hidden, ternary, PE 1 SIMD 1    1090/1250/4     -> 1148/1244/4
#   the same, PE 4 SIMD 4                                     2408/2149/9     -> 2214/1880/9.5
#   the same, PE 8 SIMD 23                                    5784/2723/19.5  -> 5620/2803/21.5
#   the same, PE 16 SIMD 92 (one fold; Yosys: 4.5 min)        24293/3967/66   -> 25190/4804/72.5
#   the same, UINT8 x, H_SHIFT 7 (VB 11), PE 8 SIMD 23        9508/3493/23.5  -> 9071/3597/26
#   the same, INT4 x, X_SHIFT 4 (VB 9), PE 4 SIMD 46          6492/2565/14    -> 6501/2346/14.5
#   mnist_lstm's rnn0 (UINT8 x, INT3 h, H_SHIFT 7: VB 10,
#     ACC_BITS 16), PE 16 SIMD 92                             43466/3658/47.5 -> 43492/3808/53
#   the same, PE 8 SIMD 23                                    7257/2316/9     -> 7352/2206/12
#   the same, PE 2 SIMD 92                                    6463/2475/6.5   -> 6135/2212/7.5
#   LSTM 5 x 32 x 32, ternary, PE 8 SIMD 2                    2915/1936/12.5  -> 3001/2274/15.5
#   LSTM 5 x 12 x 12, INT4 weights, PE 3 SIMD 6               2168/831/6      -> 2109/931/7.5
#   the same, UINT8 x, H_SHIFT 4 (VB 9)                       3085/1051/7     -> 3063/1186/9
#   GRU 6 x 8 x 8, INT4 weights, PE 2 SIMD 4                  1024/501/2.5    -> 1063/466/3
#   GRU 8 x 16 x 32, ternary, PE 8 SIMD 1                     2175/1528/7.5   -> 2208/1469/8.5
#   the same, UINT8 x, H_SHIFT 5 (VB 9), PE 8 SIMD 16         5415/1988/12.5  -> 5569/2096/16
#   the same, UINT8 x, H_SHIFT 5, PE 2 SIMD 4                 1343/1268/3     -> 1268/1130/3.5
# (block RAMs: the generator's count of 36-bit-wide blocks; Yosys packs wide ROMs 72 wide)
RNN_LUT = {"ctl": 1.5, "lane": 2.68, "acc": 5.93, "mul": 2.73, "cmp": 0.56, "elem": 1.01}


def rnn_v_bits(layer: Recurrent, p: dict) -> int:
    """taper_rnn's VB: an element of v = [x << X_SHIFT; h << H_SHIFT] as a signed value."""
    return max(int(p["IN_BITS"]) + 1 + layer.x_shift, int(p["HS_BITS"]) + layer.h_shift)


def rnn_lut_groups(layer: Recurrent, p: dict) -> dict[str, float]:
    """taper_rnn's LUT groups (names as RNN_LUT), each counted from its RTL."""
    pe, simd, H, F = layer.pe, layer.simd, layer.hidden, layer.in_features
    nf = H // pe
    gru = layer.cell == "gru"
    ib, hs, gv, acc = (int(p[k]) for k in ("IN_BITS", "HS_BITS", "GV_BITS", "ACC_BITS"))
    n, tb, ew = int(p["N_THRESH"]), int(p["T_BITS"]), int(p["EW"])
    cw = max(acc, tb)
    vb = rnn_v_bits(layer, p)
    ternary = int(p["TERNARY"])
    mul = 0 if ternary else vb * int(p["W_BITS"])  # a product's partial product bits
    mux = (2 * F * ib + (2 if gru else 1) * H * hs) / 3  # a LUT6 is a 4:1 multiplexer
    lane_mux = pe * nf * hs / 3
    # c (LSTM) and z (GRU), written and read at one unit group's address: distributed RAM
    if gru:
        ram = G.lutram_cells(nf, pe * gv)
        elem = pe * (gv * hs + 2 * gv * max(gv, hs) + 6 * ew)
    else:
        cs = int(p["CS_BITS"])
        ram = G.lutram_cells(nf, pe * cs)
        elem = pe * (gv * cs + gv * gv + gv * 4 + 6 * ew + cs * int(p["N_CT"]))
    return {
        "ctl": RNN_CTL_LUT + G.lutram_cells(32, layer.in_width) + mux + lane_mux + ram + H * hs,
        # a ternary lane: v, ~v or 0 and its adder in the tree, per bit of v (Yosys narrows
        # the tree's ACC_BITS-wide adders to their operands': the width of v, not ACC_BITS)
        "lane": pe * simd * vb * ternary,
        "acc": pe * acc,  # per PE: the tree's root, the -1s' count, the accumulator
        "mul": pe * simd * mul,
        "cmp": pe * n * cw / 2,
        "elem": elem,
    }


def _rnn_unit(layer: Recurrent, p: dict, mems: list[Memory]) -> tuple[float, float]:
    """LUT and FF of taper_rnn and its FIFO, counted from its RTL: the multiplexers that pick
    a SIMD word of v (x from two buffers, h or rh) and each unit group's h, c or z; the PE x
    SIMD products (ternary: an add or subtract) and accumulators; the threshold comparators;
    per PE lane the elementwise products, roundings and clips; the output shift register;
    the memories in LUTs. Flip-flops: the x buffers, h (three copies: h_{t-1}, h_t, the
    output), c or rh and z, and the pipeline registers."""
    pe, simd, H, F = layer.pe, layer.simd, layer.hidden, layer.in_features
    gru = layer.cell == "gru"
    ib, hs, gv, acc = (int(p[k]) for k in ("IN_BITS", "HS_BITS", "GV_BITS", "ACC_BITS"))
    n, tb = int(p["N_THRESH"]), int(p["T_BITS"])
    vb = rnn_v_bits(layer, p)
    if gru:
        state_ff = H * hs
    else:
        cs, ew = int(p["CS_BITS"]), int(p["EW"])
        state_ff = pe * (cs + 2 * gv + ew) + pe * int(p["N_CT"]) * int(p["CT_BITS"])
    groups = rnn_lut_groups(layer, p)
    lut = sum(RNN_LUT[k] * v for k, v in groups.items()) + sum(m.lut for m in mems)
    w_logic = sum(m.width for m in mems if m.name == "W_STYLE" and m.style == "logic")
    t_logic = any(m.name == "T_STYLE" and m.style == "logic" for m in mems)
    tw = pe * n * tb
    ff = (
        RNN_CTL_FF
        + 2 * F * ib
        + 3 * H * hs
        + state_ff
        + simd * vb
        + w_logic
        + 2 * pe * acc
        + tw * (2 if t_logic else 1)
        + pe * gv * (2 if gru else 4)
    )
    return float(lut), float(ff)


DEFAULT_COEFFS = {
    "lut": {"heap": 1.0, "heap_out": 1.0, "acc": 1.0, "cmp": 0.5, "thr": 0.5, "rom": 1.0, "rom_deep": 1.0, "ibuf": 1.0,
            "stream": 0.5, "dwc": 1.0, "const": 30.0},
    "ff": {"heap_reg": 0.5, "acc": 3.0, "operands": 1.0, "tmem": 1.0, "out": 1.0,
           "stream": 1.0, "dwc": 1.0, "const": 40.0},
}  # fmt: skip


@lru_cache(maxsize=1)
def _load_coeffs(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        return {"lut": DEFAULT_COEFFS["lut"], "ff": DEFAULT_COEFFS["ff"], "calibrated": False}
    return json.loads(p.read_text())


def coefficients() -> dict:
    return _load_coeffs(str(COEFFS_FILE))


def estimate_layer(
    layer: Layer, in_elems: int | None = None, coeffs: dict | None = None, p: dict | None = None
) -> dict[str, float]:
    """LUT, FF, BRAM36, DSP of one layer (with the FIFO and width converter before it); its
    memories in the styles of ``p`` (see ``memories``)."""
    c = coeffs or coefficients()
    lut_f, ff_f, mems = features(layer, in_elems, p)
    lut = sum(c["lut"].get(k, FIXED_TERMS.get(k, 0.0)) * v for k, v in lut_f.items())
    ff = sum(c["ff"].get(k, FIXED_TERMS.get(k, 0.0)) * v for k, v in ff_f.items())
    return {
        "lut": max(0.0, lut),
        "ff": max(0.0, ff),
        "bram36": float(sum(m.bram36 for m in mems)),
        "dsp": 0.0,
    }


def estimate(m: Model, bram36_limit: float | None = None) -> dict:
    """Per-layer and total estimates of ``m``'s RTL, its memories in the styles the generator
    gives them with ``bram36_limit`` block RAMs (``generate.assign_styles``; None: no limit)."""
    c = coefficients()
    ps = [params(x) for x in m.layers]
    G.assign_styles(m, ps, bram36_limit)
    layers, prev = {}, None
    for layer, p in zip(m.layers, ps, strict=True):
        layers[layer.name] = estimate_layer(layer, prev, c, p)
        prev = layer.out_elems
    total = {k: sum(e[k] for e in layers.values()) for k in ("lut", "ff", "bram36", "dsp")}
    return {**total, "layers": layers}


# ---------------------------------------------------------------------------- calibration


def measure(m: Model) -> dict[str, dict]:
    """Yosys (the synth step's ``synth_xilinx -family xc7 -nodsp``) LUT/FF/BRAM36 of every
    layer of ``m`` with the FIFO and width converter in front of it, as ``estimate`` counts
    them, the layer's cells by type and the styles the generator gave its memories."""
    import tempfile

    from compiler.backends.rtl import synth as S

    with tempfile.TemporaryDirectory() as d:
        rtl = Path(d)
        summary = G.generate(m, rtl)
        top = summary["top"]
        script = (
            f"{S.READ_SLANG} --keep-hierarchy --top {top} "
            f"{' '.join(summary['files'])}; "
            f"{S.FAMILIES['xilinx'].command.format(top=top)}"
        )
        stat = S.run_yosys(script, rtl)
    out = {}
    for layer in m.layers:
        cells: dict[str, int] = {}
        for name, mod in stat["modules"].items():
            inst = name.rstrip().rsplit(".", 1)[-1]
            if inst in (layer.name, f"{layer.name}_fifo", f"{layer.name}_dwc"):
                for k, v in mod.get("num_cells_by_type", {}).items():
                    cells[k] = cells.get(k, 0) + int(v)
        styles = {
            k: v["style"]
            for x in summary["layers"]
            if x["name"] == layer.name
            for k, v in x["memories"].items()
        }
        out[layer.name] = {**S.count(cells), "cells": cells, "styles": styles}
    return out


# Random layers as the calibration and its test synthesize them: chains of MatVec (and a
# leading Thresholding) whose types follow each other, every operand mode of taper_mvu.


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def random_chain(rng: np.random.Generator, n_layers: int, name: str = "cal", lanes: int = 96):
    """A Model of ``n_layers`` random layers, PE*SIMD at most ``lanes`` each (sizes kept
    small enough for Yosys to take a chain in well under a minute)."""
    from compiler.frontend.lower import accumulator_type
    from compiler.ir import FIFO, InputEdge, OutputEdge

    sizes = (8, 10, 12, 16, 20, 24, 32, 35, 48, 64, 96, 100, 128, 256)
    mw = int(rng.choice((16, 32, 49, 64, 96, 128, 196, 256, 784)))
    in_t = rng.choice(
        [
            IntType(1, False),
            IntType(1, False, True),
            IntType(2, True),
            IntType(4, False),
            IntType(8, False),
            IntType(3, True),
        ]  # fmt: skip
    )
    layers: list[Layer] = []
    if rng.random() < 0.3 and not in_t.bipolar and in_t.bits > 1:
        n = int(rng.choice((1, 3, 7)))
        ch = mw
        t = np.sort(rng.integers(in_t.min, in_t.max + 1, size=(ch, n)), axis=1)
        out = IntType(max(1, n.bit_length()), False)
        pe = int(rng.choice([d for d in _divisors(ch) if d <= 16]))
        layers.append(
            Thresholding(
                name="l0",
                input="input",
                output="l0_out",
                input_type=in_t,
                out_type=out,
                channels=ch,
                thresholds=t,
                pe=pe,
            )  # fmt: skip
        )
        in_t = out
    while len(layers) < n_layers:
        i = len(layers)
        mh = int(rng.choice(sizes))
        last = i == n_layers - 1
        xnor = in_t == IntType(1, False) and rng.random() < 0.7
        if xnor:
            w_t = IntType(1, False)
            w = rng.integers(0, 2, size=(mh, mw))
        else:
            w_t = rng.choice(
                [IntType(1, False, True), IntType(2, True), IntType(3, True), IntType(4, True)]
                if not in_t.bipolar
                else [IntType(2, True), IntType(3, True), IntType(4, True)]
            )
            w = (
                rng.choice([-1, 1], size=(mh, mw))
                if w_t.bipolar
                else rng.integers(w_t.min, w_t.max + 1, size=(mh, mw))
            )
        acc = accumulator_type(w, in_t, xnor)
        thresholds, out_t, bias = None, acc, 0
        if not last or rng.random() < 0.5:
            n = int(rng.choice((1, 1, 3, 15))) if not xnor else 1
            thresholds = np.sort(rng.integers(acc.min, acc.max + 1, size=(mh, n)), axis=1)
            out_t = IntType(max(1, n.bit_length()), False)
            if n == 1 and rng.random() < 0.3 and not last:
                out_t, bias = IntType(1, False, True), -1
        n_t = 0 if thresholds is None else thresholds.shape[1]
        pairs = [
            (p, s)
            for p in _divisors(mh)
            for s in _divisors(mw)
            if p * s <= lanes
            and p * s * product_bits_of(in_t, w_t, xnor) <= 4 * lanes
            and p * n_t <= lanes  # comparators
        ]
        pe, simd = pairs[int(rng.integers(len(pairs)))]
        layers.append(
            MatVec(
                name=f"l{i}",
                input="input" if i == 0 else f"l{i - 1}_out",
                output=f"l{i}_out",
                input_type=in_t,
                out_type=out_t,
                weight_type=w_t,
                acc_type=acc,
                weights=w,
                thresholds=thresholds,
                out_bias=bias,
                xnor=xnor,
                pe=pe,
                simd=simd,
            )  # fmt: skip
        )
        in_t, mw = out_t, mh
    for i, layer in enumerate(layers):
        layer.name, layer.output = f"l{i}", f"l{i}_out"
        layer.input = "input" if i == 0 else f"l{i - 1}_out"
    first = layers[0]
    m = Model(
        name=name,
        input_edge=InputEdge(
            kind="identity",
            in_shape=(first.in_features,),
            shape=(first.in_features,),
            out_type=first.input_type,
        ),  # fmt: skip
        layers=layers,
        output_edge=OutputEdge(out_shape=()),
        fifos=[FIFO(layer.input, 2, layer.in_width) for layer in layers],
    )
    m.check()
    return m


def product_bits_of(in_t: IntType, w_t: IntType, xnor: bool) -> int:
    if xnor:
        return 1
    if in_t.bipolar:
        return w_t.bits + 2
    if w_t.bipolar:
        return in_t.bits + 2
    return in_t.bits * w_t.bits


# ---------------------------------------------------------------------------- folding search

LUT_MARGIN = 0.8  # a folding "fits" when its estimate takes at most these shares of the board
BRAM_MARGIN = 0.9


@dataclasses.dataclass(frozen=True)
class Choice:
    """One layer's folding with its cycles per frame and estimate."""

    pe: int
    simd: int
    cycles: int
    est: dict

    def score(self, lut: float, bram36: float) -> float:
        """The share of the board it takes (LUT and BRAM36 shares added)."""
        return self.est["lut"] / lut + (self.est["bram36"] / bram36 if bram36 else 0.0)


def foldings(layer: Layer) -> list[tuple[int, int]]:
    """Every (PE, SIMD) the layer takes: PE divides the outputs, SIMD the inputs (any
    divisor, so a layer of 35 neurons folds by 1, 5, 7 or 35); a window's SIMD and a
    maxpool's PE divide the channels (the other is 1)."""
    if isinstance(layer, SlidingWindow):
        return [(1, s) for s in _divisors(layer.channels)]
    if isinstance(layer, MaxPool):
        return [(p, 1) for p in _divisors(layer.channels)]
    if isinstance(layer, Recurrent):
        return [(p, s) for p in _divisors(layer.hidden) for s in _divisors(layer.v_features)]
    pes = _divisors(layer.out_features)
    if isinstance(layer, Thresholding):
        return [(p, 1) for p in pes]
    return [(p, s) for p in pes for s in _divisors(layer.in_features)]


def refold(layer: Layer, pe: int, simd: int) -> Layer:
    if isinstance(layer, SlidingWindow):
        return dataclasses.replace(layer, simd=simd)
    if isinstance(layer, Thresholding | MaxPool):
        return dataclasses.replace(layer, pe=pe)
    return dataclasses.replace(layer, pe=pe, simd=simd)


def _cheapest_styles(layer: Layer, lut: float, bram36: float, c: dict) -> dict[str, float]:
    """The layer's estimate with its memories in the styles that take the least share of the
    board: a memory block RAM would take at 70 LUTs per BRAM36 (thresholds 16 x 704) costs
    more of a full board than its LUTs (the generator puts it in LUTs once the block RAMs
    are taken)."""
    import itertools

    p = params(layer)
    keys = list(G.memory_shapes(layer, p))
    best = None
    for styles in itertools.product(("block", "logic"), repeat=len(keys)):
        q = {**p, **{k: G.style_value(k, st) for k, st in zip(keys, styles, strict=True)}}
        e = estimate_layer(layer, None, c, q)
        score = e["lut"] / lut + (e["bram36"] / bram36 if bram36 else 0.0)
        if best is None or score < best[0]:
            best = (score, e)
    return best[1]  # type: ignore[index]


def choices(layer: Layer, lut: float, bram36: float, coeffs: dict | None = None) -> list[Choice]:
    """The layer's foldings, each the cheapest for its cycles, fastest first."""
    best: dict[int, Choice] = {}
    for ch in all_choices(layer, lut, bram36, coeffs):
        old = best.get(ch.cycles)
        if old is None or ch.score(lut, bram36) < old.score(lut, bram36):
            best[ch.cycles] = ch
    return [best[k] for k in sorted(best)]


def cheapest(options: list[Choice], ii: int, lut: float, bram36: float) -> Choice | None:
    """The cheapest choice of at most ``ii`` cycles per frame."""
    ok = [c for c in options if c.cycles <= ii]
    return min(ok, key=lambda c: (c.score(lut, bram36), c.cycles)) if ok else None


@dataclasses.dataclass
class Folding:
    """The search's answer: a folding per layer, its II and estimate, and whether it fits."""

    layers: list[Layer]
    ii: int
    estimate: dict
    fits: bool


def fits(est: dict, lut: float, bram36: float) -> bool:
    return est["lut"] <= LUT_MARGIN * lut and est["bram36"] <= BRAM_MARGIN * bram36


def _dwc_share(layer: Layer, in_elems: int | None, c: dict, lut: float) -> float:
    _, mux = dwc_terms(layer, in_elems)
    return (c["lut"]["dwc"] * mux) / lut


def plan(
    m: Model, ii: int, lut: float, bram36: float, table: list[list[Choice]] | None = None
) -> list[Choice]:
    """The foldings of ``m``'s layers of at most ``ii`` cycles each whose summed shares of the
    board (``Choice.score``, each layer's memories in its own best style) and of the width
    converters between them are least: a layer's PE sets the word its successor reads, so
    folding each layer alone can pick converters costing more than the layers (PE 8 into
    SIMD 512). Dynamic programming over the layers, keyed by the elements per word a layer
    sends. ``table``: every layer's ``all_choices`` (computed once by the caller)."""
    c = coefficients()
    table = table or [all_choices(x, lut, bram36, c) for x in m.layers]
    best: dict[int | None, tuple[float, list[Choice]]] = {None: (0.0, [])}
    for layer, options in zip(m.layers, table, strict=True):
        nxt: dict[int | None, tuple[float, list[Choice]]] = {}
        for ch in options:
            if ch.cycles > ii:
                continue
            f = refold(layer, ch.pe, ch.simd)
            own = ch.score(lut, bram36)
            for prev, (total, picks) in best.items():
                t = total + own + (_dwc_share(f, prev, c, lut) if picks else 0.0)
                key = f.out_elems
                if key not in nxt or t < nxt[key][0]:
                    nxt[key] = (t, [*picks, ch])
        if not nxt:
            raise Unreachable(layer.name, min(ch.cycles for ch in options))
        best = nxt
    return min(best.values(), key=lambda e: e[0])[1]


def all_choices(layer: Layer, lut: float, bram36: float, c: dict | None = None) -> list[Choice]:
    """Every folding of the layer with its estimate (alone, no width converter before it,
    its memories in their cheapest styles)."""
    c = c or coefficients()
    out = []
    for pe, simd in foldings(layer):
        f = refold(layer, pe, simd)
        out.append(Choice(pe, simd, f.cycles, _cheapest_styles(f, lut, bram36, c)))
    return out


def _fold_model(m: Model, picks: list[Choice], bram36: float) -> Folding:
    layers = [refold(x, c.pe, c.simd) for x, c in zip(m.layers, picks, strict=True)]
    folded = dataclasses.replace(m, layers=layers)
    est = estimate(folded, BRAM_MARGIN * bram36)
    return Folding(layers, folded.ii_cycles, est, False)


class Unreachable(ValueError):
    """No folding reaches the target II: ``layer`` takes at least ``ii`` cycles per frame."""

    def __init__(self, layer: str, ii: int):
        super().__init__(f"layer {layer}: at least {ii} cycles per frame")
        self.layer, self.ii = layer, ii


def choose_folding(m: Model, lut: float, bram36: float, target_ii: int | None) -> Folding:
    """The folding of ``m``'s layers for a board of ``lut`` LUTs and ``bram36`` block RAMs:
    with ``target_ii``, the cheapest whose II is at most ``target_ii`` (``fits`` says whether
    it fits the board with the margins); without, the fastest that fits with the margins
    (the slowest, fully folded one when none does). Unreachable when no folding reaches
    ``target_ii``."""
    c = coefficients()
    table = [all_choices(x, lut, bram36, c) for x in m.layers]
    floors = [min(ch.cycles for ch in t) for t in table]
    floor_ii = max(floors)

    def at(ii: int) -> Folding:
        f = _fold_model(m, plan(m, ii, lut, bram36, table), bram36)
        f.fits = fits(f.estimate, lut, bram36)
        return f

    if target_ii is not None:
        if floor_ii > target_ii:
            raise Unreachable(m.layers[floors.index(floor_ii)].name, floor_ii)
        return at(target_ii)
    iis = sorted({ch.cycles for t in table for ch in t if ch.cycles >= floor_ii})
    # the cheapest folding per II only gets cheaper as the II grows: bisect for the first fit
    lo, hi = 0, len(iis) - 1
    if not at(iis[hi]).fits:
        return at(iis[hi])
    while lo < hi:
        mid = (lo + hi) // 2
        if at(iis[mid]).fits:
            hi = mid
        else:
            lo = mid + 1
    return at(iis[lo])
