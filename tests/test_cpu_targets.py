"""The llvm target on CPUs other than the developer's: the CPU description, the per-ISA kernel paths, and the
CPU matrix (every kernel family compiles for every listed CPU; those this host can execute run and match numpy).

Nothing here assumes the host: which CPUs run is decided by the host's reported features at test time.
"""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from test_llvm_kernels import ref_conv, ref_kwta, ref_pool, sparse_filters  # noqa: E402

from sparsecc.compiler.errors import CompileError  # noqa: E402
from sparsecc.compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry  # noqa: E402
from sparsecc.runtime.host import cannot_execute, host_arch  # noqa: E402
from sparsecc.targets.llvm.build import run_isolated  # noqa: E402
from sparsecc.targets.llvm.cpu import resolve_cpu  # noqa: E402
from sparsecc.targets.llvm.kernels.common import isa_scope  # noqa: E402
from sparsecc.targets.llvm.kernels.conv_dense import conv2d_dense  # noqa: E402
from sparsecc.targets.llvm.kernels.conv_sparse_sparse import conv2d_sparse_sparse  # noqa: E402
from sparsecc.targets.llvm.kernels.conv_weight_sparse import conv2d_weight_sparse  # noqa: E402
from sparsecc.targets.llvm.kernels.kwta import kwta_global, kwta_local  # noqa: E402
from sparsecc.targets.llvm.kernels.linear import linear_dense, linear_scatter, linear_sparse  # noqa: E402

X86_CPUS = ["x86-64-v2", "haswell", "znver1", "skylake-avx512", "znver5"]
MATRIX = [("x86_64-linux-gnu", c) for c in X86_CPUS] + [("aarch64-linux-gnu", "neoverse-n1")]


# -- the CPU description ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("triple", "mcpu", "mattr", "isa"),
    [
        ("x86_64-linux-gnu", "x86-64", None, "sse2"),
        ("x86_64-linux-gnu", "x86-64-v2", None, "sse2"),
        ("x86_64-linux-gnu", "haswell", None, "avx2"),
        ("x86_64-linux-gnu", "znver1", None, "avx2"),
        ("x86_64-linux-gnu", "skylake-avx512", None, "avx512"),
        ("x86_64-linux-gnu", "znver5", None, "avx512"),
        ("x86_64-linux-gnu", "znver5", "-avx512f", "avx2"),
        ("x86_64-linux-gnu", "haswell", "-avx2", "sse2"),
        ("aarch64-linux-gnu", "neoverse-n1", None, "neon"),
        ("aarch64-linux-gnu", None, None, "neon"),
    ],
)
def test_isa_class_follows_the_cpu_and_its_feature_overrides(triple, mcpu, mattr, isa):
    cpu = resolve_cpu(mcpu, triple, mattr)
    assert cpu.isa == isa
    if mattr == "-avx512f":
        assert "avx512f" not in cpu.features and "avx2" in cpu.features


def test_the_default_is_a_cpu_this_host_can_execute():
    cpu = resolve_cpu()
    assert cpu.arch == host_arch()
    assert cannot_execute(cpu.manifest_entry()) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mcpu": "bogus"}, "unknown CPU 'bogus'"),
        ({"mcpu": "haswell", "mtriple": "aarch64-linux-gnu"}, "unknown CPU 'haswell' for aarch64"),
        ({"mtriple": "riscv64-linux-gnu"}, "unsupported target triple"),
        ({"mattr": "avx2"}, "must be \\+FEATURE or -FEATURE"),
        ({"mcpu": "haswell", "mattr": "+notafeature"}, "unknown CPU feature 'notafeature'"),
        ({"mcpu": ""}, "mcpu must be"),
    ],
)
def test_bad_cpu_choices_are_one_clear_error(kwargs, message):
    with pytest.raises(CompileError, match=message):
        resolve_cpu(**kwargs)


