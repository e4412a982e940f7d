"""Vector operations as numba intrinsics (LLVM IR written here, inlined into the calling
kernel): two for the 4-bit screen of :mod:`alsresearch._quantized` and the choice of the code
path they compile to, and four on 16 float32 lanes (:data:`f32x16`) for the fit's basis
changes (:func:`alsresearch._kernels.rows_times`).

numba has no vector types and LLVM does not turn a plain loop of byte products into the CPU's
integer dot-product instructions, which are what make a 4-bit screen cheaper than reading
float32 factors. So :data:`i32x16` is a numba type for ``<16 x i32>`` (kept in registers: one
512-bit register, or two 256-bit ones on AVX2), and:

- :func:`dot_nibbles` adds to 16 int32 accumulators the products of one 64-byte load of 4-bit
  item codes (low and high nibbles: two groups of 4 factors for 16 items) with two groups of 4
  signed user bytes;
- :func:`upper_bound_mask` turns the 16 dot products into float32 upper bounds of the items'
  scores and returns which of them reach a threshold (a 16-bit mask), storing the dot products.

:func:`dot_nibbles` takes a ``mode``, one per code path (:data:`PATHS`):

- ``vnni`` (:data:`VNNI`): AVX-512 VNNI's ``vpdpbusd``, 64 byte products summed into 16 int32
  lanes in one instruction;
- ``avx2`` (:data:`AVX2`): AVX2's ``vpmaddubsw`` (pairs of byte products summed into int16)
  and ``vpmaddwd`` (pairs of int16 summed into int32), on two 256-bit halves;
- ``portable`` (:data:`PORTABLE`): the same arithmetic as plain widening multiplies and adds,
  which LLVM compiles for any CPU.

Integer arithmetic is exact, so every path gives identical results. :func:`screen_path` is the
path the package uses: ``ALSRESEARCH_SCREEN`` (``vnni``, ``avx2`` or ``portable``) when set,
else the best one the compile target supports. The target is numba's, not necessarily the
host's: ``NUMBA_CPU_NAME`` with ``NUMBA_CPU_FEATURES`` (empty: that CPU's own features)
compile for another CPU, e.g. ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=`` for an AVX2-only
one (``NUMBA_CPU_NAME`` alone keeps the host's features, AVX-512 included).
"""

from __future__ import annotations

import functools
import os
import re

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config, errors
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic, models, register_model

__all__ = [
    "AVX2",
    "ENV",
    "PATHS",
    "PORTABLE",
    "VNNI",
    "dot_nibbles",
    "f32x16",
    "fload",
    "fmuladd",
    "fstore",
    "fzeros",
    "i32x16",
    "mode_of",
    "paths_for",
    "screen_path",
    "supported_paths",
    "target_cpu",
    "times",
    "upper_bound_mask",
    "wide_float_vectors",
    "zeros",
]

#: the screen's code paths, best first
PATHS = ("vnni", "avx2", "portable")
#: the environment variable that forces a path
ENV = "ALSRESEARCH_SCREEN"

_I32 = ir.IntType(32)
_VI32 = ir.VectorType(_I32, 16)
_VI8 = ir.VectorType(ir.IntType(8), 64)
_VF32 = ir.VectorType(ir.FloatType(), 16)


def target_cpu() -> tuple[str, str]:
    """(CPU name, feature string) numba compiles for: ``NUMBA_CPU_NAME`` else the host's,
    ``NUMBA_CPU_FEATURES`` else the host's (as numba's JIT code generator chooses them)."""
    name = llvm_binding.get_host_cpu_name() if config.CPU_NAME is None else config.CPU_NAME
    features = get_host_cpu_features() if config.CPU_FEATURES is None else config.CPU_FEATURES
    return name, features


