"""hls4ml back end: HLS C++ for Vitis HLS from QONNX, and its g++ C-simulation as a reference."""
