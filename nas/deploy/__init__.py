"""From an architecture to a deployable net: training any architecture (from scratch or
inheriting a supernet's weights) and exporting it (ONNX, TorchScript, JSON, weights)."""
