"""Backend compilers for `speedy compile`: TensorRT engines, ORT-optimized models, AOTInductor."""
