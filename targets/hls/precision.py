"""Numeric types of an HLS design: ``float`` or ``ap_fixed<W, I[, Q, O[, N]]>``, per model and per layer.

A :class:`Precision` is one C++ type. Fixed-point layers derive their accumulator type from their data
type (:func:`accumulator_for`): products of two ``F``-bit fractions are exact with ``2F`` fractional bits,
and 8 extra integer bits leave room for sums of up to 256 full-scale terms; the total is capped at 48 bits
(the DSP48 accumulator width).

Constants (weights, biases, batch-norm scale/shift, k-WTA boost factors) are quantised here, offline, to the
nearest representable value of their type, saturating at its range (:meth:`Precision.quantize`), and stored
as raw bits in the smallest standard signed integer (:meth:`Precision.storage_type`): the generated headers
hold ``sparsecc::word<T, int16_t>`` arrays, which C++ compilers treat as static data (an ap_fixed array
with initialisers is compiled element by element: minutes for a few thousand weights).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from sparsecc.compiler.errors import CompileError

QUANTIZATION_MODES = ("AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_RND_CONV", "AP_TRN",
                      "AP_TRN_ZERO")
OVERFLOW_MODES = ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM", "AP_WRAP", "AP_WRAP_SM")

#: Widest fixed-point type a constant may have (it is stored in an int64_t).
MAX_WIDTH = 64
#: Extra integer bits of a derived accumulator, and the cap on its width.
ACCUMULATOR_GUARD_BITS = 8
ACCUMULATOR_MAX_WIDTH = 48

_FIXED = re.compile(
    r"ap_fixed<\s*(?P<w>\d+)\s*,\s*(?P<i>-?\d+)\s*"
    r"(?:,\s*(?P<q>AP_\w+)\s*(?:,\s*(?P<o>AP_\w+)\s*(?:,\s*(?P<n>\d+)\s*)?)?)?>"
)


@dataclasses.dataclass(frozen=True)
class Precision:
    """``float`` (``width`` None) or ``ap_fixed<width, integer>`` (``ap_ufixed`` when not ``signed``) with
    optional modes."""

    width: int | None = None
    integer: int = 0
    quantization: str | None = None
    overflow: str | None = None
    saturation_bits: int | None = None
    signed: bool = True

    @property
    def is_float(self) -> bool:
        return self.width is None

    @property
    def fraction(self) -> int:
        """Fractional bits ``W - I`` (fixed point only)."""
        assert self.width is not None
        return self.width - self.integer

    @property
    def bits(self) -> int:
        """Storage bits of one value (32 for float)."""
        return 32 if self.width is None else self.width

    def ctype(self) -> str:
        """The C++ type."""
        if self.width is None:
            return "float"
        extra = [m for m in (self.quantization, self.overflow) if m]
        if self.saturation_bits is not None:
            extra.append(str(self.saturation_bits))
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{', '.join([str(self.width), str(self.integer), *extra])}>"

    def __str__(self) -> str:
        return self.ctype()

    def storage_type(self) -> str:
        """The C integer type holding the raw bits of one constant (fixed point only)."""
        assert self.width is not None
        needed = self.width if self.signed else self.width + 1  # raw bits of an ap_ufixed stay non-negative
        for bits in (8, 16, 32, 64):
            if needed <= bits:
                return f"int{bits}_t"
        raise CompileError(f"{self}: constants wider than {MAX_WIDTH} bits are not supported")

    def constant_ctype(self) -> str:
        """The element type of a constant array: ``float`` or ``sparsecc::word<T, intN_t>``."""
        if self.width is None:
            return "float"
        return f"sparsecc::word<{self.ctype()}, {self.storage_type()}>"

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float constants: float32 values. Fixed point: the raw two's-complement integers of the nearest
        representable values (ties away from zero), saturated to the type's range, as int64."""
        array = np.asarray(values, dtype=np.float64)
        if self.width is None:
            return array.astype(np.float32)
        scaled = np.ldexp(array, self.fraction)
        rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
        low, high = (-(2 ** (self.width - 1)), 2 ** (self.width - 1) - 1) if self.signed else (0, 2**self.width - 1)
        return np.clip(rounded, low, high).astype(np.int64)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """The values of raw integers from :meth:`quantize` (float32 values pass through)."""
        if self.width is None:
            return np.asarray(raw, dtype=np.float32)
        return np.ldexp(np.asarray(raw, dtype=np.float64), -self.fraction)

    def max_value(self) -> float:
        """The largest representable value (float: float32 max)."""
        if self.width is None:
            return float(np.finfo(np.float32).max)
        return float(np.ldexp(2.0 ** (self.width - (1 if self.signed else 0)) - 1, -self.fraction))


