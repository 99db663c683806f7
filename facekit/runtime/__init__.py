"""Layer 1: how a graph runs: ONNX Runtime sessions, the folded graph and its ONNX exporter,
int8 building blocks, and converters that read weight files without their training framework."""
