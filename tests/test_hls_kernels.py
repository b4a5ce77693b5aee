"""The HLS kernel headers (runtime/hls/include/sparsecc), C-simulated with g++ against hls4ml's ap_types.

One driver (runtime/hls/tests_support/kernel_driver.cpp) is compiled once per session into a shared library;
each test runs one kernel on one small random sample through ctypes and compares it with an independent
numpy reference written here. Value types: ``f`` float; ``q`` ap_fixed<16,6> with an ap_fixed<16,6>
accumulator; ``w`` ap_fixed<16,6> with an ap_fixed<32,12> accumulator. Fixed-point inputs are drawn on the
2^-10 grid of ap_fixed<16,6>, so every error is the format's own rounding (AP_TRN: towards -inf).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sparsecc.compiler.errors import CompileError
from sparsecc.runtime.hls import formats
from sparsecc.runtime.hls.csim import (
    CSimulationError,
    SharedLibrary,
    ap_types_include_dir,
    compile_cpp,
    kernel_include_dir,
    read_binary,
    run_executable,
    write_binary,
)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the HLS C-simulation needs g++")

DRIVER = Path(__file__).resolve().parents[1] / "runtime" / "hls" / "tests_support" / "kernel_driver.cpp"
LSB = 2.0**-10  # resolution of ap_fixed<16,6>
F32_EPS = 2.0**-24  # unit roundoff of float32


@dataclasses.dataclass(frozen=True)
class ConvShape:
    """Mirror of conv_base<> in the driver."""

    c: int = 3
    h: int = 9
    w: int = 8
    o: int = 5
    kh: int = 3
    kw: int = 2
    stride: tuple[int, int] = (2, 1)
    pad: tuple[int, int, int, int] = (1, 0, 2, 1)  # top, left, bottom, right
    oh: int = 5
    ow: int = 8
    fan_in: int = 8  # ELL capacity
    pack_size: int = 3

    @property
    def cols(self) -> int:
        return self.c * self.kh * self.kw


@dataclasses.dataclass(frozen=True)
class LinearShape:
    """Mirror of linear_base<> in the driver."""

    i: int = 37
    o: int = 11
    fan_in: int = 6
    pack_size: int = 4

    @property
    def cols(self) -> int:
        return self.i


CONV = ConvShape()
LINEAR = LinearShape()
FORMATS = ("dense", "ell", "sparse", "comp", "comp_sparse")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> SharedLibrary:
    build = tmp_path_factory.mktemp("hls_kernel_driver")
    # the driver itself is C++17 test code (generic lambdas, if constexpr); the kernels it calls are C++14
    return SharedLibrary(compile_cpp([DRIVER], build, "kernel_driver", shared=True, extra_flags=["-std=c++17"]))


# --------------------------------------------------------------------------------------------------------------
# numpy references
# --------------------------------------------------------------------------------------------------------------


def conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray, shape: ConvShape = CONV) -> np.ndarray:
    """Zero-padded strided cross-correlation in float64: x (C,H,W), w (O,C,KH,KW) -> (O,OH,OW)."""
    top, left, bottom, right = shape.pad
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (shape.kh, shape.kw), axis=(1, 2))
    windows = windows[:, :: shape.stride[0], :: shape.stride[1]][:, : shape.oh, : shape.ow]
    return np.einsum("cpqij,ocij->opq", windows, w.astype(np.float64)) + b.astype(np.float64)[:, None, None]


def maxpool_ref(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(1, 2))[:, :: stride[0], :: stride[1]]
    return windows.max(axis=(3, 4))


def avgpool_ref(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(1, 2))[:, :: stride[0], :: stride[1]]
    return windows.astype(np.float64).sum(axis=(3, 4)) / (kernel[0] * kernel[1])


def kwta_ref(
    x: np.ndarray, k: int, boost: np.ndarray | None, *, local: bool = False, break_ties: bool = False
) -> np.ndarray:
    """nupic k-WTA of one (C, H, W) sample: boost per channel, global or local groups.

    ``boosted`` is computed in the dtype of ``x`` (float32 products round as in C++); float64 inputs hold
    fixed-point values whose products are exact.
    """
    boosted = x if boost is None else x * boost.astype(x.dtype)[:, None, None]
    channels = x.shape[0]
    groups = boosted.reshape(channels, -1).T if local else boosted.reshape(1, -1)
    keep = np.zeros(groups.shape, dtype=bool)
    for g, values in enumerate(groups):
        if break_ties:
            order = np.lexsort((np.arange(values.size), -values))  # value desc, then index asc
            keep[g, order[:k]] = True
        else:
            threshold = np.sort(values)[-k]
            keep[g] = ~(values < threshold)
    keep = keep.T.reshape(x.shape) if local else keep.reshape(x.shape)
    return np.where(keep, x, np.zeros_like(x))


def quantize(values: np.ndarray) -> np.ndarray:
    """Round to ap_fixed<16,6> the AP_TRN way (floor to the 2^-10 grid); values must be in range."""
    assert np.all(np.abs(values) < 31), "test values must stay inside ap_fixed<16,6>"
    return np.floor(np.asarray(values, dtype=np.float64) / LSB) * LSB


# --------------------------------------------------------------------------------------------------------------
# random problems
# --------------------------------------------------------------------------------------------------------------


def sparse_matrix(rng: np.random.Generator, rows: int, cols: int, nnz: list[int], values: Callable) -> np.ndarray:
    """A (rows, cols) float32 matrix whose row r has exactly nnz[r] non-zeros drawn by values(n)."""
    matrix = np.zeros((rows, cols), dtype=np.float32)
    for row, count in enumerate(nnz):
        columns = rng.choice(cols, size=count, replace=False)
        drawn = np.asarray(values(count), dtype=np.float32)
        drawn[drawn == 0] = 0.5
        matrix[row, columns] = drawn
    return matrix


def weight_arrays(fmt: str, matrix: np.ndarray, shape: ConvShape | LinearShape) -> list[np.ndarray]:
    """The driver's weight arguments for ``fmt``, padded to the driver's compile-time capacities."""
    if fmt == "dense":
        return [np.ascontiguousarray(matrix, dtype=np.float32)]
    if fmt == "ell":
        ell = formats.to_ell(matrix, fan_in=shape.fan_in)
        return [ell.idx, ell.val.astype(np.float32)]
    if fmt == "sparse":
        csc = formats.to_csc(matrix)
        capacity = shape.o * shape.cols
        row_idx = np.zeros(capacity, dtype=np.int32)
        val = np.zeros(capacity, dtype=np.float32)
        row_idx[: csc.nnz] = csc.row_idx
        val[: csc.nnz] = csc.val
        return [csc.col_ptr, row_idx, val]
    packed = formats.pack_complementary(matrix, shape.pack_size)
    groups = shape.o  # capacity: unused groups are empty (all slots unused)
    packed_val = np.zeros((groups, shape.cols), dtype=np.float32)
    packed_slot = np.zeros((groups, shape.cols), dtype=np.int32)
    group_rows = np.full((groups, shape.pack_size), shape.o, dtype=np.int32)
    packed_val[: packed.n_groups] = packed.packed_val
    packed_slot[: packed.n_groups] = packed.packed_slot
    group_rows[: packed.n_groups] = packed.group_rows
    return [packed_val, packed_slot, group_rows]


@dataclasses.dataclass
class LayerProblem:
    x: np.ndarray
    matrix: np.ndarray  # (O, COLS) float32
    bias: np.ndarray
    scale: np.ndarray
    shift: np.ndarray
    boost: np.ndarray


def layer_problem(
    rng: np.random.Generator, shape: ConvShape | LinearShape, nnz: list[int], kind: str, input_density: float
) -> LayerProblem:
    """Random inputs and weights. kind: 'normal' (float), 'grid' (on the ap_fixed<16,6> grid, small
    magnitudes so no sum overflows), 'dyadic' (small dyadic rationals: every float sum is exact)."""
    size = shape.c * shape.h * shape.w if isinstance(shape, ConvShape) else shape.i
    if kind == "normal":
        x = rng.standard_normal(size)
        values: Callable = rng.standard_normal
        bias = rng.standard_normal(shape.o)
    elif kind == "grid":
        x = quantize(rng.uniform(-1, 1, size))
        values = lambda n: quantize(rng.uniform(-0.5, 0.5, n))  # noqa: E731
        bias = quantize(rng.uniform(-1, 1, shape.o))
    else:
        x = rng.integers(-4, 5, size) / 4
        values = lambda n: rng.integers(-4, 5, n) / 8  # noqa: E731
        bias = rng.integers(-4, 5, shape.o) / 8
    x = np.where(rng.random(size) < input_density, x, 0.0).astype(np.float32)
    boost = quantize(np.exp(-1.5 * rng.random(shape.o))) if kind != "normal" else np.exp(-rng.random(shape.o))
    return LayerProblem(
        x=x,
        matrix=sparse_matrix(rng, shape.o, shape.cols, nnz, values),
        bias=bias.astype(np.float32),
        scale=(rng.integers(1, 5, shape.o) / 2).astype(np.float32),
        shift=(rng.integers(-4, 5, shape.o) / 8).astype(np.float32),
        boost=boost.astype(np.float32),
    )


def run_layer(
    driver: SharedLibrary, entry: str, fmt: str, problem: LayerProblem, shape: ConvShape | LinearShape, out_size: int
) -> np.ndarray:
    y = np.zeros(out_size, dtype=np.float32)
    weights = weight_arrays(fmt, problem.matrix, shape)
    driver.call(entry, problem.x, y, problem.bias, problem.scale, problem.shift, problem.boost, *weights)
    return y


CONV_NNZ = [8, 5, 8, 1, 0]  # per filter, of 18: padded ELL rows and an all-zero filter
LINEAR_NNZ = [6, 6, 2, 6, 0, 5, 6, 1, 6, 6, 3]  # per unit, of 37


def conv_problem_ref(problem: LayerProblem) -> tuple[np.ndarray, np.ndarray]:
    """Exact conv output and the per-output sum of |w * x| (for the float rounding bound)."""
    w = problem.matrix.reshape(CONV.o, CONV.c, CONV.kh, CONV.kw)
    x = problem.x.reshape(CONV.c, CONV.h, CONV.w)
    exact = conv_ref(x, w, problem.bias)
    magnitude = conv_ref(np.abs(x), np.abs(w), np.abs(problem.bias))
    return exact.reshape(-1), magnitude.reshape(-1)


def linear_problem_ref(problem: LayerProblem) -> tuple[np.ndarray, np.ndarray]:
    m = problem.matrix.astype(np.float64)
    exact = m @ problem.x + problem.bias
    magnitude = np.abs(m) @ np.abs(problem.x.astype(np.float64)) + np.abs(problem.bias)
    return exact, magnitude


# --------------------------------------------------------------------------------------------------------------
# conv and linear kernels
# --------------------------------------------------------------------------------------------------------------

LAYERS = {
    "conv": (CONV, CONV_NNZ, conv_problem_ref, CONV.o * CONV.oh * CONV.ow),
    "linear": (LINEAR, LINEAR_NNZ, linear_problem_ref, LINEAR.o),
}


def terms_per_output(layer: str) -> np.ndarray:
    """Non-zero weights per output (an upper bound on the rounded additions into it)."""
    per_unit = np.asarray(LAYERS[layer][1], dtype=np.float64)
    return np.repeat(per_unit, CONV.oh * CONV.ow) if layer == "conv" else per_unit


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_float_kernel_matches_reference_within_summation_rounding(driver, layer: str, fmt: str) -> None:
    shape, nnz, reference, out_size = LAYERS[layer]
    problem = layer_problem(np.random.default_rng(1), shape, nnz, "normal", input_density=0.4)
    y = run_layer(driver, f"{layer}_{fmt}_f", fmt, problem, shape, out_size)
    exact, magnitude = reference(problem)
    # recursive summation of n products and the bias in float32: |error| <= (n + 2) u sum|terms|
    bound = (terms_per_output(layer) + 2) * F32_EPS * magnitude * 1.01
    assert np.all(np.abs(y - exact) <= bound), np.max(np.abs(y - exact) - bound)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_fixed_kernel_with_narrow_accumulator_errs_below_one_lsb_per_product(driver, layer: str, fmt: str) -> None:
    shape, nnz, reference, out_size = LAYERS[layer]
    problem = layer_problem(np.random.default_rng(2), shape, nnz, "grid", input_density=0.5)
    y = run_layer(driver, f"{layer}_{fmt}_q", fmt, problem, shape, out_size)
    exact, _ = reference(problem)
    error = y - exact
    # each `acc += w * x` into ap_fixed<16,6> floors once: error in (-LSB, 0] per non-zero product
    print(f"{layer} {fmt} ap_fixed<16,6> accumulator: max |error| = {np.max(np.abs(error)):.6f}")
    assert np.all(error <= 0)
    assert np.all(error > -np.maximum(terms_per_output(layer), 1) * LSB)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_fixed_kernel_with_wide_accumulator_is_the_floored_exact_sum(driver, layer: str, fmt: str) -> None:
    shape, nnz, reference, out_size = LAYERS[layer]
    problem = layer_problem(np.random.default_rng(3), shape, nnz, "grid", input_density=0.5)
    y = run_layer(driver, f"{layer}_{fmt}_w", fmt, problem, shape, out_size)
    exact, _ = reference(problem)
    np.testing.assert_array_equal(y, quantize(exact))


def test_sparse_input_kernels_give_the_bias_on_an_all_zero_sample(driver) -> None:
    problem = layer_problem(np.random.default_rng(4), CONV, CONV_NNZ, "normal", input_density=0.0)
    for fmt in ("sparse", "comp_sparse"):
        y = run_layer(driver, f"conv_{fmt}_f", fmt, problem, CONV, CONV.o * CONV.oh * CONV.ow)
        np.testing.assert_array_equal(y, np.repeat(problem.bias, CONV.oh * CONV.ow))


# --------------------------------------------------------------------------------------------------------------
# fused chains: exact (dyadic float values; fixed point with a wide accumulator)
# --------------------------------------------------------------------------------------------------------------


def as_value(values: np.ndarray, family: str) -> np.ndarray:
    """The reference's value representation: float32 for 'f', exact float64 for fixed point."""
    return values.astype(np.float32) if family == "f" else values.astype(np.float64)