def test_code_for_missing_features_or_another_architecture_is_refused_before_loading():
    arm = resolve_cpu("neoverse-n1", "aarch64-linux-gnu").manifest_entry()
    other = arm if host_arch() != "aarch64" else resolve_cpu("haswell", "x86_64-linux-gnu").manifest_entry()
    assert "compiled for" in cannot_execute(other)
    impossible = {**resolve_cpu().manifest_entry(), "features": ["avx512f", "sve", "neon", "sse2"]}
    missing = cannot_execute(impossible)
    if missing is not None:  # a host with every one of these features does not exist
        assert "lacks" in missing


def test_an_llvm_fatal_error_is_a_compile_error_and_the_process_survives():
    """An AVX-512 intrinsic built for a CPU without AVX-512 makes LLVM abort(); it must not kill us."""
    from tvm.script import tirx as T

    @T.prim_func
    def bad(a: T.Buffer((16,), "float32"), i: T.Buffer((16,), "int32"), b: T.Buffer((16,), "float32")):
        T.func_attr({"global_symbol": "bad", "tir.noalias": True})
        b[T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
            "float32x16", "llvm.x86.avx512.permvar.sf.512", a[T.ramp(0, 1, 16)], i[T.ramp(0, 1, 16)])

    target = resolve_cpu("haswell", "x86_64-linux-gnu").tvm_target()

    def job():
        tvm.compile(tvm.IRModule({"bad": bad}), target=target).export_library("/dev/null/never.so")

    with pytest.raises(CompileError, match="LLVM ERROR"):
        run_isolated(job, "code generation")
    assert np.ones(1).sum() == 1.0  # still alive


# -- the CPU matrix -----------------------------------------------------------------------------------------
def _families(isa):
    """(name, kernel, input, numpy reference of the output) for every kernel family, generated for ``isa``.

    The global k-WTA runs at three sizes: bisection (<= 2048 units), radix selection with in-place compaction
    and the sampled bracket (>= 16384), so every compaction path of the ISA is built and, where the host can,
    run."""
    rng = np.random.default_rng(11)
    w = sparse_filters(rng, (16, 8, 3, 3), 14)
    b = rng.integers(-2, 3, 16).astype(np.float32)
    x = rng.integers(-3, 4, (2, 8, 12, 12)).astype(np.float32)
    x_sparse = x * (rng.random(x.shape) < 0.1)
    spec = Kwta.select(40, 4, boost=rng.choice([0.5, 1.0, 2.0], 16).astype(np.float32))
    conv = ref_conv(x, w, b)
    wl = sparse_filters(rng, (40, 96), 10)
    bl = rng.integers(-2, 3, 40).astype(np.float32)
    xl = rng.integers(-3, 4, (3, 96)).astype(np.float32)
    xl_sparse = xl * (rng.random(xl.shape) < 0.1)
    xk = (rng.integers(-40, 40, (2, 8, 16, 16)) / 4).astype(np.float32)
    xr = (rng.integers(-400, 400, (2, 8, 24, 24)) / 8).astype(np.float32)
    xb = rng.standard_normal((2, 16, 32, 32)).astype(np.float32)
    with isa_scope(isa):
        return _family_list(w, b, x, x_sparse, spec, conv, wl, bl, xl, xl_sparse, xk, xr, xb)


def _family_list(w, b, x, x_sparse, spec, conv, wl, bl, xl, xl_sparse, xk, xr, xb):
    geo, lin = ConvGeometry((8, 12, 12), w.shape), LinearGeometry(96, 40)
    return [
        ("conv_dense", conv2d_dense(geo, w, b, name="conv_dense"), x, conv),
        ("conv_weight_sparse", conv2d_weight_sparse(geo, w, b, Epilogue.fused(4, kwta=spec, pool=2), "conv_ws"), x,
         ref_pool(ref_kwta(conv, 40, spec.boost), 2)),
        ("conv_sparse_sparse", conv2d_sparse_sparse(geo, w, b, name="conv_ss"), x_sparse,
         ref_conv(x_sparse, w, b)),
        ("kwta_global", kwta_global((8, 16, 16), Kwta.select(200, 4), "kwta_g"), xk, ref_kwta(xk, 200)),
        ("kwta_global_radix", kwta_global((8, 24, 24), Kwta.select(500, 4), "kwta_r"), xr, ref_kwta(xr, 500)),
        ("kwta_global_sampled", kwta_global((16, 32, 32), Kwta.select(1500, 4), "kwta_s"), xb,
         ref_kwta(xb, 1500)),
        ("kwta_local", kwta_local((8, 16, 16), Kwta.select(3, 4, local=True), "kwta_l"), xk,
         ref_kwta(xk, 3, local=True)),
        ("linear_dense", linear_dense(lin, wl, bl, Epilogue.fused(2, relu=True), "lin_dense"), xl,
         np.maximum(xl @ wl.T + bl, 0)),
        ("linear_scatter", linear_scatter(lin, wl, bl, name="lin_scatter"), xl_sparse, xl_sparse @ wl.T + bl),
    ]


