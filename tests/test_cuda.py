"""The cuda target: cross-compiled on any machine (nvcc, no GPU), run and checked where there is an NVIDIA GPU.

Without a GPU: every zoo model compiles to one library whose fat binary holds sm_80 and sm_90 SASS plus PTX;
the generated CUDA source and PTX contain sparsecc's sparse kernels; the kernels' logic is checked on the CPU
(the same TIR emitted as serial loops, see ``targets/cuda/kernels/``); loading and checking say in one line
that there is no GPU. With a GPU (``-m gpu``): ``sparsecc check`` passes for every zoo model at batch 1 and 8.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tvm
from support import ALL_MODELS, SPARSE_MODELS

import sparsecc
from sparsecc.compiler.errors import CompileError, DeviceUnavailableError
from sparsecc.compiler.interpreter import conv2d, pool2d
from sparsecc.compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry
from sparsecc.compiler.ir.ops.sparse import MaxPoolStage, ReluStage
from sparsecc.runtime import read_manifest
from sparsecc.targets.cuda import build_kernel, device_module
from sparsecc.targets.cuda import kernels as K
from sparsecc.targets.cuda.kernels.common import np_float_key
from sparsecc.targets.cuda.library import read_device_code, replace_device_code
from sparsecc.targets.cuda.lowering import KERNEL_FAMILIES, kernel_names
from sparsecc.targets.cuda.nvcc import FatbinEntry, fatbin_entries
from sparsecc.targets.kernel import Kernel

HAVE_NVCC = shutil.which("nvcc") is not None


def _gpu_present() -> bool:
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # a broken CUDA runtime counts as no GPU
        return False


HAVE_GPU = _gpu_present()
needs_nvcc = pytest.mark.skipif(not HAVE_NVCC, reason="the CUDA toolkit (nvcc) is not installed")
no_gpu_only = pytest.mark.skipif(HAVE_GPU, reason="this machine has a GPU")
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason="no CUDA GPU on this machine")

# kernels every sparse zoo model must contain (by family); the fused layers decide which
EXPECTED_KERNELS = {
    "gsc_sparse_cnn": {"conv2d_weight_sparse", "conv2d_sparse_sparse", "kwta_global", "linear_sparse_sparse",
                       "linear_act_sparse"},
    "gsc_super_sparse_cnn": {"conv2d_weight_sparse", "conv2d_sparse_sparse", "kwta_global", "linear_sparse_sparse"},
    "gsc_fpga_sparse_cnn": {"conv2d_weight_sparse", "conv2d_sparse_sparse", "kwta_global", "linear_sparse_sparse"},
    "cifar_vgg19_sparse": {"kwta_global"},
    "cifar_notsodensenet": {"kwta_local", "kwta_global", "conv2d_sparse_sparse"},
}


def by_model(names: list[str]) -> list:
    """``names`` as parameters, each in the xdist group of its model's CUDA build (built once, by one worker)."""
    return [pytest.param(name, marks=pytest.mark.xdist_group(f"cuda-{name}")) for name in names]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparsecc.driver.cli", *args], capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture(scope="session")
def cuda_artifact(zoo_onnx, tmp_path_factory):
    """``cuda_artifact(name)`` -> (compiled model, artifact dir with source/), compiled once per session."""
    built: dict[str, tuple[object, Path]] = {}

    def get(name: str) -> tuple[object, Path]:
        if name not in built:
            out = tmp_path_factory.mktemp("cuda") / name
            model = sparsecc.compile(zoo_onnx(name), target="cuda", emit_source=out)
            model.export(out)
            built[name] = (model, out)
        return built[name]

    return get


# -- cross-compilation (no GPU needed) ---------------------------------------------------------------------------
@needs_nvcc
@pytest.mark.parametrize("name", by_model(ALL_MODELS))
def test_every_zoo_model_compiles_to_one_library_for_sm80_and_sm90(cuda_artifact, name: str) -> None:
    model, out = cuda_artifact(name)
    manifest = read_manifest(out)
    assert manifest.target == "cuda"
    assert manifest.files == {"library": "model.so"}
    assert manifest.target_options["archs"] == ["sm_80", "sm_90"]
    fmt, code = read_device_code(out / "model.so")
    assert fmt == "fatbin" and code == model.binary.fatbin
    assert fatbin_entries(code) == [FatbinEntry("sass", "sm_80"), FatbinEntry("sass", "sm_90"),
                                    FatbinEntry("ptx", "sm_80")]


