"""Target boards: FPGA part and device resources."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.errors import TaperError


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    lut: int
    ff: int
    bram36: int
    dsp: int


BOARDS = {
    b.name: b
    for b in (
        Board("pynq-z1", "xc7z020clg400-1", 53_200, 106_400, 140, 220),
        Board("pynq-z2", "xc7z020clg400-1", 53_200, 106_400, 140, 220),
        Board("ultra96", "xczu3eg-sbva484-1-e", 70_560, 141_120, 216, 360),
        Board("zcu104", "xczu7ev-ffvc1156-2-e", 230_400, 460_800, 312, 1_728),
    )
}


def board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise TaperError(f"unknown board '{name}': expected one of {', '.join(BOARDS)}") from None
