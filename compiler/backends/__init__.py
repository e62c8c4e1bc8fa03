"""Back ends: generators that turn the IR (or the QONNX model) into hardware sources."""