# Two dot products of int16 pairs, in plain IR: LLVM compiles the 256-bit one to vpmaddwd (or
# VNNI's vpdpwssd) on ymm registers exactly when the target has AVX2 (AVX alone splits it in
# xmm halves), and the 512-bit one to vpdpwssd on zmm registers exactly when it has AVX-512
# VNNI. Reading the assembly asks LLVM itself which instructions the target has, whatever the
# CPU name and feature string say (llvmlite offers no other way); a probe with the x86
# intrinsics themselves would abort the process on a target without them.
_PROBE = """
define <{n} x i32> @probe(<{n} x i32> %acc, <{m} x i16> %a, <{m} x i16> %b) {{
  %ea = sext <{m} x i16> %a to <{m} x i32>
  %eb = sext <{m} x i16> %b to <{m} x i32>
  %p = mul <{m} x i32> %ea, %eb
  %even = shufflevector <{m} x i32> %p, <{m} x i32> poison, <{n} x i32> <{even}>
  %odd = shufflevector <{m} x i32> %p, <{m} x i32> poison, <{n} x i32> <{odd}>
  %s = add <{n} x i32> %even, %odd
  %r = add <{n} x i32> %acc, %s
  ret <{n} x i32> %r
}}
"""


def _probe_asm(name: str, features: str, lanes: int) -> str:
    def mask(start):
        return ", ".join(f"i32 {j}" for j in range(start, 2 * lanes, 2))

    text = _PROBE.format(n=lanes, m=2 * lanes, even=mask(0), odd=mask(1))
    llvm_binding.initialize_native_target()
    llvm_binding.initialize_native_asmprinter()
    target = llvm_binding.Target.from_default_triple()
    machine = target.create_target_machine(cpu=name, features=features, opt=2)
    return machine.emit_assembly(llvm_binding.parse_assembly(text))


@functools.cache
def supported_paths() -> tuple[str, ...]:
    """The paths of :data:`PATHS` that the compile target (:func:`target_cpu`) runs, best
    first."""
    return paths_for(*target_cpu())


def paths_for(name: str, features: str) -> tuple[str, ...]:
    """The paths of :data:`PATHS` that LLVM compiles for CPU ``name`` with ``features`` (a
    feature string such as numba's; empty: the CPU's own), best first."""
    wide = _probe_asm(name, features, 16)
    narrow = _probe_asm(name, features, 8)
    paths = []
    if re.search(r"vpdpwssd\s[^\n]*%zmm", wide):
        paths.append("vnni")
    if re.search(r"vp(maddwd|dpwssd)\s[^\n]*%ymm", narrow):  # not two xmm halves (AVX)
        paths.append("avx2")
    return (*paths, "portable")


def _describe_target() -> str:
    name, features = target_cpu()
    flags = {f[1:] for f in features.split(",") if f.startswith("+")}
    shown = [f for f in ("avx2", "avx512f", "avx512vnni", "avxvnni") if f in flags]
    listed = f"features {', '.join(shown) or 'none of avx2, avx512f, avx512vnni'}"
    if not features:
        listed = "that CPU's default features (NUMBA_CPU_FEATURES empty)"
    return (
        f"numba compiles for CPU {name!r} with {listed}, which runs the paths "
        f"{', '.join(supported_paths())}"
    )


@functools.cache
def screen_path() -> str:
    """The path the screen runs: ``ALSRESEARCH_SCREEN`` (one of :data:`PATHS`) when set, else
    the first of :func:`supported_paths` (``ALSRESEARCH_NO_VNNI=1``, the older switch, skips
    ``vnni``). Raises ``ValueError`` for an unknown value and ``RuntimeError`` for a path the
    compile target cannot run. Read once; ``screen_path.cache_clear()`` reads it again."""
    forced = os.environ.get(ENV, "").strip().lower()
    supported = supported_paths()
    if not forced:
        if os.environ.get("ALSRESEARCH_NO_VNNI"):
            supported = tuple(p for p in supported if p != "vnni")
        return supported[0]
    if forced not in PATHS:
        raise ValueError(
            f"{ENV}={os.environ[ENV]!r} is not a screen path: use one of {', '.join(PATHS)}, or "
            f"leave it unset for the best the CPU runs ({_describe_target()})"
        )
    if forced not in supported:
        raise RuntimeError(f"{ENV}={forced}, but {_describe_target()}")
    return forced