def epilogue_values(problem: LayerProblem, exact: np.ndarray, family: str, *, relu: bool = False) -> np.ndarray:
    """acc -> affine -> [relu] -> result type, per output channel (exact for dyadic data)."""
    channels = problem.scale.size
    pre = exact.reshape(channels, -1) * problem.scale[:, None] + problem.shift[:, None]
    if relu:
        pre = np.maximum(pre, 0)
    return as_value(pre if family == "f" else quantize(pre), family)


@pytest.mark.parametrize("family", ["f", "w"])
@pytest.mark.parametrize("fmt", ["ell", "sparse"])
def test_fused_conv_affine_global_kwta_maxpool(driver, family: str, fmt: str) -> None:
    problem = layer_problem(np.random.default_rng(5), CONV, CONV_NNZ, "dyadic", input_density=0.4)
    y = run_layer(driver, f"gsc_{fmt}_{family}", fmt, problem, CONV, CONV.o * 2 * 4)
    act = epilogue_values(problem, conv_problem_ref(problem)[0], family).reshape(CONV.o, CONV.oh, CONV.ow)
    winners = kwta_ref(act, 37, as_value(problem.boost, family))
    np.testing.assert_array_equal(y, maxpool_ref(winners, (2, 2), (2, 2)).reshape(-1))


