"""cpu kernels: filled in by the kernels issue."""
KERNELS: dict = {}