@needs_nvcc
@pytest.mark.parametrize("name", by_model(SPARSE_MODELS))
def test_generated_source_and_ptx_contain_the_sparse_kernels(cuda_artifact, name: str) -> None:
    _, out = cuda_artifact(name)
    kernels = read_manifest(out).target_options["kernels"]
    families = {f for f in KERNEL_FAMILIES if any(n.startswith(f) for n in kernels)}
    assert EXPECTED_KERNELS[name] <= families, kernels
    source = (out / "source" / "kernels.cu").read_text()
    ptx = (out / "source" / "kernels.ptx").read_text()
    assert ".target sm_80" in ptx
    for kernel in kernels:
        assert f" {kernel}(" in source
        assert f".entry {kernel}(" in ptx


@needs_nvcc
@pytest.mark.xdist_group("cuda-gsc_sparse_cnn")
def test_ieee_guards_are_in_the_device_code_unless_fast_math(cuda_artifact, zoo_onnx) -> None:
    """Every sparse layer's input is checked by one fused isfinite-min reduction kernel (targets/cuda/ieee.py);
    fast_math drops them and is recorded in the manifest (the guards' numerics: tests/test_ieee.py)."""
    model, _ = cuda_artifact("gsc_sparse_cnn")
    finite = set(re.findall(r"__global__ void (?:__launch_bounds__\(\d+\) )?(fused_tir_isfinite\w*_kernel)\(",
                            model.source))
    assert len(finite) >= 3 and model.manifest.target_options["fast_math"] is False
    fast = sparsecc.compile(zoo_onnx("gsc_sparse_cnn"), target="cuda", fast_math=True)
    assert "isfinite" not in fast.source and fast.manifest.target_options["fast_math"] is True
    assert kernel_names(fast.source) == kernel_names(model.source)  # the same sparse kernels


@needs_nvcc
@pytest.mark.xdist_group("cuda-gsc_sparse_cnn")
def test_reshape_is_a_view_not_a_copy_kernel(cuda_artifact) -> None:
    model, _ = cuda_artifact("gsc_sparse_cnn")
    assert "vm.builtin.reshape" in model._executable.as_text()
    launched = re.findall(r"__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(", model.source)
    assert launched and not any("reshape" in name.lower() for name in launched), launched


def test_cuda_graph_needs_a_fixed_batch(zoo_onnx) -> None:
    with pytest.raises(CompileError, match="cuda_graph=True needs a fixed batch"):
        sparsecc.compile(zoo_onnx("gsc_dense_small1"), target="cuda", cuda_graph=True)


@needs_nvcc
@pytest.mark.xdist_group("cuda-gsc_dense_small1")
def test_dense_model_uses_only_tvm_default_gpu_schedules(cuda_artifact) -> None:
    model, out = cuda_artifact("gsc_dense_small1")
    assert read_manifest(out).target_options["kernels"] == []
    assert "__global__" in model.source


@needs_nvcc
def test_cli_compile_emit_source_writes_cuda_and_ptx(zoo_onnx, tmp_path: Path) -> None:
    out = tmp_path / "small"
    result = _cli("compile", str(zoo_onnx("gsc_dense_small1")), "--target", "cuda", "-o", str(out),
                  "--emit-source", "-q")
    assert result.returncode == 0, result.stderr
    assert (out / "manifest.json").is_file() and (out / "model.so").is_file()
    assert "__global__" in (out / "source" / "kernels.cu").read_text()
    assert ".entry " in (out / "source" / "kernels.ptx").read_text()


