"""Quantization: calibration, INT8 Q/DQ, FP16, sensitivity and quality-budgeted mixed precision."""
