"""Front end: Brevitas/QONNX export and cleanup, FINN passes, lowering to the IR."""