@needs_nvcc
def test_emit_source_into_a_plain_folder_writes_at_compile_time(zoo_onnx, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an artifact")
    sparsecc.compile(zoo_onnx("gsc_dense_small1"), target="cuda", emit_source=tmp_path)
    assert (tmp_path / "source" / "kernels.cu").is_file()


def test_missing_nvcc_is_a_one_line_compile_error(zoo_onnx, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CompileError, match="nvcc") as info:
        sparsecc.compile(zoo_onnx("gsc_dense_small1"), target="cuda")
    assert "\n" not in str(info.value)


# -- no GPU: one-line errors, exit 2 -----------------------------------------------------------------------------
@needs_nvcc
@no_gpu_only
@pytest.mark.xdist_group("cuda-gsc_sparse_cnn")
def test_load_without_gpu_raises_one_line_device_error(cuda_artifact) -> None:
    _, out = cuda_artifact("gsc_sparse_cnn")
    with pytest.raises(DeviceUnavailableError) as info:
        sparsecc.load(out)
    assert "\n" not in str(info.value) and "cuda" in str(info.value)


@needs_nvcc
@no_gpu_only
@pytest.mark.xdist_group("cuda-gsc_sparse_cnn")
def test_running_a_fresh_compile_without_gpu_raises_device_error(cuda_artifact) -> None:
    model, _ = cuda_artifact("gsc_sparse_cnn")
    x = np.zeros((1, 1, 32, 32), np.float32)
    with pytest.raises(DeviceUnavailableError):
        model.run(None, {"input": x})


@needs_nvcc
@no_gpu_only
@pytest.mark.xdist_group("cuda-gsc_sparse_cnn")
def test_cli_run_without_gpu_exits_2_with_one_line(cuda_artifact) -> None:
    _, out = cuda_artifact("gsc_sparse_cnn")
    result = _cli("run", str(out), "--random")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsecc: error:") and "Traceback" not in result.stderr


@needs_nvcc
@no_gpu_only
def test_cli_check_cuda_without_gpu_exits_2_with_one_line(zoo_onnx) -> None:
    result = _cli("check", str(zoo_onnx("gsc_dense_small1")), "--target", "cuda", "-q")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cuda" in lines[0] and "Traceback" not in result.stderr


# -- the library format ------------------------------------------------------------------------------------------
def _u64s(*values: int) -> bytes:
    return b"".join(v.to_bytes(8, "little") for v in values)


def _blob(cuda_payload: bytes) -> bytes:
    """A packed-imports blob: host library ``_lib`` importing one CUDA module with ``cuda_payload``."""

    def w(data: bytes) -> bytes:
        return _u64s(len(data)) + data

    body = _u64s(3, 0, 1, 1) + _u64s(1, 1) + w(b"_lib") + w(b"cuda") + w(cuda_payload)
    return _u64s(len(body)) + body


def test_replace_device_code_swaps_source_for_fatbin_and_keeps_the_function_table() -> None:
    table = b"\x02\x00\x00\x00\x00\x00\x00\x00TABLE"
    source = b"extern \"C\" __global__ void k() {}"
    payload = (4).to_bytes(8, "little") + b"cuda" + table + len(source).to_bytes(8, "little") + source
    patched = replace_device_code(_blob(payload), source, b"FATBIN")
    expected = (6).to_bytes(8, "little") + b"fatbin" + table + (6).to_bytes(8, "little") + b"FATBIN"
    assert patched == _blob(expected)


def test_replace_device_code_refuses_an_unexpected_layout() -> None:
    with pytest.raises(CompileError, match="unexpected TVM library layout"):
        replace_device_code(_blob(b"garbage"), b"source", b"FATBIN")


# -- kernel logic on the CPU (the same TIR, serial loops) ---------------------------------------------------------
def _run_cpu(kernel: Kernel, x: np.ndarray) -> np.ndarray:
    lib = tvm.compile(tvm.IRModule({"main": kernel.prim_func.with_attr("global_symbol", "main")}),
                      target=tvm.target.Target({"kind": "llvm"}))
    y = tvm.runtime.tensor(np.zeros((x.shape[0], *kernel.out_shape), np.float32))
    lib["main"](tvm.runtime.tensor(x), *(tvm.runtime.tensor(c) for c in kernel.constants), y)
    return y.numpy()


def _kwta_rows(x: np.ndarray, boosted: np.ndarray, k: int, ties: str) -> np.ndarray:
    """Reference k-WTA on rows (DESIGN §2; ``break``: lower index first among equal values)."""
    if ties == "keep":
        threshold = np.sort(boosted, axis=-1)[..., -k][..., None]
        return np.where(boosted < threshold, np.float32(0), x)
    order = np.argsort(-boosted, axis=-1, kind="stable")[..., :k]
    out = np.zeros_like(x)
    np.put_along_axis(out, order, np.take_along_axis(x, order, -1), -1)
    return out


def _tie_at_rank_k(x: np.ndarray, boosted: np.ndarray, units: np.ndarray, k: int) -> tuple[int, int]:
    """Give ``units`` of the row ``x`` (which share one boost factor) one value whose boosted value sits at the
    k-th rank, so that the tie straddles the threshold (asserted); returns (units above it, units tied)."""
    factor = boosted[units[0]] / x[units[0]]
    order = np.sort(np.delete(boosted, units))[::-1]
    x[units] = np.float32(order[k - units.size // 2 - 1] / factor)
    tied = (x[units] * factor)[0]
    boosted[units] = tied
    above, equal = int((boosted > tied).sum()), int((boosted == tied).sum())
    assert above < k < above + equal, "the tie does not reach the k-th rank"
    return above, equal


@pytest.mark.parametrize("ties", ["keep", "break"])
@pytest.mark.parametrize(("shape", "k"), [((300,), 30), ((8, 6, 6), 40), ((16, 20, 20), 900)])
def test_kwta_global_kernel_selects_exactly(shape: tuple[int, ...], k: int, ties: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    x.reshape(3, -1)[1, ::5] = -0.0
    boost = rng.uniform(0.5, 2.0, (1, shape[0]) + (1,) * (len(shape) - 1)).astype(np.float32)
    if len(shape) == 1:
        boost[0, :40] = boost[0, 0]  # units 0..39 share a boost factor
    boosted = (x * boost).reshape(3, -1)
    tie_units = np.arange(1, 31)  # inside channel 0 (unit 0 for a flat row): one boost factor
    above, tied = _tie_at_rank_k(x.reshape(3, -1)[0], boosted[0], tie_units, k)
    y = _run_cpu(K.kwta_global(shape, Kwta.select(k, len(shape) + 1, ties=ties, boost=boost), flavour=K.CPU), x)
    assert np.array_equal(y, _kwta_rows(x.reshape(3, -1), boosted, k, ties).reshape(x.shape))
    # break: exactly k survive (the first tied units in flat order); keep: every tied unit survives
    assert np.count_nonzero(y.reshape(3, -1)[0]) == (k if ties == "break" else above + tied)


def test_kwta_global_kernel_fuses_relu_and_max_pool() -> None:
    x = np.random.default_rng(2).standard_normal((2, 8, 6, 6)).astype(np.float32)
    pool = MaxPoolStage((2, 2), (2, 2))
    kernel = K.kwta_global((8, 6, 6), Kwta.select(60, 4), Epilogue(4, (ReluStage(), pool)), flavour=K.CPU)
    masked = _kwta_rows(x.reshape(2, -1), x.reshape(2, -1), 60, "keep").reshape(x.shape)
    expected = np.maximum(pool2d(masked, (2, 2), (2, 2), (0, 0, 0, 0), False, "max"), 0)
    assert np.array_equal(_run_cpu(kernel, x), expected)


@pytest.mark.parametrize("ties", ["keep", "break"])
def test_kwta_local_kernel_selects_per_pixel(ties: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 24, 5, 7)).astype(np.float32)
    boost = rng.uniform(0.5, 2.0, (1, 24, 1, 1)).astype(np.float32)
    boost[0, :10] = 1.5
    x[0, :10, 0, 0] = 4.0  # channels 0..9 tie at the top of pixel (0, 0): ranks 1..10 hold the k-th (6)
    boosted = x * boost
    assert (boosted[0, :, 0, 0] > 6.0).sum() == 0 and (boosted[0, :, 0, 0] == 6.0).sum() == 10
    y = _run_cpu(K.kwta_local((24, 5, 7), Kwta.select(6, 4, local=True, ties=ties, boost=boost), flavour=K.CPU), x)
    rows = np.moveaxis(x, 1, -1)
    expected = np.moveaxis(_kwta_rows(rows, np.moveaxis(boosted, 1, -1), 6, ties), -1, 1)
    assert np.array_equal(y, expected)
    assert np.count_nonzero(y[0, :, 0, 0]) == (6 if ties == "break" else 10)


CONV_CASES = [  # in (C, H, W), weight (O, C/groups, KH, KW), strides, pads, dilations, groups, pool
    ((3, 12, 12), (8, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, None),
    ((4, 11, 9), (6, 2, 3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 2, MaxPoolStage((2, 2), (2, 2))),
    ((6, 10, 10), (16, 6, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1, MaxPoolStage((3, 3), (2, 2), (1, 1, 1, 1), True)),
    ((5, 40, 40), (16, 5, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, None),  # several output-channel groups
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[f"conv{i}" for i in range(len(CONV_CASES))])
def test_conv_kernels_match_the_interpreter(case) -> None:
    in_shape, w_shape, strides, pads, dilations, groups, pool = case
    rng = np.random.default_rng(4)
    weight = rng.standard_normal(w_shape).astype(np.float32)
    weight[rng.random(w_shape) < 0.6] = 0
    bias = rng.standard_normal(w_shape[0]).astype(np.float32)
    x = rng.standard_normal((2, *in_shape)).astype(np.float32)
    x[rng.random(x.shape) < 0.7] = 0
    expected = conv2d(x, weight, bias, strides, pads, dilations, groups)
    if pool is not None:
        expected = pool2d(expected, pool.kernel, pool.strides, pool.pads, pool.ceil_mode, "max")
    expected = np.maximum(expected, 0)
    geometry = ConvGeometry(in_shape, w_shape, strides, pads, dilations, groups)
    epilogue = Epilogue(4, (ReluStage(),) if pool is None else (ReluStage(), pool))
    kernels = [K.conv2d_gather(geometry, weight, bias, epilogue, flavour=K.CPU),
               K.conv2d_scatter(geometry, weight, bias, epilogue, flavour=K.CPU)]
    for kernel in kernels:
        if kernel is not None:
            np.testing.assert_allclose(_run_cpu(kernel, x), expected, rtol=1e-5, atol=1e-5)
    assert kernels[1] is not None or groups != 1


@pytest.mark.parametrize("fixed_fan_in", [True, False])
def test_linear_kernels_match_numpy(fixed_fan_in: bool) -> None:
    rng = np.random.default_rng(5)
    weight = rng.standard_normal((120, 700)).astype(np.float32)
    if fixed_fan_in:
        for row in weight:
            row[rng.permutation(700)[:630]] = 0
    else:
        weight[rng.random(weight.shape) < 0.8] = 0
    bias = rng.standard_normal(120).astype(np.float32)
    x = rng.standard_normal((3, 700)).astype(np.float32)
    x[rng.random(x.shape) < 0.9] = 0
    expected = np.maximum(x @ weight.T + bias, 0)
    geometry, relu = LinearGeometry(700, 120), Epilogue(2, (ReluStage(),))
    for kernel in (K.linear_gather(geometry, weight, bias, relu, flavour=K.CPU),
                   K.linear_scatter(geometry, weight, bias, relu, flavour=K.CPU)):
        assert kernel is not None
        np.testing.assert_allclose(_run_cpu(kernel, x), expected, rtol=1e-5, atol=1e-5)


def test_a_single_kernel_cross_compiles_without_a_gpu() -> None:
    lib = build_kernel(K.kwta_global((64, 10, 10), Kwta.select(800, 4, ties="break")).prim_func)
    assert "__syncthreads()" in device_module(lib).inspect_source("cuda")


def test_float_key_orders_like_floats() -> None:
    values = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-38, 2.0, np.inf], np.float32)
    keys = np_float_key(values)
    assert keys[3] == keys[4]
    assert np.all(np.diff(keys.astype(np.int64))[[0, 1, 2, 4, 5, 6]] > 0)


# -- on a GPU ----------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@needs_gpu
@needs_nvcc
@pytest.mark.parametrize("name", ALL_MODELS)
def test_check_passes_on_gpu(zoo_onnx, name: str) -> None:
    report = sparsecc.check_model(zoo_onnx(name), "cuda", batches=(1, 8))
    assert report.ok, "\n".join(report.lines())


@pytest.mark.gpu
@needs_gpu
@needs_nvcc
@pytest.mark.xdist_group("cuda-gsc_sparse_cnn")
def test_loaded_artifact_matches_fresh_compile_on_gpu(cuda_artifact) -> None:
    model, out = cuda_artifact("gsc_sparse_cnn")
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    fresh = model.run(None, {"input": x})[0]
    loaded = sparsecc.load(out).run(None, {"input": x})[0]
    assert np.array_equal(loaded, fresh)  # the same device code, deterministic kernels: the same bits


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("ties", ["keep", "break"])
def test_kwta_global_kernel_on_gpu(ties: str) -> None:
    shape, k = (64, 28, 28), 4767
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    flat = x.reshape(3, -1)
    _tie_at_rank_k(flat[0], flat[0].copy(), np.arange(600), k)  # 600 units tie across the k-th rank
    kernel = K.kwta_global(shape, Kwta.select(k, 4, ties=ties), flavour=K.GPU)
    lib = build_kernel(kernel.prim_func)
    dev = tvm.cuda(0)
    y = tvm.runtime.tensor(np.zeros_like(x), dev)
    lib["main"](tvm.runtime.tensor(x, dev), tvm.runtime.tensor(kernel.constants[0], dev), y)
    flat = x.reshape(3, -1)
    assert np.array_equal(y.numpy(), _kwta_rows(flat, flat, k, ties).reshape(x.shape))

