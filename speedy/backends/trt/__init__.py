"""TensorRT: serialized engines built with TensorRT's own Python API."""
