"""The cuda kernels are deterministic by design, and their generators refuse what they were not written for.

Without a GPU: the CPU emulation runs every phase's threads (and the blocks) in seeded shuffled orders and the
outputs must be bitwise identical across orders (a tiny racy kernel shows that the emulation does see an order
dependence); the device source holds no float atomic; each unchecked-assumption case raises a CompileError.
With a GPU (``-m gpu``): 50 runs of the compiled GSC sparse CNN are bitwise identical.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tvm
from tvm.script import tirx as T

from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.interpreter import conv2d, pool2d
from sparsecc.compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry
from sparsecc.compiler.ir.ops.sparse import MaxPoolStage
from sparsecc.targets.cuda import build_kernel, device_module
from sparsecc.targets.cuda import kernels as K
from sparsecc.targets.kernel import Kernel

SEEDS = (1, 2)


def _run(kernel: Kernel, x: np.ndarray) -> np.ndarray:
    lib = tvm.compile(tvm.IRModule({"main": kernel.prim_func.with_attr("global_symbol", "main")}),
                      target=tvm.target.Target({"kind": "llvm"}))
    y = tvm.runtime.tensor(np.zeros((x.shape[0], *kernel.out_shape), np.float32))
    lib["main"](tvm.runtime.tensor(x), *(tvm.runtime.tensor(c) for c in kernel.constants), y)
    return y.numpy()


def _wide_range(rng: np.random.Generator, shape: tuple[int, ...], zeros: float) -> np.ndarray:
    """Values over eight decades (float sums then depend on their order), a fraction ``zeros`` of them 0."""
    x = rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 4, shape)
    x[rng.random(shape) < zeros] = 0
    return x.astype(np.float32)


def _sparse_weight(rng: np.random.Generator, shape: tuple[int, ...], density: float) -> np.ndarray:
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) >= density] = 0
    return w


def _conv_case():
    rng = np.random.default_rng(10)
    geometry = ConvGeometry((8, 12, 12), (24, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    weight, bias = _sparse_weight(rng, (24, 8, 3, 3), 0.5), rng.standard_normal(24).astype(np.float32)
    x = _wide_range(rng, (2, 8, 12, 12), 0.6)
    pool = MaxPoolStage((2, 2), (2, 2))
    expected = pool2d(conv2d(x, weight, bias, (1, 1), (1, 1, 1, 1), (1, 1), 1), (2, 2), (2, 2), (0, 0, 0, 0),
                      False, "max")
    epilogue = Epilogue(4, (pool,))
    return (lambda flavour: K.conv2d_scatter(geometry, weight, bias, epilogue, flavour=flavour)), x, expected


def _linear_case():
    rng = np.random.default_rng(11)
    weight, bias = _sparse_weight(rng, (600, 300), 0.2), rng.standard_normal(600).astype(np.float32)
    x = _wide_range(rng, (3, 300), 0.7)
    expected = (x.astype(np.float64) @ weight.T.astype(np.float64) + bias).astype(np.float32)
    return (lambda flavour: K.linear_scatter(LinearGeometry(300, 600), weight, bias, flavour=flavour)), x, expected


@pytest.mark.parametrize("case", [_conv_case, _linear_case], ids=["conv2d_scatter", "linear_scatter"])
def test_scatter_kernels_are_bitwise_identical_in_any_thread_order(case) -> None:
    make, x, expected = case()
    kernel = make(K.CPU)
    assert kernel is not None  # the scatter kernel applies (no fallback to the gather)
    in_order = _run(kernel, x)
    np.testing.assert_allclose(in_order, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))
    for seed in SEEDS:
        assert np.array_equal(_run(make(K.Flavour.emulation(seed)), x), in_order), f"seed {seed}"


@pytest.mark.parametrize("ties", ["keep", "break"])
def test_kwta_kernels_are_bitwise_identical_in_any_thread_order(ties: str) -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 8, 8, 8)).astype(np.float32)
    x[0, 0, :4] = 0.75  # 32 tied units
    in_order = _run(K.kwta_global((8, 8, 8), Kwta.select(100, 4, ties=ties), flavour=K.CPU), x)
    shuffled = _run(K.kwta_global((8, 8, 8), Kwta.select(100, 4, ties=ties), flavour=K.Flavour.emulation(SEEDS[0])), x)
    assert np.array_equal(shuffled, in_order)


def _racy_sum(flavour: K.Flavour) -> tvm.tirx.PrimFunc:
    """Every thread adds its input into one float in the same phase: what a float atomic does on a GPU."""
    F = flavour

    @T.prim_func
    def racy(x: T.Buffer((64,), "float32"), y: T.Buffer((1,), "float32")):
        for _b in F.blocks(1):
            for tx_ in F.threads(64):
                tx = T.meta_var(F.tid(tx_, 64))
                y[0] = y[0] + x[tx]

    return racy


def test_shuffled_emulation_exposes_an_order_dependent_float_sum() -> None:
    x = _wide_range(np.random.default_rng(13), (64,), 0.0)
    results = set()
    for seed in (None, *SEEDS):
        lib = tvm.compile(tvm.IRModule({"main": _racy_sum(K.Flavour.emulation(seed)).with_attr(
            "global_symbol", "main")}), target=tvm.target.Target({"kind": "llvm"}))
        y = tvm.runtime.tensor(np.zeros(1, np.float32))
        lib["main"](tvm.runtime.tensor(x), y)
        results.add(y.numpy().tobytes())
    assert len(results) > 1


def test_device_source_has_no_float_atomics() -> None:
    rng = np.random.default_rng(14)
    geometry = ConvGeometry((16, 14, 14), (32, 16, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    kernels = [K.conv2d_scatter(geometry, _sparse_weight(rng, (32, 16, 5, 5), 0.2), None),
               K.linear_scatter(LinearGeometry(1600, 1000), _sparse_weight(rng, (1000, 1600), 0.1), None),
               K.kwta_global((64, 10, 10), Kwta.select(800, 4, ties="break"))]
    for kernel in kernels:
        assert kernel is not None
        source = device_module(build_kernel(kernel.prim_func)).inspect_source("cuda")
        targets = re.findall(r"tvm_builtin_cuda_atomic_add\(\(&\((\w+)\[", source) + re.findall(
            r"\batomicAdd\(\(&\((\w+)\[", source)
        assert set(targets) <= {"hist_ptr"}, (kernel.name, targets)  # the k-WTA's int32 histogram only
        assert "atomicCAS" not in source


# -- assumptions the generators check ----------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [16, 384, 2048])
def test_block_size_must_be_a_power_of_two_for_the_scans(threads: int) -> None:
    with pytest.raises(CompileError, match=f"a block of {threads} threads.*power of two"):
        K.kwta_global((300,), Kwta.select(30, 2, ties="break"), threads=threads)
    with pytest.raises(CompileError, match=f"a block of {threads} threads"):
        K.linear_scatter(LinearGeometry(8, 8), np.eye(8, dtype=np.float32), None, threads=threads)


@pytest.mark.parametrize("lanes", [3, 48, 512])
def test_lanes_must_divide_the_block(lanes: int) -> None:
    geometry = ConvGeometry((2, 6, 6), (4, 2, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(CompileError, match=f"{lanes} lanes per active input must be a power of two dividing"):
        K.conv2d_scatter(geometry, np.ones((4, 2, 3, 3), np.float32), None, lanes=lanes)
    with pytest.raises(CompileError, match="lanes per active input"):
        K.linear_scatter(LinearGeometry(8, 8), np.eye(8, dtype=np.float32), None, lanes=lanes)


def test_float_atomics_are_refused_by_the_generator() -> None:
    F = K.GPU
    with pytest.raises(Exception, match="float atomics are not deterministic"):  # TVMScript wraps it

        @T.prim_func
        def _kernel(y: T.Buffer((4,), "float32")):
            for _b in F.blocks(1):
                for _t in F.threads(32):
                    F.atomic_add(y, 0, y[1])


@pytest.mark.parametrize("threads", [32, 64])
def test_histogram_is_cleared_whatever_the_block_size(threads: int) -> None:
    # with fewer threads than the 256 bins, a partial clear leaves counts of the previous radix pass behind
    x = np.random.default_rng(15).standard_normal((2, 500)).astype(np.float32)
    y = _run(K.kwta_global((500,), Kwta.select(37, 2), threads=threads, flavour=K.CPU), x)
    threshold = np.sort(x, axis=1)[:, -37][:, None]
    assert np.array_equal(y, np.where(x < threshold, np.float32(0), x))


def test_packed_tap_codes_refuse_oversized_filters() -> None:
    geometry = ConvGeometry((1, 270, 1), (1, 1, 260, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(CompileError, match="too large for the packed tap codes"):
        K.conv2d_scatter(geometry, np.ones((1, 1, 260, 1), np.float32), None)


# -- on a GPU ----------------------------------------------------------------------------------------------------
def _gpu_present() -> bool:
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # a broken CUDA runtime counts as no GPU
        return False


@pytest.mark.skipif(_gpu_present(), reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_exits_2_with_one_line(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "sparsecc.benchmarks.gpu_check", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gpu-check: no GPU: ")
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_present() or shutil.which("nvcc") is None, reason="no CUDA GPU (or nvcc) here")
def test_fifty_gpu_runs_are_bitwise_identical(zoo_onnx) -> None:
    import sparsecc

    model = sparsecc.compile(zoo_onnx("gsc_sparse_cnn"), target="cuda")
    x = np.random.default_rng(16).standard_normal((8, 1, 32, 32)).astype(np.float32)
    first = model.run(None, {"input": x})[0]
    for run in range(49):
        assert np.array_equal(model.run(None, {"input": x})[0], first), f"run {run + 2} differs"


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_present() or shutil.which("nvcc") is None, reason="no CUDA GPU (or nvcc) here")
def test_cuda_graph_build_gives_the_same_bits_on_gpu(zoo_onnx) -> None:
    import sparsecc

    x = np.random.default_rng(17).standard_normal((1, 1, 32, 32)).astype(np.float32)
    graph = sparsecc.compile(zoo_onnx("gsc_sparse_cnn"), target="cuda", batch=1, cuda_graph=True)
    plain = sparsecc.compile(zoo_onnx("gsc_sparse_cnn"), target="cuda", batch=1)
    expected = plain.run(None, {"input": x})[0]
    for _ in range(3):  # the first run captures the graph, the next ones replay it
        assert np.array_equal(graph.run(None, {"input": x})[0], expected)