def _linear_sparse(isa):
    rng = np.random.default_rng(12)
    wl = sparse_filters(rng, (40, 96), 10)
    bl = rng.integers(-2, 3, 40).astype(np.float32)
    xl = rng.integers(-3, 4, (3, 96)).astype(np.float32)
    return linear_sparse(LinearGeometry(96, 40), wl, bl, name="lin_sparse", isa=isa), xl, xl @ wl.T + bl


@pytest.fixture(scope="module")
def families_for():
    built: dict[str, list] = {}
    return lambda isa: built.setdefault(isa, _families(isa))


@pytest.mark.parametrize(("triple", "mcpu"), MATRIX, ids=[c for _, c in MATRIX])
def test_every_kernel_family_compiles_for_the_cpu_and_runs_where_the_host_can(triple, mcpu, families_for, tmp_path):
    import shutil

    cpu = resolve_cpu(mcpu, triple)
    families = families_for(cpu.isa)
    kernels = [k for _, k, _, _ in families]
    sparse, xs, want_sparse = _linear_sparse(cpu.isa)
    kernels.append(sparse)
    library = tmp_path / "kernels.so"
    cross = None
    if not cpu.is_host_arch:
        cross = "aarch64-linux-gnu-g++" if cpu.arch == "aarch64" else "x86_64-linux-gnu-g++"
        if shutil.which(cross) is None:
            pytest.skip(f"{cross} is not installed (make test installs it)")
    target = cpu.tvm_target()

    def job():
        mod = tvm.IRModule({k.name: k.prim_func for k in kernels})
        built = tvm.compile(mod, target=target)
        if cross:
            from tvm.support.cc import cross_compiler

            built.export_library(str(library), fcompile=cross_compiler(cross))
        else:
            built.export_library(str(library))

    run_isolated(job, f"kernels for {mcpu}")  # compiled: LLVM selected every instruction
    assert library.stat().st_size > 0
    if cannot_execute(cpu.manifest_entry()) is not None:
        return  # compiled only: this host cannot execute code for that CPU
    lib = tvm.runtime.load_module(str(library))
    for name, kernel, x, want in [*families, ("linear_sparse", sparse, xs, want_sparse)]:
        y = tvm.runtime.tensor(np.zeros(want.shape, np.float32))
        lib[kernel.name](tvm.runtime.tensor(x), *[tvm.runtime.tensor(c) for c in kernel.constants], y)
        np.testing.assert_array_equal(y.numpy(), want.astype(np.float32), err_msg=f"{name} on {mcpu}")


@pytest.mark.parametrize("isa", ["avx512", "avx2", "sse2"])
def test_linear_sparse_permute_paths_agree_with_numpy_where_they_run(isa):
    """Each ISA's gather of the packed sparse linear (vpermps zmm / two ymm vpermps + blend / lane loads)."""
    cpu = {"avx512": ("znver5", "x86_64-linux-gnu"), "avx2": ("haswell", "x86_64-linux-gnu"),
           "sse2": ("x86-64", "x86_64-linux-gnu"), "neon": ("neoverse-n1", "aarch64-linux-gnu")}[isa]
    target_cpu = resolve_cpu(*cpu)
    if cannot_execute(target_cpu.manifest_entry()) is not None:
        pytest.skip(f"this host cannot execute {isa} code (compiled in the CPU matrix test)")
    kernel, x, want = _linear_sparse(isa)
    lib = tvm.compile(tvm.IRModule({kernel.name: kernel.prim_func}), target=target_cpu.tvm_target())
    y = tvm.runtime.tensor(np.zeros(want.shape, np.float32))
    lib[kernel.name](tvm.runtime.tensor(x), *[tvm.runtime.tensor(c) for c in kernel.constants], y)
    np.testing.assert_array_equal(y.numpy(), want)


