"""Eager PyTorch: the family's network with the artifact's state dict."""
