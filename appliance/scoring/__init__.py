"""How a model's outputs are read and scored, shared by training, validation, monitoring and serving: the task
metrics (``metrics``) and an ONNX model's session and outputs (``onnx_model``)."""
