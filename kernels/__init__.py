"""Fast implementations beside the reference (installed as `nanonorm.kernels`).

`cpu/`: Numba @njit kernels for NumPy arrays; `cuda/`: numba-cuda kernels for CuPy arrays.
Each package exposes `KERNELS`, a dict op name -> function with the reference's signature and
cache type, which `nanonorm.dispatch` picks up.
"""