@pytest.mark.parametrize("family", ["f", "w"])
def test_fused_dense_conv_affine_relu_maxpool(driver, family: str) -> None:
    problem = layer_problem(np.random.default_rng(6), CONV, [18] * CONV.o, "dyadic", input_density=0.9)
    y = run_layer(driver, f"vgg_dense_{family}", "dense", problem, CONV, CONV.o * 2 * 3)
    act = epilogue_values(problem, conv_problem_ref(problem)[0], family, relu=True)
    pooled = maxpool_ref(act.reshape(CONV.o, CONV.oh, CONV.ow), (3, 2), (2, 3))
    np.testing.assert_array_equal(y, pooled.reshape(-1))


@pytest.mark.parametrize("family", ["f", "w"])
def test_fused_complementary_sparse_conv_with_local_kwta_breaking_ties(driver, family: str) -> None:
    problem = layer_problem(np.random.default_rng(7), CONV, CONV_NNZ, "dyadic", input_density=0.5)
    y = run_layer(driver, f"local_comp_sparse_{family}", "comp_sparse", problem, CONV, CONV.o * CONV.oh * CONV.ow)
    exact = as_value(conv_problem_ref(problem)[0], family)  # no affine: the accumulator cast as is
    act = (exact if family == "f" else as_value(quantize(exact), family)).reshape(CONV.o, CONV.oh, CONV.ow)
    ref = kwta_ref(act, 2, as_value(problem.boost, family), local=True, break_ties=True)
    np.testing.assert_array_equal(y, ref.reshape(-1))


