"""Training: trainers, evaluation metrics, ONNX export, and the pipeline that ties them together."""