FLOAT = Precision()


def saturating(precision: Precision) -> bool:
    """Whether values beyond the range of a fixed-point type saturate (AP_SAT*) instead of wrapping."""
    return bool(precision.overflow and precision.overflow.startswith("AP_SAT"))


def boost_precision(constants: Precision, factors: np.ndarray | None) -> Precision:
    """The type of the k-WTA boost factors: ``exp(-b * duty)`` lies in (0, 1], so fixed-point designs store
    them as ``ap_ufixed<W, 1>`` (W the constants' width, round to nearest): 2^(I-1) times finer than the
    constants' ``ap_fixed<W, I>``. Factors outside [0, 2) keep the constants' type; float stays float."""
    if constants.is_float or factors is None:
        return constants
    values = np.asarray(factors, dtype=np.float64)
    if values.size and (values.min() < 0 or values.max() >= 2):
        return constants
    return Precision(constants.bits, 1, "AP_RND", None, None, signed=False)


def parse_precision(text: str, where: str = "precision") -> Precision:
    """``float`` or ``ap_fixed<W, I[, Q, O[, N]]>`` (W <= 64); raises CompileError naming ``where``."""
    spec = text.strip()
    if spec == "float":
        return FLOAT
    match = _FIXED.fullmatch(spec)
    if match is None:
        raise CompileError(f"{where}: '{text}' is not 'float' or 'ap_fixed<W,I>' (optionally "
                           "'ap_fixed<W,I,Q,O>' with Xilinx quantisation / overflow modes)")
    width, integer = int(match["w"]), int(match["i"])
    if not 2 <= width <= MAX_WIDTH:
        raise CompileError(f"{where}: '{text}': the width must be in [2, {MAX_WIDTH}]")
    if match["q"] and match["q"] not in QUANTIZATION_MODES:
        raise CompileError(f"{where}: '{text}': unknown quantisation mode (one of {', '.join(QUANTIZATION_MODES)})")
    if match["o"] and match["o"] not in OVERFLOW_MODES:
        raise CompileError(f"{where}: '{text}': unknown overflow mode (one of {', '.join(OVERFLOW_MODES)})")
    return Precision(width, integer, match["q"], match["o"], int(match["n"]) if match["n"] else None)


def accumulator_for(data: Precision) -> Precision:
    """The accumulator of a layer computing in ``data`` (see module docstring); float stays float."""
    if data.is_float:
        return FLOAT
    integer = data.integer + ACCUMULATOR_GUARD_BITS
    fraction = min(2 * data.fraction, ACCUMULATOR_MAX_WIDTH - integer)
    return Precision(max(integer + fraction, 2), integer)


def parse_layer_precisions(text: str) -> dict[str, Precision]:
    """``NAME:TYPE;NAME:TYPE`` (NAME is a layer's result name in the IR) -> precision by name."""
    out: dict[str, Precision] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, spec = item.partition(":")
        if not sep or not name.strip():
            raise CompileError(f"layer_precision: bad entry '{item}' (expected NAME:TYPE, e.g. "
                               "'conv1:ap_fixed<18,8>')")
        out[name.strip()] = parse_precision(spec, f"layer_precision entry '{name.strip()}'")
    return out