@pytest.mark.parametrize("family", ["f", "w"])
@pytest.mark.parametrize("fmt", ["sparse", "comp"])
def test_fused_linear_affine_kwta_breaking_ties(driver, family: str, fmt: str) -> None:
    problem = layer_problem(np.random.default_rng(8), LINEAR, LINEAR_NNZ, "dyadic", input_density=0.3)
    y = run_layer(driver, f"lkwta_{fmt}_{family}", fmt, problem, LINEAR, LINEAR.o)
    act = epilogue_values(problem, linear_problem_ref(problem)[0], family).reshape(LINEAR.o, 1, 1)
    ref = kwta_ref(act, 3, as_value(problem.boost, family), break_ties=True)
    assert np.count_nonzero(y) <= 3
    np.testing.assert_array_equal(y, ref.reshape(-1))


@pytest.mark.parametrize("family", ["f", "w"])
def test_fused_linear_relu(driver, family: str) -> None:
    problem = layer_problem(np.random.default_rng(9), LINEAR, LINEAR_NNZ, "dyadic", input_density=0.8)
    y = run_layer(driver, f"lrelu_ell_{family}", "ell", problem, LINEAR, LINEAR.o)
    exact = np.maximum(linear_problem_ref(problem)[0], 0)
    np.testing.assert_array_equal(y, exact if family == "f" else quantize(exact))


