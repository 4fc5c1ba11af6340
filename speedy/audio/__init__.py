"""Audio input/output and feature front ends."""
