"""Row sums in a fixed order, as fast as a vectorized reduction: `lane_sum`, `lane_dot`; and a
vectorized row max, `lane_max`.

LLVM vectorizes `s += a[j]` only under fast-math's `reassoc`, and then the order of the sum is
LLVM's choice, made again each time the code is optimised: a process that compiled the
LayerNorm backward and one that loaded it from Numba's on-disk cache summed in different
orders (the same kernel, inputs and machine), so a resumed training run could differ from an
uninterrupted one. These intrinsics write the vector code out instead: element j of [lo, hi)
goes to lane (j - lo) mod 32 of four <8 x double> accumulators, the lanes are added in a fixed
tree and the tail (fewer than 32 elements) serially. No instruction carries `reassoc`, so every
compile path, and any SIMD width (AVX2 splits each accumulator in two, lane for lane), gives
the same sums. float32 elements are widened to float64 before they are multiplied or added.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

WIDTH, NACC = 8, 4                  # four <8 x double> accumulators: 32 elements a step
_F64 = ir.DoubleType()
_VEC = ir.VectorType(_F64, WIDTH)
_FLAGS = ("nsz",)                   # explicit, so Numba's fastmath pass adds no others
_I32 = ir.IntType(32)


def _load(context, builder, aty, arr, idx, vec: bool, shift=None):
    """arr[idx] as a double, or arr[idx : idx + WIDTH] as <WIDTH x double>; with a shift,
    arr[idx] - shift taken in the array's dtype first (then widened)."""
    ptr = builder.gep(context.make_array(aty)(context, builder, arr).data, [idx])
    ety = ptr.type.pointee
    if vec:
        ptr = builder.bitcast(ptr, ir.VectorType(ety, WIDTH).as_pointer())
    value = builder.load(ptr, align=aty.dtype.bitwidth // 8)      # element alignment only
    if shift is not None:
        if vec:                                                    # splat the scalar
            splat = ir.Constant(value.type, None)
            for i in range(WIDTH):
                splat = builder.insert_element(splat, shift, _I32(i))
            shift = splat
        value = builder.fsub(value, shift, flags=_FLAGS)
    if aty.dtype == types.float32:
        value = builder.fpext(value, _VEC if vec else _F64)
    return value


def _reduce(builder, lo, hi, terms, nout):
    """The sums over [lo, hi) of the nout values terms(idx, vec) gives for each element, as
    described above: a list of nout doubles."""
    i64 = lo.type
    step = ir.Constant(i64, WIDTH * NACC)
    n = builder.sub(hi, lo)
    n = builder.select(builder.icmp_signed("<", n, i64(0)), i64(0), n)
    nsteps = builder.udiv(n, step)
    accs = [[cgutils.alloca_once(builder, _VEC) for _ in range(NACC)] for _ in range(nout)]
    for p in (p for row in accs for p in row):
        builder.store(ir.Constant(_VEC, None), p)                   # zeros
    with cgutils.for_range(builder, nsteps) as loop:
        base = builder.add(lo, builder.mul(loop.index, step))
        for k in range(NACC):
            values = terms(builder.add(base, i64(WIDTH * k)), True)
            for row, v in zip(accs, values):
                builder.store(builder.fadd(builder.load(row[k]), v, flags=_FLAGS), row[k])
    totals = []
    for row in accs:
        parts = [builder.load(p) for p in row]
        while len(parts) > 1:                                      # (a0 + a1) + (a2 + a3)
            parts = [builder.fadd(x, y, flags=_FLAGS) for x, y in zip(parts[::2], parts[1::2])]
        parts = [builder.extract_element(parts[0], _I32(i)) for i in range(WIDTH)]
        while len(parts) > 1:                                      # lanes pairwise
            parts = [builder.fadd(x, y, flags=_FLAGS) for x, y in zip(parts[::2], parts[1::2])]
        totals.append(cgutils.alloca_once_value(builder, parts[0]))
    with cgutils.for_range(builder, hi, start=builder.add(lo, builder.mul(nsteps, step))) as loop:
        for total, v in zip(totals, terms(loop.index, False)):
            builder.store(builder.fadd(builder.load(total), v, flags=_FLAGS), total)
    return [builder.load(t) for t in totals]


def _check(*arrays):
    for a in arrays:
        if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                and a.dtype in (types.float32, types.float64)):
            raise TypeError(f"lane sums take 1-D C-contiguous float32/float64 arrays, got {a}")


@intrinsic
def lane_sum(typingctx, a, lo, hi):
    """Σ a[lo:hi] in float64, in the fixed order above (lo <= hi <= len(a), unchecked)."""
    _check(a)

    def codegen(context, builder, sig, args):
        arr, lo, hi = args
        return _reduce(builder, lo, hi,
                       lambda i, vec: [_load(context, builder, sig.args[0], arr, i, vec)], 1)[0]
    return types.float64(a, types.intp, types.intp), codegen


