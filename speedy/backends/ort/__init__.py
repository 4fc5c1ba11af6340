"""ONNX Runtime: plain and compiled ONNX graphs (CPU; CUDA and TensorRT providers where present)."""
