"""Passes: each keeps the interpreter's result; each does what it says on small IR (the whole expected IR,
checked with FileCheck); passes are frozen; the manager's instruments verify, time and print."""

from __future__ import annotations

import dataclasses
import io
import json
import sys

import numpy as np
import pytest
from support import ALL_MODELS, batch_input, filecheck

from sparsecc.compiler.compare import compare_outputs, find_near_ties
from sparsecc.compiler.errors import PassError
from sparsecc.compiler.interpreter import interpret
from sparsecc.compiler.ir import BSR, CSC, CSR, ELL, Encoding, Module, ops, parse_module, print_module
from sparsecc.compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from sparsecc.compiler.kernel_profile import load_profile
from sparsecc.compiler.passes import (
    Pass,
    PassInstrument,
    PassManager,
    PassTimer,
    PrintIR,
    parse_pipeline,
    register_pass,
)
from sparsecc.compiler.passes.builtin import DEFAULT_PIPELINE
from sparsecc.frontends.onnx import import_onnx


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_pass_keeps_the_interpreter_result(name: str, zoo_onnx) -> None:
    module = import_onnx(zoo_onnx(name))
    feeds = {"input": batch_input(name, 4, seed=3)}
    for p in parse_pipeline(DEFAULT_PIPELINE):
        before = find_near_ties(module, feeds)
        PassManager([p]).run(module)
        after = interpret(module, feeds)
        result = compare_outputs(after, before.outputs, before)
        assert result.ok, f"{p}: {result.summary()}"


def test_default_pipeline_fuses_kwta_and_compresses_weights(zoo_onnx) -> None:
    dump = io.StringIO()
    PassManager(DEFAULT_PIPELINE, print_after_all=dump).run(import_onnx(zoo_onnx("gsc_sparse_cnn")))
    # GSCSparseCNN (DESIGN.md §3): conv1 12 of 25 weights per filter (ELL, dense input: weight-sparse), its
    # batch norm folded, k-WTA k=4767 over C·H·W and 2x2 max-pool fused; conv2 320 of 1600 per filter with a
    # k-sparse input (CSC, sparse-sparse), k=800; the flatten keeps the bound; linear 160 of 1600 per unit
    # (CSC, sparse-sparse), k=100; the dense output layer reads a 10 %-active input (act-sparse)
    filecheck(dump.getvalue(), """
CHECK-LABEL: // ----- IR after schedule-sparse -----
CHECK-NEXT:  module @{{.*}} {
CHECK-NEXT:    func @main(%input: tensor<?x1x32x32xf32>) -> ("output": tensor<?x12xf32>) {
CHECK-NEXT:      [[W1:%[^ ]+]] = const blob<{{.*}}> : tensor<64x1x5x5xf32, #ell<fan_in=12, density=0.48>>
CHECK-NEXT:      [[B1:%[^ ]+]] = const blob<{{.*}}> : tensor<64xf32>
CHECK-NEXT:      [[W2:%[^ ]+]] = const blob<{{.*}}> : tensor<64x64x5x5xf32, #csc<density=0.2>>
CHECK-NEXT:      [[B2:%[^ ]+]] = const blob<{{.*}}> : tensor<64xf32>
CHECK-NEXT:      [[F1:%[^ ]+]] = const blob<{{.*}}> : tensor<1x64x1x1xf32>
CHECK-NEXT:      [[A1:%[^ ]+]] = sparse.conv2d(%input, [[W1]], bias=[[B1]], boost=[[F1]]) {epilogue=[#epi.kwta<k=4767, over=[1, 2, 3]>, #epi.maxpool<kernel=[2, 2], strides=[2, 2]>], kernel="weight_sparse"} : tensor<?x64x14x14xf32, #kwta<k=4767, over=[1, 2, 3]>>
CHECK-NEXT:      [[F2:%[^ ]+]] = const blob<{{.*}}> : tensor<1x64x1x1xf32>
CHECK-NEXT:      [[A2:%[^ ]+]] = sparse.conv2d([[A1]], [[W2]], bias=[[B2]], boost=[[F2]]) {epilogue=[#epi.kwta<k=800, over=[1, 2, 3]>, #epi.maxpool<kernel=[2, 2], strides=[2, 2]>], kernel="sparse_sparse"} : tensor<?x64x5x5xf32, #kwta<k=800, over=[1, 2, 3]>>
CHECK-NEXT:      [[FLAT:%[^ ]+]] = tensor.reshape([[A2]]) {shape=[-1, 1600]} : tensor<?x1600xf32, #kwta<k=800, over=[1]>>
CHECK-NEXT:      [[W3:%[^ ]+]] = const blob<{{.*}}> : tensor<1000x1600xf32, #csc<density=0.1>>
CHECK-NEXT:      [[B3:%[^ ]+]] = const blob<{{.*}}> : tensor<1000xf32>
CHECK-NEXT:      [[F3:%[^ ]+]] = const blob<{{.*}}> : tensor<1x1000xf32>
CHECK-NEXT:      [[A3:%[^ ]+]] = sparse.linear([[FLAT]], [[W3]], bias=[[B3]], boost=[[F3]]) {epilogue=[#epi.kwta<k=100, over=[1]>], kernel="sparse_sparse"} : tensor<?x1000xf32, #kwta<k=100, over=[1]>>
CHECK-NEXT:      [[B4:%[^ ]+]] = const dense<[{{.*}}]> : tensor<12xf32>
CHECK-NEXT:      [[W4:%[^ ]+]] = const blob<{{.*}}> : tensor<12x1000xf32>
CHECK-NEXT:      [[Y:%[^ ]+]] = sparse.linear([[A3]], [[W4]], bias=[[B4]]) {kernel="act_sparse"} : tensor<?x12xf32>
CHECK-NEXT:      %output = nn.log_softmax([[Y]]) {axis=1} : tensor<?x12xf32>
CHECK-NEXT:      return %output
CHECK-NEXT:    }
CHECK-NEXT:  }
""")