GSC1 = ConvShape(c=1, h=32, w=32, o=64, kh=5, kw=5, stride=(1, 1), pad=(0, 0, 0, 0), oh=28, ow=28)
GSC2 = ConvShape(c=64, h=14, w=14, o=64, kh=5, kw=5, stride=(1, 1), pad=(0, 0, 0, 0), oh=10, ow=10)


def test_gsc_sparse_cnn_first_two_layers_at_full_size(driver) -> None:
    """ELL conv 1->64 (12 of 25) + BN + k-WTA(4767 of 50176) + pool, then sparse-sparse conv 64->64
    (320 of 1600) + BN + k-WTA(800 of 6400) + pool; dyadic values keep every float sum exact."""
    rng = np.random.default_rng(21)
    dyadic = lambda n: rng.integers(-4, 5, n) / 8  # noqa: E731
    x = (rng.integers(-4, 5, (1, 32, 32)) / 4).astype(np.float32)
    layers = []
    for shape, fan_in, k in ((GSC1, 12, 4767), (GSC2, 320, 800)):
        matrix = sparse_matrix(rng, shape.o, shape.cols, [fan_in] * shape.o, dyadic)
        epilogue = [
            (rng.integers(-4, 5, 64) / 8).astype(np.float32),  # bias
            (rng.integers(1, 5, 64) / 2).astype(np.float32),  # BN scale
            (rng.integers(-4, 5, 64) / 8).astype(np.float32),  # BN shift
            boost_factors(rng, 64),
        ]
        layers.append((shape, matrix, epilogue, k))
    ell1 = formats.to_ell(layers[0][1], fan_in=12)
    csc2 = formats.to_csc(layers[1][1])
    assert csc2.nnz == 64 * 320
    y1, y2 = np.zeros(64 * 14 * 14, np.float32), np.zeros(64 * 5 * 5, np.float32)
    args = [x, y1, y2, ell1.idx, ell1.val, *layers[0][2], csc2.col_ptr, csc2.row_idx, csc2.val, *layers[1][2]]
    driver.call("gsc_two_layers_f", *args)

    sample = x
    for (shape, matrix, (bias, scale, shift, boost), k), actual in zip(layers, (y1, y2), strict=True):
        conv = conv_ref(sample, matrix.reshape(shape.o, shape.c, shape.kh, shape.kw), bias, shape)
        act = (conv * scale[:, None, None] + shift[:, None, None]).astype(np.float32)
        sample = maxpool_ref(kwta_ref(act, k, boost), (2, 2), (2, 2))
        np.testing.assert_array_equal(actual, sample.reshape(-1))
    assert np.count_nonzero(y1) < 0.3 * y1.size  # the second layer really ran on sparse activations


# --------------------------------------------------------------------------------------------------------------
# k-WTA unit
# --------------------------------------------------------------------------------------------------------------


def run_kwta(driver: SharedLibrary, entry: str, x: np.ndarray, boost: np.ndarray) -> np.ndarray:
    y = np.full(x.size, np.nan, dtype=np.float32)
    driver.call(entry, np.ascontiguousarray(x, dtype=np.float32), y, np.ascontiguousarray(boost, dtype=np.float32))
    return y.reshape(x.shape)


def assert_bitwise_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal including the sign of zero (a winning -0.0 stays -0.0; losers are +0.0)."""
    np.testing.assert_array_equal(
        actual.astype(np.float32).view(np.uint32), expected.astype(np.float32).view(np.uint32)
    )


def boost_factors(rng: np.random.Generator, channels: int) -> np.ndarray:
    """exp(-boost_strength * duty_cycle) in float32, as nupic computes them."""
    return np.exp(-1.5 * rng.random(channels).astype(np.float32)).astype(np.float32)


def tie_heavy(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in {-2, -1, -0.0, +0.0, 1, 2}: many exact ties, both zeros."""
    values = np.array([-2, -1, -0.0, 0.0, 1, 2], dtype=np.float32)
    return values[rng.integers(0, values.size, shape)]


@pytest.mark.parametrize("entry", ["kwta_global_f", "kwta_global_r1_f", "kwta_global_r8_f", "kwta_global_r5_f"])
def test_kwta_global_with_channel_boost_is_exact_for_any_radix(driver, entry: str) -> None:
    rng = np.random.default_rng(10)
    for _ in range(5):
        x = rng.standard_normal((4, 3, 5)).astype(np.float32)
        boost = boost_factors(rng, 4)
        assert_bitwise_equal(run_kwta(driver, entry, x, boost), kwta_ref(x, 9, boost))


