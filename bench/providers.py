"""Who a bench row times: nanonorm's implementations and torch, on the CPU or a GPU.

A provider moves host inputs to its arrays (NumPy, CuPy, torch tensors), runs nanonorm under
`use_impl` (or is torch itself), and brings results back to the host for validation; GPU
providers synchronise so that a timing covers the work, not its launch.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np


def torch_module():
    """torch, or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def gpu_missing() -> str | None:
    """None when CuPy sees a GPU, else why not (what is missing): `nanonorm info`'s answer."""
    from nanonorm.machine import cuda_facts
    return cuda_facts()["missing"]


@dataclass(frozen=True)
class Provider:
    name: str            # the row's label
    impl: str | None     # nanonorm implementation run under use_impl; None: torch
    device: str          # "cpu" or "cuda"

    @property
    def is_torch(self) -> bool:
        return self.impl is None

    def missing(self) -> str | None:
        """None when this provider can run here, else why not."""
        if self.device == "cuda" and gpu_missing():
            return gpu_missing()
        if self.is_torch:
            torch = torch_module()
            if torch is None:
                return "torch is not installed"
            if self.device == "cuda" and not torch.cuda.is_available():
                return "torch sees no GPU"
        return None

    def context(self):
        """What the provider's calls run inside: use_impl for nanonorm, nothing for torch."""
        if self.is_torch:
            return contextlib.nullcontext()
        import nanonorm
        return nanonorm.use_impl(self.impl)

    def array(self, a, dtype=np.float32, grad: bool = False):
        """A host array (or scalar, tuple, None) as this provider's array; floats as dtype."""
        if not isinstance(a, np.ndarray):
            return a
        a = a.astype(dtype) if a.dtype.kind == "f" else a
        if self.is_torch:
            a = a if a.flags.c_contiguous else a.copy()     # (ascontiguousarray makes 0-d 1-d)
            t = torch_module().as_tensor(a, device=self.device)
            return t.requires_grad_(True) if grad and a.dtype.kind == "f" else t
        if self.device == "cuda":
            import cupy
            return cupy.asarray(a)
        return a

    def host(self, a) -> np.ndarray:
        """A result as a host NumPy array."""
        if self.is_torch:
            return a.detach().cpu().numpy()
        from nanonorm.backend import to_numpy
        return np.asarray(to_numpy(a))

    def sync(self) -> None:
        if self.device != "cuda":
            return
        if self.is_torch:
            torch_module().cuda.synchronize()
        else:
            import cupy
            cupy.cuda.Device().synchronize()


PROVIDERS = {p.name: p for p in (
    Provider("reference", "reference", "cpu"), Provider("numba", "numba", "cpu"),
    Provider("torch", None, "cpu"), Provider("cuda", "cuda", "cuda"),
    Provider("torch-cuda", None, "cuda"))}
# --providers names: "cuda" brings torch's GPU rows along, as the peer on that device
CHOICES = ("reference", "numba", "torch", "cuda")
