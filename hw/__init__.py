"""Hardware sources that are not Python (Verilog library, testbench), shipped as package data."""