@pytest.mark.parametrize("entry", ["kwta_global_f", "kwta_global_r1_f"])
def test_kwta_keeps_every_value_tied_at_the_threshold(driver, entry: str) -> None:
    rng = np.random.default_rng(11)
    x = tie_heavy(rng, (4, 3, 5))
    boost = np.array([1.0, 0.5, 1.0, 2.0], dtype=np.float32)  # exact products: ties survive boosting
    boosted = (x * boost[:, None, None]).reshape(-1)
    assert np.count_nonzero(boosted >= np.sort(boosted)[-9]) > 9  # the input really ties at the threshold
    assert_bitwise_equal(run_kwta(driver, entry, x, boost), kwta_ref(x, 9, boost))


@pytest.mark.parametrize("entry", ["kwta_global_break_f", "kwta_global_break_r3_f"])
def test_kwta_break_ties_keeps_exactly_k_lowest_index_first(driver, entry: str) -> None:
    rng = np.random.default_rng(12)
    for _ in range(5):
        x = tie_heavy(rng, (4, 3, 5))
        boost = np.array([1.0, 0.5, 1.0, 2.0], dtype=np.float32)
        assert_bitwise_equal(run_kwta(driver, entry, x, boost), kwta_ref(x, 9, boost, break_ties=True))


def test_kwta_threshold_at_zero_treats_minus_zero_as_zero(driver) -> None:
    # 3 positives, then +-0.0 (the k-th largest is zero), then negatives: every zero ties at the threshold
    x = np.array([-0.0, 3.0, 0.0, -1.0, -0.0, 2.0, -5.0, 0.0] + [-1.0] * 42, dtype=np.float32)
    x[10], x[20], x[30] = 1.0, -0.0, 0.0  # 3 positives, 6 zeros: k = 7 needs 4 of the zeros
    kept = run_kwta(driver, "kwta_1d_f", x, np.ones(50, dtype=np.float32))
    assert_bitwise_equal(kept, kwta_ref(x.reshape(50, 1, 1), 7, None).reshape(-1))
    assert np.signbit(kept[[0, 4, 20]]).all()  # winning -0.0 keeps its sign
    broken = run_kwta(driver, "kwta_1d_break_f", x, np.ones(50, dtype=np.float32))
    assert_bitwise_equal(broken, kwta_ref(x.reshape(50, 1, 1), 7, None, break_ties=True).reshape(-1))
    assert not np.signbit(broken[[20]]).any()  # the zeros at 20 and 30 lose: lower indices win ties


def test_kwta_winners_keep_negative_values(driver) -> None:
    rng = np.random.default_rng(13)
    x = -np.abs(rng.standard_normal(50)).astype(np.float32) - 0.1
    y = run_kwta(driver, "kwta_1d_f", x, np.ones(50, dtype=np.float32))
    expected = kwta_ref(x.reshape(50, 1, 1), 7, None).reshape(-1)
    assert np.count_nonzero(y) == 7 and np.all(y[y != 0] < 0)
    assert_bitwise_equal(y, expected)


@pytest.mark.parametrize("break_ties", [False, True])
def test_kwta_local_selects_over_channels_at_each_pixel(driver, break_ties: bool) -> None:
    rng = np.random.default_rng(14)
    entry = "kwta_local_break_f" if break_ties else "kwta_local_f"
    for sample in range(4):
        x = tie_heavy(rng, (6, 2, 3)) if sample % 2 else rng.standard_normal((6, 2, 3)).astype(np.float32)
        boost = np.array([1, 0.5, 2, 1, 1, 0.25], dtype=np.float32) if sample % 2 else boost_factors(rng, 6)
        expected = kwta_ref(x, 2, boost, local=True, break_ties=break_ties)
        assert_bitwise_equal(run_kwta(driver, entry, x, boost), expected)


def test_kwta_extreme_k(driver) -> None:
    rng = np.random.default_rng(15)
    x = tie_heavy(rng, (50,))
    x[rng.integers(0, 50)] = 7.0  # a unique maximum
    ones = np.ones(50, dtype=np.float32)
    assert_bitwise_equal(run_kwta(driver, "kwta_1d_k1_f", x, ones), np.where(x == 7.0, x, 0))
    assert_bitwise_equal(run_kwta(driver, "kwta_1d_kall_f", x, ones), x)


