"""Two vector operations for the 4-bit screen of :mod:`alsresearch._quantized`, as numba
intrinsics (LLVM IR written here, inlined into the calling kernel).

numba has no vector types and LLVM does not turn a plain loop of byte products into AVX-512
VNNI's ``vpdpbusd`` (64 byte products summed into 16 int32 lanes in one instruction), which is
what makes a 4-bit screen cheaper than reading float32 factors. So :data:`i32x16` is a numba
type for ``<16 x i32>`` (kept in a register), and:

- :func:`dot_nibbles` adds to 16 int32 accumulators the products of one 64-byte load of 4-bit
  item codes (low and high nibbles: two groups of 4 factors for 16 items) with two groups of 4
  signed user bytes;
- :func:`upper_bound_mask` turns the 16 dot products into float32 upper bounds of the items'
  scores and returns which of them reach a threshold (a 16-bit mask), storing the dot products.

:func:`dot_nibbles` takes a ``mode``: :data:`VNNI` emits ``vpdpbusd`` (use it only where
:data:`HAS_VNNI`), :data:`PORTABLE` the same arithmetic as plain widening multiplies and adds that LLVM
compiles for any CPU. Integer arithmetic is exact either way, so the two give identical results.
"""

from __future__ import annotations

import os

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, errors
from numba.extending import intrinsic, models, register_model

__all__ = [
    "HAS_VNNI",
    "PORTABLE",
    "VNNI",
    "dot_nibbles",
    "i32x16",
    "times",
    "upper_bound_mask",
    "zeros",
]

#: this CPU runs AVX-512 VNNI (set ``ALSRESEARCH_NO_VNNI=1`` to use the portable code instead)
HAS_VNNI = bool(llvm_binding.get_host_cpu_features().get("avx512vnni")) and not os.environ.get(
    "ALSRESEARCH_NO_VNNI"
)

_I32 = ir.IntType(32)
_VI32 = ir.VectorType(_I32, 16)
_VI8 = ir.VectorType(ir.IntType(8), 64)
_VF32 = ir.VectorType(ir.FloatType(), 16)


class I32x16(types.Type):
    """``<16 x i32>``: 16 int32 lanes in one 512-bit register."""

    def __init__(self) -> None:
        super().__init__(name="i32x16")


i32x16 = I32x16()


@register_model(I32x16)
class _I32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VI32)


def _broadcast(builder, value, vector_type):
    undef = ir.Constant(vector_type, None)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(
        one, undef, ir.Constant(ir.VectorType(_I32, vector_type.count), None)
    )


def _load(context, builder, array_type, array, offset, vector_type):
    """``vector_type`` read from ``array`` at element ``offset`` (any alignment)."""
    data = context.make_array(array_type)(context, builder, array).data
    pointer = builder.bitcast(builder.gep(data, [offset]), vector_type.as_pointer())
    return builder.load(pointer, align=1)