def _products(with_sum: bool):
    """Codegen of Σ a·b, or of (Σ a, Σ a·b) in one pass."""
    def codegen(context, builder, sig, args):
        (aty, bty), (x, y, lo, hi) = sig.args[:2], args

        def terms(i, vec):
            u = _load(context, builder, aty, x, i, vec)
            uv = builder.fmul(u, _load(context, builder, bty, y, i, vec), flags=_FLAGS)
            return [u, uv] if with_sum else [uv]
        sums = _reduce(builder, lo, hi, terms, 2 if with_sum else 1)
        return context.make_tuple(builder, sig.return_type, sums) if with_sum else sums[0]
    return codegen


@intrinsic
def lane_dot(typingctx, a, b, lo, hi):
    """Σ a[j]·b[j] over [lo, hi) in float64, in the fixed order above (unchecked bounds)."""
    _check(a, b)
    return types.float64(a, b, types.intp, types.intp), _products(with_sum=False)


@intrinsic
def lane_sum_dot(typingctx, a, b, lo, hi):
    """(Σ a[j], Σ a[j]·b[j]) over [lo, hi) in float64, in one pass, each in the fixed order."""
    _check(a, b)
    return types.UniTuple(types.float64, 2)(a, b, types.intp, types.intp), _products(True)


@intrinsic
def lane_moments(typingctx, a, shift, lo, hi):
    """(Σ d, Σ d²) over [lo, hi) in float64 with d = a[j] - shift rounded to a's dtype (as a
    LayerNorm's variance about a first guess of the mean needs), in one pass."""
    _check(a)

    def codegen(context, builder, sig, args):
        aty, (arr, sh, lo, hi) = sig.args[0], args

        def terms(i, vec):
            d = _load(context, builder, aty, arr, i, vec, shift=sh)
            return [d, builder.fmul(d, d, flags=_FLAGS)]
        return context.make_tuple(builder, sig.return_type, _reduce(builder, lo, hi, terms, 2))
    return types.UniTuple(types.float64, 2)(a, a.dtype, types.intp, types.intp), codegen


@intrinsic
def lane_max(typingctx, a, n, start):
    """max(start, a[0], ..., a[n-1]) in a's dtype, vectorized: a max is exact in any order, so
    this needs no fixed order for its value, only for its speed (a scalar running max is one
    serial chain of compares: LLVM vectorizes a float max only under fast-math's nnan, which
    -inf masks and NaN rows rule out). A NaN entry is skipped (each step keeps the larger of two
    ordered values): callers propagate NaN rows through exp(NaN - m) in their sums."""
    _check(a)

    def codegen(context, builder, sig, args):
        aty, (arr, n, start) = sig.args[0], args
        ety = context.get_value_type(aty.dtype)
        width = 512 // aty.dtype.bitwidth                           # a 64-byte vector
        vty = ir.VectorType(ety, width)
        i64 = n.type
        data = context.make_array(aty)(context, builder, arr).data
        larger = lambda x, m: builder.select(builder.fcmp_ordered(">", x, m), x, m)
        splat = ir.Constant(vty, None)
        for i in range(width):
            splat = builder.insert_element(splat, start, _I32(i))
        accs = [cgutils.alloca_once_value(builder, splat) for _ in range(NACC)]
        step = i64(width * NACC)
        nsteps = builder.udiv(builder.select(builder.icmp_signed("<", n, i64(0)), i64(0), n),
                              step)
        with cgutils.for_range(builder, nsteps) as loop:
            base = builder.mul(loop.index, step)
            for k, acc in enumerate(accs):
                ptr = builder.gep(data, [builder.add(base, i64(width * k))])
                v = builder.load(builder.bitcast(ptr, vty.as_pointer()),
                                 align=aty.dtype.bitwidth // 8)     # element alignment only
                builder.store(larger(v, builder.load(acc)), acc)
        parts = [builder.load(acc) for acc in accs]
        while len(parts) > 1:
            parts = [larger(x, y) for x, y in zip(parts[::2], parts[1::2])]
        lanes = [builder.extract_element(parts[0], _I32(i)) for i in range(width)]
        while len(lanes) > 1:
            lanes = [larger(x, y) for x, y in zip(lanes[::2], lanes[1::2])]
        m = cgutils.alloca_once_value(builder, lanes[0])
        with cgutils.for_range(builder, n, start=builder.mul(nsteps, step)) as loop:
            x = builder.load(builder.gep(data, [loop.index]))
            builder.store(larger(x, builder.load(m)), m)
        return builder.load(m)
    return a.dtype(a, types.intp, a.dtype), codegen
