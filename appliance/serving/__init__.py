"""Serving: loaded ONNX models, hot swaps when production moves, and the HTTP API."""
