"""Inference: shared preprocessing and backends (eager torch, ONNX Runtime, TensorRT) behind one interface."""
