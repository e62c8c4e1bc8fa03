"""taper: mixed-precision quantized neural networks to streaming dataflow FPGA accelerators."""

import warnings

# brevitas.export imports an optional CUDA kernel package and warns on every CPU machine.
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")

__version__ = "0.1.0"
