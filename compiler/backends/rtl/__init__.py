"""Portable RTL back end: Verilog from the IR, Verilator simulation, Yosys resources."""