def _dpbusd(builder, acc, unsigned, signed, vnni: bool):
    """acc + per lane the sum of 4 products (unsigned byte x signed byte)."""
    if vnni:
        fnty = ir.FunctionType(_VI32, [_VI32, _VI32, _VI32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, [acc, unsigned, signed])
    wide = ir.VectorType(_I32, 64)
    a = builder.zext(builder.bitcast(unsigned, _VI8), wide)
    b = builder.sext(builder.bitcast(signed, _VI8), wide)
    products = builder.mul(a, b)
    for d in range(4):
        lanes = ir.Constant(ir.VectorType(_I32, 16), [4 * lane + d for lane in range(16)])
        acc = builder.add(acc, builder.shuffle_vector(products, products, lanes))
    return acc


#: pass as the ``mode`` argument of the intrinsics (and of the kernels calling them): the mode
#: lives in the argument's type, so each is compiled (and cached) once and selected by numba's
#: ordinary type dispatch at no cost per call.
VNNI = np.uint8(1)
PORTABLE = np.int8(0)


def _uses_vnni(mode) -> bool:
    if not isinstance(mode, types.Integer) or mode.bitwidth != 8:
        raise errors.TypingError(f"mode must be _simd.VNNI or _simd.PORTABLE, got {mode}")
    return not mode.signed


@intrinsic
def zeros(typingctx):
    """16 int32 zeros."""

    def codegen(context, builder, signature, args):
        return ir.Constant(_VI32, None)

    return i32x16(), codegen


@intrinsic
def add(typingctx, a, b):
    """``a + b`` per lane (int32)."""

    def codegen(context, builder, signature, args):
        return builder.add(args[0], args[1])

    return i32x16(i32x16, i32x16), codegen


@intrinsic
def times(typingctx, acc, factor):
    """``acc * factor`` per lane (int32)."""

    def codegen(context, builder, signature, args):
        return builder.mul(args[0], _broadcast(builder, args[1], _VI32))

    return i32x16(i32x16, types.int32), codegen


@intrinsic
def dot_nibbles(typingctx, acc, codes, offset, x_low, x_high, mode):
    """``acc`` plus, per lane ``l``, ``sum_d lo(codes[offset + 4l + d]) * x_low byte d`` and
    the same for the high nibbles with ``x_high`` (``x_low`` / ``x_high``: 4 signed bytes
    packed in an int32; ``codes``: a 1-D uint8 array)."""
    use_vnni = _uses_vnni(mode)
    if not (isinstance(codes, types.Array) and codes.dtype == types.uint8 and codes.ndim == 1):
        raise errors.TypingError(f"codes must be a 1-D uint8 array, got {codes}")
    sig = i32x16(i32x16, codes, types.intp, types.int32, types.int32, mode)

    def codegen(context, builder, signature, args):
        acc, codes_value, offset_value, low, high, _ = args
        v = _load(context, builder, signature.args[1], codes_value, offset_value, _VI32)
        mask = ir.Constant(_VI32, [0x0F0F0F0F] * 16)
        four = ir.Constant(_VI32, [4] * 16)
        low_nibbles = builder.and_(v, mask)
        high_nibbles = builder.and_(builder.lshr(v, four), mask)
        acc = _dpbusd(builder, acc, low_nibbles, _broadcast(builder, low, _VI32), use_vnni)
        return _dpbusd(builder, acc, high_nibbles, _broadcast(builder, high, _VI32), use_vnni)

    return sig, codegen


@intrinsic
def upper_bound_mask(typingctx, acc, mul, offset, sx, scale, r, m, pos, nx, nex, threshold, dots):
    """Store ``d = mul * acc - offset`` (int32) into ``dots[0:16]`` and return (uint64) the bit
    mask of the lanes ``l`` where ``d_l * (sx * scale[pos+l]) + nx * r[pos+l] + nex * m[pos+l]
    >= threshold``, in float32 (the arrays are 1-D float32, ``dots`` 1-D int32). ``r`` and
    ``m`` may be the same array with ``nex = 0``."""
    for name, ty in (("scale", scale), ("r", r), ("m", m)):
        if not (isinstance(ty, types.Array) and ty.dtype == types.float32 and ty.ndim == 1):
            raise errors.TypingError(f"{name} must be a 1-D float32 array, got {ty}")
    if not (isinstance(dots, types.Array) and dots.dtype == types.int32 and dots.ndim == 1):
        raise errors.TypingError(f"dots must be a 1-D int32 array, got {dots}")
    args = (i32x16, types.int32, types.int32, types.float32, scale, r, m, types.intp)
    sig = types.uint64(*args, types.float32, types.float32, types.float32, dots)

    def codegen(context, builder, signature, values):
        acc, mul, off, sx_value, scale_v, r_v, m_v, pos_v, nx_v, nex_v, t_v, dots_v = values
        sa = signature.args[1:]  # as if without mul
        product = builder.mul(acc, _broadcast(builder, mul, _VI32))
        d = builder.sub(product, _broadcast(builder, off, _VI32))
        dots_data = context.make_array(sa[10])(context, builder, dots_v).data
        builder.store(d, builder.bitcast(dots_data, _VI32.as_pointer()), align=4)
        step = builder.fmul(
            _broadcast(builder, sx_value, _VF32),
            _load(context, builder, sa[3], scale_v, pos_v, _VF32),
        )
        a = builder.fmul(builder.sitofp(d, _VF32), step)
        slack = builder.fadd(
            builder.fmul(
                _broadcast(builder, nx_v, _VF32), _load(context, builder, sa[4], r_v, pos_v, _VF32)
            ),
            builder.fmul(
                _broadcast(builder, nex_v, _VF32), _load(context, builder, sa[5], m_v, pos_v, _VF32)
            ),
        )
        upper = builder.fadd(a, slack)
        bits = builder.fcmp_ordered(">=", upper, _broadcast(builder, t_v, _VF32))
        mask16 = builder.bitcast(bits, ir.IntType(16))
        return builder.zext(mask16, ir.IntType(64))

    return sig, codegen
