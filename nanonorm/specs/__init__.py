"""The op declarations (`nanonorm.opspec.OpSpec`), one module per family, each with `SPECS`.

Adding an op: its reference module in `nanonorm/ops/`, optionally a kernel module of the same
name per backend (`kernels/cpu/`, `kernels/cuda/`), its declaration here and its test module.
"""
