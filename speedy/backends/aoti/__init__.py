"""AOTInductor: `.pt2` packages compiled by `torch._inductor`."""