class I32x16(types.Type):
    """``<16 x i32>``: 16 int32 lanes in one 512-bit register (two 256-bit ones on AVX2)."""

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


def _call(builder, name, result, args):
    fnty = ir.FunctionType(result, [a.type for a in args])
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), args)


def _lanes(builder, vector, start, count):
    """Elements ``start .. start + count - 1`` of ``vector``."""
    indices = ir.Constant(ir.VectorType(_I32, count), list(range(start, start + count)))
    return builder.shuffle_vector(vector, vector, indices)


def _dpbusd(builder, acc, unsigned, signed):
    """acc + per lane the sum of 4 products (unsigned byte x signed byte), VNNI's way."""
    return _call(builder, "llvm.x86.avx512.vpdpbusd.512", _VI32, [acc, unsigned, signed])


def _dpbusd_portable(builder, acc, unsigned, signed):
    """The same as :func:`_dpbusd` in plain IR: widen, multiply, add."""
    wide = ir.VectorType(_I32, 64)
    a = builder.zext(builder.bitcast(unsigned, _VI8), wide)
    b = builder.sext(builder.bitcast(signed, _VI8), wide)
    products = builder.mul(a, b)
    for d in range(4):
        lanes = ir.Constant(ir.VectorType(_I32, 16), [4 * lane + d for lane in range(16)])
        acc = builder.add(acc, builder.shuffle_vector(products, products, lanes))
    return acc


def _dot_avx2(builder, acc, low, x_low, high, x_high):
    """acc + per lane the sum of the 8 products (unsigned byte x signed byte) of ``low`` with
    ``x_low`` and ``high`` with ``x_high``, AVX2's way, on each 256-bit half: ``vpmaddubsw``
    sums adjacent byte products into int16 (saturating), the two planes' int16 sums are added,
    and ``vpmaddwd`` with ones sums adjacent int16 into int32.

    No int16 saturates or wraps: the unsigned bytes are nibbles (0..15: masked with 0x0F) and
    the signed ones any int8 (the user codes ``p = rint(x_j / t)``, ``t >= max_j |x_j| / 127``,
    lie in -127..127), so a ``vpmaddubsw`` lane is at most ``2 * 15 * 128 = 3840`` in magnitude
    and the sum of the two planes' lanes at most 7680, far below 32767. Every sum is exact, as
    with ``vpdpbusd``, so the result is the same. (Unmasked bytes, up to 255, could saturate:
    ``2 * 255 * 127 > 32767``.)"""
    i16x16 = ir.VectorType(ir.IntType(16), 16)
    ones = ir.Constant(i16x16, [1] * 16)
    halves = []
    for start in (0, 32):
        pairs = [
            _call(
                builder,
                "llvm.x86.avx2.pmadd.ub.sw",
                i16x16,
                [_lanes(builder, builder.bitcast(v, _VI8), start, 32) for v in (codes, user)],
            )
            for codes, user in ((low, x_low), (high, x_high))
        ]
        sums = builder.add(pairs[0], pairs[1])
        halves.append(
            _call(builder, "llvm.x86.avx2.pmadd.wd", ir.VectorType(_I32, 8), [sums, ones])
        )
    whole = builder.shuffle_vector(halves[0], halves[1], ir.Constant(_VI32, list(range(16))))
    return builder.add(acc, whole)


#: pass as the ``mode`` argument of the intrinsics (and of the kernels calling them), one per
#: path: the mode lives in the argument's type (its integer width and signedness), so each is
#: compiled (and cached) once and selected by numba's ordinary type dispatch at no cost per
#: call.
VNNI = np.uint8(1)
AVX2 = np.int16(2)
PORTABLE = np.int8(0)
_MODES = {"vnni": VNNI, "avx2": AVX2, "portable": PORTABLE}


def mode_of(path: str):
    """The ``mode`` argument for a path of :data:`PATHS`."""
    try:
        return _MODES[path]
    except KeyError:
        raise ValueError(f"unknown screen path {path!r}: use one of {', '.join(PATHS)}") from None


