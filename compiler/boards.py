"""Target boards: FPGA part, device resources and, for boards we make bitstreams for with open
tools, the device options and the pins the UART deploy uses."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.errors import TaperError


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    # Xilinx-like totals read by synth.check_fits; an ECP5's in equivalents (see ULX3S)
    lut: int
    ff: int
    bram36: int
    dsp: int
    family: str = "xilinx"  # "xilinx" (Vivado only here) or "ecp5" (yosys + nextpnr-ecp5)
    # nextpnr-ecp5's device options: --<device> --package <package> --speed <speed>
    device: str = ""
    package: str = ""
    speed: int = 0
    # the device's own primitives and how many it has (the ECP5 flow reports in these)
    resources: tuple[tuple[str, int], ...] = ()
    osc_mhz: float = 0.0  # the board oscillator on clock_pin
    clock_pin: str = ""
    uart_rx_pin: str = ""  # the FPGA receives here (the USB-UART's TXD)
    uart_tx_pin: str = ""  # the FPGA transmits here (the USB-UART's RXD)
    led_pins: tuple[str, ...] = ()  # led[0], led[1], ...
    # (port, pin) outputs held at 1 by the board top
    tie_high: tuple[tuple[str, str], ...] = ()

    @property
    def limits(self) -> dict[str, int]:
        """The device's primitives by name: how many it has."""
        return dict(self.resources)


ULX3S = Board(
    "ulx3s",
    "LFE5U-85F-6BG381C",
    lut=83_640,
    ff=83_640,
    bram36=104,  # 208 DP16KD of 18 Kb
    dsp=156,  # MULT18X18D
    family="ecp5",
    device="85k",
    package="CABGA381",
    speed=6,
    resources=(("LUT4", 83_640), ("FF", 83_640), ("DP16KD", 208), ("MULT18", 156)),
    # pins from the board's LPF (emard/ulx3s, doc/constraints/ulx3s_v20.lpf): clk_25mhz,
    # ftdi_txd (FPGA receives), ftdi_rxd (FPGA transmits), led[0..7]
    osc_mhz=25.0,
    clock_pin="G2",
    uart_rx_pin="M1",
    uart_tx_pin="L4",
    led_pins=("B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"),
    # ESP32 GPIO0: held high, or the ESP32 may pull the FPGA's PROGRAMN and reboot the board
    tie_high=(("wifi_gpio0", "L2"),),
)

BOARDS = {
    b.name: b
    for b in (
        Board("pynq-z1", "xc7z020clg400-1", 53_200, 106_400, 140, 220),
        Board("pynq-z2", "xc7z020clg400-1", 53_200, 106_400, 140, 220),
        Board("ultra96", "xczu3eg-sbva484-1-e", 70_560, 141_120, 216, 360),
        Board("zcu104", "xczu7ev-ffvc1156-2-e", 230_400, 460_800, 312, 1_728),
        ULX3S,
    )
}


def board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise TaperError(f"unknown board '{name}': expected one of {', '.join(BOARDS)}") from None
