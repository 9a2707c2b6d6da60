"""The reference implementation's op table, as dispatch derives it from the op declarations:
`KERNELS`, op entry name -> function (the same form as every kernel package's)."""


def __getattr__(name: str):
    if name == "KERNELS":
        from ..dispatch import kernels
        return kernels("reference")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