def _path_of(mode) -> str:
    """The path a ``mode`` argument's numba type selects."""
    path = {types.uint8: "vnni", types.int16: "avx2", types.int8: "portable"}.get(mode)
    if path is None:
        raise errors.TypingError(f"mode must be _simd.VNNI, AVX2 or PORTABLE, got {mode}")
    return path


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
    path = _path_of(mode)
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
        x_low = _broadcast(builder, low, _VI32)
        x_high = _broadcast(builder, high, _VI32)
        if path == "avx2":
            return _dot_avx2(builder, acc, low_nibbles, x_low, high_nibbles, x_high)
        dpbusd = _dpbusd if path == "vnni" else _dpbusd_portable
        return dpbusd(builder, dpbusd(builder, acc, low_nibbles, x_low), high_nibbles, x_high)

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


# ---------------------------------------------------------------------- float32 vectors
_VF32_PROBE = """
define <16 x float> @probe(<16 x float> %acc, <16 x float> %a, <16 x float> %b) {
  %r = call <16 x float> @llvm.fmuladd.v16f32(<16 x float> %a, <16 x float> %b, <16 x float> %acc)
  ret <16 x float> %r
}
declare <16 x float> @llvm.fmuladd.v16f32(<16 x float>, <16 x float>, <16 x float>)
"""


@functools.cache
def wide_float_vectors() -> bool:
    """True when the compile target (:func:`target_cpu`) holds :data:`f32x16` in one register
    (AVX-512): the register-blocked kernels on it need 21 of them, which an AVX2 target (two
    256-bit halves each, 16 registers) would spill."""
    name, features = target_cpu()
    llvm_binding.initialize_native_target()
    llvm_binding.initialize_native_asmprinter()
    target = llvm_binding.Target.from_default_triple()
    machine = target.create_target_machine(cpu=name, features=features, opt=2)
    asm = machine.emit_assembly(llvm_binding.parse_assembly(_VF32_PROBE))
    return "zmm" in asm


class F32x16(types.Type):
    """``<16 x float>``: 16 float32 lanes (one 512-bit register on AVX-512)."""

    def __init__(self) -> None:
        super().__init__(name="f32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VF32)


def _check_float32(array) -> None:
    if not (isinstance(array, types.Array) and array.dtype == types.float32):
        raise errors.TypingError(f"expected a float32 array, got {array}")
    if array.layout != "C":
        raise errors.TypingError(f"expected a C-contiguous array, got {array}")


@intrinsic
def fzeros(typingctx):
    """16 float32 zeros."""

    def codegen(context, builder, signature, args):
        return ir.Constant(_VF32, None)

    return f32x16(), codegen


@intrinsic
def fload(typingctx, array, offset):
    """16 float32 of a C-contiguous float32 array from flat element ``offset`` (any
    alignment)."""
    _check_float32(array)

    def codegen(context, builder, signature, args):
        return _load(context, builder, signature.args[0], args[0], args[1], _VF32)

    return f32x16(array, types.intp), codegen


@intrinsic
def fstore(typingctx, array, offset, value):
    """Write 16 float32 into a C-contiguous float32 array at flat element ``offset``."""
    _check_float32(array)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        pointer = builder.bitcast(builder.gep(data, [args[1]]), _VF32.as_pointer())
        builder.store(args[2], pointer, align=1)
        return context.get_dummy_value()

    return types.none(array, types.intp, f32x16), codegen


@intrinsic
def fmuladd(typingctx, acc, scalar, vector):
    """``acc + scalar * vector`` per lane (fused where the CPU has FMA)."""
    if scalar != types.float32:
        raise errors.TypingError(f"scalar must be float32, got {scalar}")

    def codegen(context, builder, signature, args):
        acc_value, scalar_value, vector_value = args
        undef = ir.Constant(_VF32, None)
        one = builder.insert_element(undef, scalar_value, ir.Constant(_I32, 0))
        spread = builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, 16), None))
        return _call(builder, "llvm.fmuladd.v16f32", _VF32, [spread, vector_value, acc_value])

    return f32x16(f32x16, types.float32, f32x16), codegen
