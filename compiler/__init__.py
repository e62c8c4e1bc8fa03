"""taper: mixed-precision quantized neural networks to streaming dataflow FPGA accelerators."""

__version__ = "0.1.0"