BN_AFTER_CONV = """module @m {
  func @main(%x: tensor<?x1x4x4xf32>) -> ("y": tensor<?x2x3x3xf32>) {
    %w = const dense<[1.0, 0.0, 0.0, 2.0, 0.0, -1.0, 3.0, 0.0]> : tensor<2x1x2x2xf32, #sparse<density=0.5, fan_in=2>>
    %b = const dense<[0.5, 1.0]> : tensor<2xf32>
    %s = const dense<[2.0, 0.5]> : tensor<2xf32>
    %t = const dense<[0.0, 1.0]> : tensor<2xf32>
    %mu = const dense<[1.0, -1.0]> : tensor<2xf32>
    %var = const dense<[3.0, 0.25]> : tensor<2xf32>
    %c = nn.conv2d(%x, %w, bias=%b) : tensor<?x2x3x3xf32>
    %y = nn.batch_norm(%c, %s, %t, %mu, %var) {epsilon=1.0} : tensor<?x2x3x3xf32>
    return %y
  }
}
"""


def _run(module: Module, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return interpret(module, {module.func.args[0].name: x})[0]  # type: ignore[dict-item]


def _f32(x: float) -> str:
    """How the printer writes ``x`` stored as float32 (the shortest text of its exact double value)."""
    return repr(float(np.float32(x)))


def test_canonicalize_folds_batch_norm_into_the_conv() -> None:
    module = parse_module(BN_AFTER_CONV)
    before = _run(module, (2, 1, 4, 4))
    PassManager("canonicalize").run(module)
    # s = scale / sqrt(var + eps) = [2 / 2, 0.5 / sqrt(1.25)], t = bias - mean * s = [-1, 1 + s1], each
    # stored as float32; w' = w * s per output channel (zeros and the fixed fan-in of 2 stay), b' = b * s + t
    s1 = float(np.float32(0.5 / np.sqrt(1.25)))
    t1 = float(np.float32(1 + s1))
    filecheck(print_module(module), f"""
CHECK:      module @m {{
CHECK-NEXT:   func @main(%x: tensor<?x1x4x4xf32>) -> ("y": tensor<?x2x3x3xf32>) {{
CHECK-NEXT:     %w = const dense<[1.0, 0.0, 0.0, 2.0, 0.0, {_f32(-s1)}, {_f32(3 * s1)}, 0.0]> : tensor<2x1x2x2xf32, #sparse<density=0.5, fan_in=2>>
CHECK-NEXT:     %b = const dense<[-0.5, {_f32(s1 + t1)}]> : tensor<2xf32>
CHECK-NEXT:     %y = nn.conv2d(%x, %w, bias=%b) : tensor<?x2x3x3xf32>
CHECK-NEXT:     return %y
CHECK-NEXT:   }}
CHECK-NEXT: }}
""")
    np.testing.assert_allclose(_run(module, (2, 1, 4, 4)), before, rtol=1e-5, atol=1e-6)


def test_canonicalize_folds_constant_boost_arithmetic() -> None:
    module = parse_module("""module @m {
  func @main(%x: tensor<?x3xf32>) -> ("y": tensor<?x3xf32>) {
    %duty = const dense<[0.1, 0.2, 0.3]> : tensor<3xf32>
    %b = const dense<[-1.5]> : tensor<1xf32>
    %e = math.mul(%b, %duty) : tensor<3xf32>
    %f = math.exp(%e) : tensor<3xf32>
    %i = tensor.identity(%x) : tensor<?x3xf32>
    %y = math.mul(%i, %f) : tensor<?x3xf32>
    return %y
  }
}
""")
    PassManager("canonicalize").run(module)
    # exp(-1.5 * duty) folds to one constant (named after the last folded value); the identity goes
    factor = np.exp(np.float32(-1.5) * np.array([0.1, 0.2, 0.3], np.float32))
    filecheck(print_module(module), f"""
CHECK:      module @m {{
CHECK-NEXT:   func @main(%x: tensor<?x3xf32>) -> ("y": tensor<?x3xf32>) {{
CHECK-NEXT:     %f = const dense<[{", ".join(_f32(v) for v in factor)}]> : tensor<3xf32>
CHECK-NEXT:     %y = math.mul(%x, %f) : tensor<?x3xf32>
CHECK-NEXT:     return %y
CHECK-NEXT:   }}
CHECK-NEXT: }}
""")


KWTA_CHAIN = """module @m {
  func @main(%x: tensor<?x1x6x6xf32>) -> ("y": tensor<?x4x2x2xf32>) {
    %w = const blob<"w"> : tensor<4x1x3x3xf32>
    %f = const dense<[1.0, 0.5, 2.0, 1.0]> : tensor<1x4x1x1xf32>
    %c = nn.conv2d(%x, %w) : tensor<?x4x4x4xf32>
    %r = nn.relu(%c) : tensor<?x4x4x4xf32>
    %k = sparse.kwta(%r, boost=%f) {k=9, over=[1, 2, 3]} : tensor<?x4x4x4xf32, #kwta<k=9, over=[1, 2, 3]>>
    %y = nn.maxpool2d(%k) {kernel=[2, 2], strides=[2, 2]} : tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>
    return %y
  }
}
"""


def _with_blob(text: str, **arrays: np.ndarray) -> str:
    blobs = "".join(f'  "{k}" = 0x{v.astype("<f4").tobytes().hex()}\n' for k, v in arrays.items())
    return text.replace('("y": tensor<?x4x2x2xf32>)', '("y": tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>)') \
        + "blobs {\n" + blobs + "}\n"


def test_fuse_kwta_builds_one_layer_with_the_epilogue_in_order() -> None:
    w = np.random.default_rng(0).standard_normal((4, 1, 3, 3)).astype(np.float32)
    module = parse_module(_with_blob(KWTA_CHAIN, w=w))
    before = _run(module, (3, 1, 6, 6))
    PassManager("fuse-kwta").run(module)
    # relu -> kwta -> maxpool in that order, the k-WTA's boost as operand, kernel left auto (not printed);
    # the result keeps the k-WTA bound (disjoint 2x2 windows), so a consumer learns its input is k-sparse
    filecheck(print_module(module, elide_blobs=True), """
CHECK:      module @m {
CHECK-NEXT:   func @main(%x: tensor<?x1x6x6xf32>) -> ("y": tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>) {
CHECK-NEXT:     %w = const blob<"w"> : tensor<4x1x3x3xf32>
CHECK-NEXT:     %f = const dense<[1.0, 0.5, 2.0, 1.0]> : tensor<1x4x1x1xf32>
CHECK-NEXT:     %y = sparse.conv2d(%x, %w, boost=%f) {epilogue=[#epi.relu, #epi.kwta<k=9, over=[1, 2, 3]>, #epi.maxpool<kernel=[2, 2], strides=[2, 2]>]} : tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>
CHECK-NEXT:     return %y
CHECK-NEXT:   }
CHECK-NEXT: }
CHECK-NEXT: blobs {
CHECK-NEXT:   "w" = elided<144 bytes>
CHECK-NEXT: }
""")
    (layer,) = module.walk(ops.SparseConv2D)
    assert layer.epilogue == (ReluStage(), KWTAStage(9, (1, 2, 3)), MaxPoolStage((2, 2), (2, 2)))
    np.testing.assert_array_equal(_run(module, (3, 1, 6, 6)), before)


def test_fuse_kwta_leaves_shared_values_alone() -> None:
    w = np.ones((4, 1, 3, 3), np.float32)
    text = _with_blob(KWTA_CHAIN, w=w).replace('("y": tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>)',
                                              '("y": tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>, '
                                              '"c": tensor<?x4x4x4xf32>)').replace("return %y", "return %y, %c")
    module = parse_module(text)
    PassManager("fuse-kwta").run(module)
    # %c is also an output, so the chain after it cannot be folded into the layer: nothing changes
    filecheck(print_module(module, elide_blobs=True), """
CHECK:      module @m {
CHECK-NEXT:   func @main(%x: tensor<?x1x6x6xf32>) -> ("y": tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>, "c": tensor<?x4x4x4xf32>) {
CHECK-NEXT:     %w = const blob<"w"> : tensor<4x1x3x3xf32>
CHECK-NEXT:     %f = const dense<[1.0, 0.5, 2.0, 1.0]> : tensor<1x4x1x1xf32>
CHECK-NEXT:     %c = nn.conv2d(%x, %w) : tensor<?x4x4x4xf32>
CHECK-NEXT:     %r = nn.relu(%c) : tensor<?x4x4x4xf32>
CHECK-NEXT:     %k = sparse.kwta(%r, boost=%f) {k=9, over=[1, 2, 3]} : tensor<?x4x4x4xf32, #kwta<k=9, over=[1, 2, 3]>>
CHECK-NEXT:     %y = nn.maxpool2d(%k) {kernel=[2, 2], strides=[2, 2]} : tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>
CHECK-NEXT:     return %y, %c
CHECK-NEXT:   }
CHECK-NEXT: }
""")


def _linear_module(density_rows: list[int], input_k: int | None) -> Module:
    w = np.zeros((4, 10), np.float32)
    for row, nnz in enumerate(density_rows):
        w[row, :nnz] = np.arange(1, nnz + 1)
    x_type = "tensor<?x10xf32>" if input_k is None else f"tensor<?x10xf32, #kwta<k={input_k}, over=[1]>>"
    kwta = "" if input_k is None else f"    %a = sparse.kwta(%x) {{k={input_k}, over=[1]}} : {x_type}\n"
    src = "%a" if input_k is not None else "%x"
    return parse_module(f"""module @m {{
  func @main(%x: tensor<?x10xf32>) -> ("y": tensor<?x4xf32>) {{
    %w = const blob<"w"> : tensor<4x10xf32>
{kwta}    %y = nn.linear({src}, %w) : tensor<?x4xf32>
    return %y
  }}
}}
blobs {{
  "w" = 0x{w.astype("<f4").tobytes().hex()}
}}
""")


def _weight_encoding(module: Module) -> Encoding | None:
    return next(module.walk(ops.Linear)).weight.type.encoding


def test_compress_weights_chooses_by_the_cost_model() -> None:
    fixed = _linear_module([2, 2, 2, 2], None)
    PassManager("compress-weights").run(fixed)
    assert _weight_encoding(fixed) == ELL(2, 0.2)
    sparse_input = _linear_module([2, 2, 2, 2], 3)
    PassManager("compress-weights").run(sparse_input)
    assert _weight_encoding(sparse_input) == CSC(0.2)
    dense = _linear_module([8, 9, 7, 8], None)
    PassManager("compress-weights").run(dense)
    assert _weight_encoding(dense) is None
    irregular = _linear_module([1, 3, 2, 2], None)
    PassManager("compress-weights").run(irregular)
    assert _weight_encoding(irregular) == CSR(0.2)


def test_compress_weights_can_be_overridden_per_layer() -> None:
    module = _linear_module([2, 2, 2, 2], None)
    PassManager("compress-weights{layers=y:bsr,block=2x5}").run(module)
    assert _weight_encoding(module) == BSR(2, 5, 0.2)
    with pytest.raises(PassError, match="bad layer override"):
        parse_pipeline("compress-weights{layers=y:zip}")
    with pytest.raises(PassError, match="do not tile"):
        PassManager("compress-weights{format=bsr,block=3x3}").run(_linear_module([2, 2, 2, 2], None))


@pytest.mark.parametrize(("rows", "input_k", "encoding", "kernel"), [
    ([8, 9, 7, 8], None, "", "dense"),  # 80 % dense weights, dense input
    ([8, 9, 7, 8], 3, "", "act_sparse"),  # dense weights, 3 of 10 inputs active
    ([2, 2, 2, 2], None, ", #ell<fan_in=2, density=0.2>", "weight_sparse"),  # fixed fan-in 2: ELL rows
    ([2, 2, 2, 2], 3, ", #csc<density=0.2>", "sparse_sparse"),  # both sparse: scatter over CSC columns
])
def test_schedule_sparse_picks_the_kernel_from_both_sparsities(rows: list[int], input_k: int | None,
                                                               encoding: str, kernel: str) -> None:
    module = _linear_module(rows, input_k)
    PassManager("compress-weights,schedule-sparse").run(module)
    kwta = "" if input_k is None else f"""
CHECK-NEXT:     %a = sparse.kwta(%x) {{k={input_k}, over=[1]}} : tensor<?x10xf32, #kwta<k={input_k}, over=[1]>>"""
    filecheck(print_module(module, elide_blobs=True), f"""
CHECK:      module @m {{
CHECK-NEXT:   func @main(%x: tensor<?x10xf32>) -> ("y": tensor<?x4xf32>) {{
CHECK-NEXT:     %w = const blob<"w"> : tensor<4x10xf32{encoding}>{kwta}
CHECK-NEXT:     %y = sparse.linear({"%x" if input_k is None else "%a"}, %w) {{kernel="{kernel}"}} : tensor<?x4xf32>
CHECK-NEXT:     return %y
CHECK-NEXT:   }}
CHECK-NEXT: }}
CHECK-NEXT: blobs {{
CHECK-NEXT:   "w" = elided<160 bytes>
CHECK-NEXT: }}
""")


def test_specialize_batch_makes_every_type_static(zoo_onnx) -> None:
    module = import_onnx(zoo_onnx("gsc_dense_small1"))
    PassManager("specialize-batch{size=3}").run(module)
    assert all(r.type.is_static for op in module.func.ops for r in op.results)
    assert module.func.args[0].type.shape == (3, 1, 32, 32)


def test_pipeline_strings_are_checked() -> None:
    with pytest.raises(PassError, match="unknown pass 'fold-everything'"):
        parse_pipeline("canonicalize,fold-everything")
    with pytest.raises(PassError, match="has no option 'speed'"):
        parse_pipeline("schedule-sparse{speed=11}")
    with pytest.raises(PassError, match="expects"):
        parse_pipeline("specialize-batch{size=many}")
    with pytest.raises(PassError, match="malformed pipeline"):
        parse_pipeline("canonicalize,{x=1}")
    assert [str(p) for p in parse_pipeline(" canonicalize , specialize-batch{size=4} ")] == [
        "canonicalize", "specialize-batch{size=4}"]


@register_pass
@dataclasses.dataclass(frozen=True)
class _CountLayers(Pass):
    """A user's analysis pass: prints how many conv/linear layers the module has (registered with the
    decorator)."""

    name = "test-count-layers"

    def apply(self, module: Module) -> None:
        print(f"layers: {module.count(ops.WeightedLayer)}", file=sys.stderr)


@dataclasses.dataclass(frozen=True)
class _BreakTypes(Pass):
    """A buggy user pass (registered by subclassing): it changes a type without re-inferring it."""

    name = "test-break-types"

    def apply(self, module: Module) -> None:
        op = next(module.walk(ops.Conv2D))
        op.result.set_type(op.result.type.with_shape((None, 99, 1, 1)))


@dataclasses.dataclass
class _Unfrozen(Pass):
    """A user pass declared without frozen=True (registered by subclassing)."""

    name = "test-unfrozen"
    runs: int = 0

    def apply(self, module: Module) -> None:
        self.runs += 1


class _Recorder(PassInstrument):
    """Records the hooks the manager calls."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.ran: list[Pass] = []

    def enter_pass_ctx(self) -> None:
        self.events.append("enter")

    def exit_pass_ctx(self) -> None:
        self.events.append("exit")

    def run_before_pass(self, module: Module, p: Pass) -> None:
        self.events.append(f"before {p}")
        self.ran.append(p)

    def run_after_pass(self, module: Module, p: Pass) -> None:
        self.events.append(f"after {p}")


def test_user_passes_run_in_pipelines_and_are_verified(capsys: pytest.CaptureFixture[str]) -> None:
    module = parse_module(BN_AFTER_CONV)
    manager = PassManager("canonicalize,test-count-layers")
    manager.run(module)
    assert capsys.readouterr().err == "layers: 1\n"
    assert [t.name for t in manager.timings] == ["canonicalize", "test-count-layers"]
    assert manager.timing_report().splitlines()[-1].startswith("total")
    with pytest.raises(PassError, match="IR is invalid after pass 'test-break-types'"):
        PassManager("test-break-types").run(parse_module(BN_AFTER_CONV))


def test_compile_takes_pass_instances_as_well_as_strings() -> None:
    import sparsecc

    module = parse_module(BN_AFTER_CONV)
    from_text, _ = sparsecc.optimize(module, "canonicalize,fuse-kwta")
    fuse = parse_pipeline("fuse-kwta")[0]
    recorder = _Recorder()
    from_objects, manager = sparsecc.optimize(module, [*parse_pipeline("canonicalize"), fuse],
                                              instruments=[recorder])
    assert recorder.ran[1] is fuse  # the instance given is the one that ran
    assert [t.name for t in manager.timings] == ["canonicalize", "fuse-kwta"]
    assert str(from_objects) == str(from_text)


def test_passes_are_frozen() -> None:
    (p,) = parse_pipeline("specialize-batch{size=4}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.size = 2  # type: ignore[misc]  # the point: options are fixed at construction
    module = parse_module(BN_AFTER_CONV)
    PassManager([p]).run(module)
    assert str(p) == "specialize-batch{size=4}" and module.func.args[0].type.shape[0] == 4


def test_a_pass_that_is_not_frozen_is_refused() -> None:
    with pytest.raises(PassError, match="'test-unfrozen' must be a frozen dataclass"):
        parse_pipeline("canonicalize,test-unfrozen")
    with pytest.raises(PassError, match="'test-unfrozen' must be a frozen dataclass"):
        PassManager([_Unfrozen()])


def test_instruments_bracket_the_run_and_each_pass_even_when_a_pass_fails() -> None:
    recorder = _Recorder()
    PassManager("canonicalize,specialize-batch{size=2}", instruments=[recorder]).run(parse_module(BN_AFTER_CONV))
    assert recorder.events == ["enter", "before canonicalize", "after canonicalize",
                               "before specialize-batch{size=2}", "after specialize-batch{size=2}", "exit"]
    recorder = _Recorder()
    with pytest.raises(PassError, match="invalid after pass 'test-break-types'"):
        PassManager("test-break-types,canonicalize", instruments=[recorder]).run(parse_module(BN_AFTER_CONV))
    assert recorder.events == ["enter", "before test-break-types", "exit"]  # the verifier stopped it first


def test_the_timer_and_printer_are_instruments() -> None:
    timer, dump = PassTimer(), io.StringIO()
    module = parse_module(BN_AFTER_CONV)
    PassManager("canonicalize,schedule-sparse", instruments=[timer, PrintIR(dump)]).run(module)
    assert [t.name for t in timer.timings] == ["canonicalize", "schedule-sparse"]
    assert all(t.seconds >= 0 for t in timer.timings)
    # after canonicalize: the batch norm is folded (see the canonicalize test); after schedule-sparse the
    # conv is a sparse.conv2d whose undecided (#sparse, not compressed) weight gets the dense kernel
    filecheck(dump.getvalue(), """
CHECK:      // ----- IR after canonicalize -----
CHECK-NEXT: module @m {
CHECK-NEXT:   func @main(%x: tensor<?x1x4x4xf32>) -> ("y": tensor<?x2x3x3xf32>) {
CHECK-NEXT:     %w = const dense<[{{.*}}]> : tensor<2x1x2x2xf32, #sparse<density=0.5, fan_in=2>>
CHECK-NEXT:     %b = const dense<[{{.*}}]> : tensor<2xf32>
CHECK-NEXT:     %y = nn.conv2d(%x, %w, bias=%b) : tensor<?x2x3x3xf32>
CHECK-NEXT:     return %y
CHECK-NEXT:   }
CHECK-NEXT: }
CHECK-NEXT: // ----- IR after schedule-sparse -----
CHECK-NEXT: module @m {
CHECK-NEXT:   func @main(%x: tensor<?x1x4x4xf32>) -> ("y": tensor<?x2x3x3xf32>) {
CHECK-NEXT:     %w = const dense<[{{.*}}]> : tensor<2x1x2x2xf32, #sparse<density=0.5, fan_in=2>>
CHECK-NEXT:     %b = const dense<[{{.*}}]> : tensor<2xf32>
CHECK-NEXT:     %y = sparse.conv2d(%x, %w, bias=%b) {kernel="dense"} : tensor<?x2x3x3xf32>
CHECK-NEXT:     return %y
CHECK-NEXT:   }
CHECK-NEXT: }
""")


def test_filecheck_reports_a_line_that_differs() -> None:
    with pytest.raises(pytest.fail.Exception, match="FileCheck failed"):
        filecheck("module @m {\n}\n", "CHECK: module @n {")


def test_llvm_conv_choice_is_a_ratio_of_input_activity_to_weight_density(zoo_onnx, tmp_path) -> None:
    """The activation-sparse conv costs ~ activity x O per input, the tap-list conv ~ weight density x O per
    output: on AVX2 the FPGA-style net's conv2 (5 % active inputs, 5 %-dense weights) runs the tap-list conv
    (measured 1.6x faster for the net), a 20 %-dense conv with 2 % active inputs the activation-sparse one."""
    module = import_onnx(zoo_onnx("gsc_fpga_sparse_cnn"))
    PassManager("canonicalize,fuse-kwta,compress-weights{target=llvm,profile=llvm-avx2},"
                "schedule-sparse{target=llvm,profile=llvm-avx2}").run(module)
    convs = [op for op in module.func.ops if isinstance(op, ops.SparseConv2D)]
    assert [op.kernel for op in convs] == ["weight_sparse", "weight_sparse"]
    avx2 = load_profile("llvm-avx2")
    assert avx2.llvm_conv_kernel(density=0.2, activity=0.02, reduction=1600, plain=True) == "act_sparse"
    assert avx2.llvm_conv_kernel(density=0.05, activity=0.05, reduction=1600, plain=True) == "weight_sparse"
    assert avx2.llvm_conv_kernel(density=0.2, activity=0.02, reduction=1600, plain=False) == "dense"
    # a profile file of format 1 held the activity crossover measured on 20 %-dense weights
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "sparsecc-kernel-profile", "version": 1, "name": "old",
                               "conv_act_sparse_max": 0.1}))
    assert load_profile(str(old)).conv_act_sparse_ratio == pytest.approx(0.5)