@pytest.mark.parametrize(
    ("entry", "shape", "k", "local", "break_ties", "boosted"),
    [
        ("kwta_global_q", (4, 3, 5), 9, False, False, True),
        ("kwta_global_break_q", (4, 3, 5), 9, False, True, True),
        ("kwta_local_q", (6, 2, 3), 2, True, False, True),
        ("kwta_1d_q", (50, 1, 1), 7, False, False, False),
    ],
)
def test_kwta_fixed_point_is_exact(driver, entry: str, shape, k: int, local: bool, break_ties: bool, boosted: bool):
    rng = np.random.default_rng(16)
    for _ in range(3):
        x = quantize(rng.integers(-8, 9, shape) / 4 + rng.choice([0, LSB], shape))  # ties and near-ties
        boost = quantize(np.exp(-1.5 * rng.random(shape[0])))
        y = run_kwta(driver, entry, x.astype(np.float32), boost.astype(np.float32))
        expected = kwta_ref(x, k, boost if boosted else None, local=local, break_ties=break_ties)
        np.testing.assert_array_equal(y, expected)


# --------------------------------------------------------------------------------------------------------------
# pooling and element-wise ops
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["f", "w"])
def test_pooling(driver, family: str) -> None:
    rng = np.random.default_rng(17)
    x = quantize(rng.uniform(-4, 4, (3, 7, 9))).astype(np.float32)
    mx, avg, gap = np.zeros(27, np.float32), np.zeros(36, np.float32), np.zeros(3, np.float32)
    driver.call(f"pools_{family}", x, mx, avg, gap)
    np.testing.assert_array_equal(mx, maxpool_ref(x, (3, 2), (2, 3)).reshape(-1))
    avg_ref = avgpool_ref(x, (2, 2), (2, 2)).reshape(-1)
    gap_ref = x.astype(np.float64).mean(axis=(1, 2))
    if family == "f":
        np.testing.assert_allclose(avg, avg_ref, rtol=0, atol=4 * F32_EPS * 4)
        np.testing.assert_allclose(gap, gap_ref, rtol=0, atol=64 * F32_EPS * 4)
    else:
        np.testing.assert_array_equal(avg, quantize(avg_ref))  # quarter sums of grid values are exact
        assert np.all(np.abs(gap - gap_ref) <= LSB)  # one rounding of the quotient to ap_fixed<16,6>


@pytest.mark.parametrize("family", ["f", "w"])
def test_relu_affine_concat_flatten(driver, family: str) -> None:
    rng = np.random.default_rng(18)
    x = quantize(rng.uniform(-4, 4, (3, 7, 9))).astype(np.float32)
    other = quantize(rng.uniform(-4, 4, (2, 7, 9))).astype(np.float32)
    scale = quantize(rng.uniform(0.1, 2, 3)).astype(np.float32)
    shift = quantize(rng.uniform(-1, 1, 3)).astype(np.float32)
    relu, affine, flat = (np.zeros(x.size, np.float32) for _ in range(3))
    concat = np.zeros(x.size + other.size, np.float32)
    driver.call(f"elementwise_{family}", x, scale, shift, other, relu, affine, concat, flat)
    np.testing.assert_array_equal(relu, np.maximum(x, 0).reshape(-1))
    np.testing.assert_array_equal(concat, np.concatenate([x, other]).reshape(-1))
    np.testing.assert_array_equal(flat, x.reshape(-1))
    if family == "f":
        expected = (x * scale[:, None, None] + shift[:, None, None]).astype(np.float32)  # float32 ops, as in C++
    else:
        expected = quantize(x.astype(np.float64) * scale[:, None, None] + shift[:, None, None])
    np.testing.assert_array_equal(affine, expected.reshape(-1))


@pytest.mark.parametrize("family", ["f", "q"])
def test_softmax_and_log_softmax(driver, family: str) -> None:
    x = quantize(np.random.default_rng(19).uniform(-6, 6, 12)).astype(np.float32)
    log_sm, sm = np.zeros(12, np.float32), np.zeros(12, np.float32)
    driver.call(f"softmax_{family}", x, log_sm, sm)
    shifted = x.astype(np.float64) - x.max()
    log_ref = shifted - np.log(np.exp(shifted).sum())
    tolerance = 1e-5 if family == "f" else LSB + 1e-5  # q: one floor to the 2^-10 grid
    np.testing.assert_allclose(log_sm, log_ref, rtol=0, atol=tolerance)
    np.testing.assert_allclose(sm, np.exp(log_ref), rtol=0, atol=tolerance)


# --------------------------------------------------------------------------------------------------------------
# formats and the C-simulation bridge
# --------------------------------------------------------------------------------------------------------------