# -- the CPU choice through the API and the CLI -------------------------------------------------------------
def _cli(*args, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sparsecc.driver.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_an_unknown_cpu_is_one_line_before_any_work_and_writes_nothing(zoo_onnx, tmp_path):
    out = tmp_path / "out"
    result = _cli("compile", str(zoo_onnx("gsc_dense_small1")), "--mcpu", "bogus", "-o", str(out), "-q")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sparsecc: error: unknown CPU 'bogus' for x86_64-linux-gnu (LLVM names such as x86-64-v2, haswell, znver3, "
        "skylake-avx512)"] or (host_arch() != "x86_64" and "unknown CPU 'bogus'" in result.stderr)
    assert not out.exists()
    result = _cli("compile", str(zoo_onnx("gsc_dense_small1")), "--mcpu", "haswell", "--target", "hls", "-o", str(out))
    assert result.returncode == 2 and "--mcpu applies to --target llvm only" in result.stderr
    assert not out.exists()


def test_code_for_another_architecture_is_exported_and_refused_at_load(zoo_onnx, tmp_path):
    import json
    import shutil

    import sparsecc
    from sparsecc.compiler.errors import ArtifactError

    other = "aarch64" if host_arch() == "x86_64" else "x86_64"
    if shutil.which(f"{other}-linux-gnu-g++") is None:
        pytest.skip(f"{other}-linux-gnu-g++ is not installed (make test installs it)")
    model = sparsecc.compile(zoo_onnx("gsc_dense_small1"), target="llvm", mtriple=f"{other}-linux-gnu")
    with pytest.raises(ArtifactError, match=f"compiled for {other}"):
        model.run(None, {"input": np.zeros((1, 1, 32, 32), np.float32)})
    path = model.export(tmp_path / "cross")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["target_options"]["mtriple"] == f"{other}-linux-gnu"
    assert manifest["target_options"]["isa"] == ("neon" if other == "aarch64" else "avx2")
    with pytest.raises(ArtifactError, match=f"compiled for {other}-linux-gnu and this host is {host_arch()}"):
        sparsecc.load(path)


def test_sparsecc_mcpu_compiles_the_whole_run_for_that_cpu_and_it_matches_onnxruntime(zoo_onnx, tmp_path):
    """The test-suite switch (``SPARSECC_MCPU=haswell make test``): here with the baseline CPU of the host's
    architecture, which every host of that architecture executes."""
    import json

    baseline = "x86-64-v2" if host_arch() == "x86_64" else "generic"
    out = tmp_path / "base"
    result = _cli("compile", str(zoo_onnx("gsc_sparse_cnn")), "-o", str(out), env={"SPARSECC_MCPU": baseline})
    assert result.returncode == 0, result.stderr
    assert f"compiling with TVM for {baseline}" in result.stderr and "from SPARSECC_MCPU" in result.stderr
    options = json.loads((out / "manifest.json").read_text())["target_options"]
    assert options["mcpu"] == baseline and options["isa"] in ("sse2", "neon")
    assert options["profile"] == f"llvm-{options['isa']}"

    import sparsecc
    from sparsecc.compiler.compare import compare_outputs, find_near_ties, onnxruntime_session

    x = np.random.default_rng(3).standard_normal((4, 1, 32, 32)).astype(np.float32)
    feeds = {"input": x}
    got = sparsecc.load(out).run(None, feeds)
    want = onnxruntime_session(zoo_onnx("gsc_sparse_cnn")).run(None, feeds)
    near = find_near_ties(sparsecc.load_module(zoo_onnx("gsc_sparse_cnn")), feeds)
    report = compare_outputs(got, want, near)
    assert report.ok, report.summary()