def test_complementary_packing_overlays_disjoint_units() -> None:
    rng = np.random.default_rng(20)
    matrix = sparse_matrix(rng, 12, 40, [4] * 11 + [0], rng.standard_normal)
    packed = formats.pack_complementary(matrix, pack_size=5)
    assert packed.n_groups < 12  # something was packed
    rebuilt = np.zeros_like(matrix)
    seen = []
    for g in range(packed.n_groups):
        for col in np.flatnonzero(packed.packed_val[g]):
            rebuilt[packed.group_rows[g, packed.packed_slot[g, col]], col] = packed.packed_val[g, col]
        seen += [int(r) for r in packed.group_rows[g] if r < 12]
    assert sorted(seen) == list(range(12))
    np.testing.assert_array_equal(rebuilt, matrix)


def test_include_dirs_come_from_the_installed_packages() -> None:
    assert (ap_types_include_dir() / "ap_fixed.h").is_file()
    assert (kernel_include_dir() / "sparsecc" / "sparsecc.h").is_file()


def test_compiler_errors_surface_as_compile_error(tmp_path: Path) -> None:
    source = tmp_path / "broken.cpp"
    source.write_text("#include <sparsecc/sparsecc.h>\nint main() { return undeclared_thing; }\n")
    with pytest.raises(CompileError, match="undeclared_thing"):
        compile_cpp([source], tmp_path / "build", "broken", shared=False)


def test_builds_are_cached_by_content_of_every_included_file(tmp_path: Path) -> None:
    header = tmp_path / "value.h"
    source = tmp_path / "main.cpp"
    header.write_text("#define VALUE 1\n")
    source.write_text('#include "value.h"\nextern "C" int value() { return VALUE; }\n')
    first = compile_cpp([source], tmp_path / "build", "lib", shared=True)
    assert compile_cpp([source], tmp_path / "build", "lib", shared=True) == first
    header.write_text("#define VALUE 2\n")
    second = compile_cpp([source], tmp_path / "build", "lib", shared=True)
    assert second != first and not first.exists()  # rebuilt; the stale build is gone


def test_executable_testbench_exchanges_binary_files(tmp_path: Path) -> None:
    source = tmp_path / "testbench.cpp"
    source.write_text(
        """#include <sparsecc/sparsecc.h>
#include <cstdio>
struct kwta8 : sparsecc::kwta_defaults { static constexpr unsigned channels = 8, k = 3; };
int main(int argc, char** argv) {
    float x[8], y[8];
    std::FILE* in = argc == 3 ? std::fopen(argv[1], "rb") : nullptr;
    if (!in || std::fread(x, sizeof(float), 8, in) != 8) { std::fprintf(stderr, "cannot read input\\n"); return 3; }
    std::fclose(in);
    sparsecc::kwta<kwta8>(x, y, sparsecc::no_values<float, 8>::values);
    std::FILE* out = std::fopen(argv[2], "wb");
    std::fwrite(y, sizeof(float), 8, out);
    std::fclose(out);
    return 0;
}
"""
    )
    executable = compile_cpp([source], tmp_path / "build", "testbench", shared=False)
    x = np.array([0.5, -1, 3, 2, 2, -4, 0, 1], dtype=np.float32)
    write_binary(tmp_path / "x.bin", x)
    run_executable(executable, [str(tmp_path / "x.bin"), str(tmp_path / "y.bin")], stack_mib=64)
    np.testing.assert_array_equal(read_binary(tmp_path / "y.bin", (8,)), [0, 0, 3, 2, 2, 0, 0, 0])
    with pytest.raises(CSimulationError, match="status 3"):
        run_executable(executable, [str(tmp_path / "missing.bin"), str(tmp_path / "y.bin")])


def test_shared_library_call_can_run_on_a_large_stack(tmp_path: Path) -> None:
    source = tmp_path / "big_stack.cpp"
    source.write_text(
        """extern "C" void fill(float* out, int n) {
    volatile float buffer[8 * 1024 * 1024];  // 32 MiB of locals: more than a default 8 MiB stack
    for (int i = 0; i < 8 * 1024 * 1024; i++) buffer[i] = float(i % n);
    out[0] = buffer[8 * 1024 * 1024 - 1];
}
"""
    )
    library = SharedLibrary(compile_cpp([source], tmp_path / "build", "big_stack", shared=True))
    out = np.zeros(1, dtype=np.float32)
    library.call("fill", out, 1000, stack_mib=64)
    assert out[0] == (8 * 1024 * 1024 - 1) % 1000
    with pytest.raises(CSimulationError, match="no entry point"):
        library.call("missing", out)
