"""Passes: each keeps the interpreter's result; each does what it says on small IR; the manager verifies."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from support import ALL_MODELS, batch_input

from sparsecc.compiler.compare import compare_outputs, find_near_ties
from sparsecc.compiler.errors import PassError
from sparsecc.compiler.interpreter import interpret
from sparsecc.compiler.ir import CSC, ELL, Encoding, Module, ops, parse_module
from sparsecc.compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from sparsecc.compiler.passes import Pass, PassManager, parse_pipeline, register_pass
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
    text = dump.getvalue()
    after_fuse = text.split("// ----- IR after fuse-kwta -----")[1].split("// -----")[0]
    assert "sparse.kwta(" not in after_fuse and "#epi.kwta<k=4767, over=[1, 2, 3]>, #epi.maxpool" in after_fuse
    final = text.split("// ----- IR after schedule-sparse -----")[1]
    assert "#ell<fan_in=12, density=0.48>" in final  # conv1: fixed fan-in, dense input
    assert "#csc<density=0.2>" in final and "#csc<density=0.1>" in final  # k-sparse inputs
    assert final.count('kernel="sparse_sparse"') == 2 and 'kernel="weight_sparse"' in final


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


def test_canonicalize_folds_batch_norm_into_the_conv() -> None:
    module = parse_module(BN_AFTER_CONV)
    before = _run(module, (2, 1, 4, 4))
    PassManager("canonicalize").run(module)
    assert module.count((ops.BatchNorm, ops.ChannelAffine)) == 0
    (conv,) = module.walk(ops.Conv2D)
    # s / sqrt(var + eps) = [1.0, 0.4472]: the folded weight keeps its zeros and its fixed fan-in of 2
    w = conv.operand("weight").owner.value  # type: ignore[union-attr]
    np.testing.assert_allclose(w.reshape(2, 4), [[1, 0, 0, 2], [0, -0.4472136, 1.3416408, 0]], rtol=1e-6)
    assert conv.operand("weight").type.encoding.fan_in == 2  # type: ignore[union-attr]
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
    assert [op.name for op in module.func.ops] == ["const", "math.mul"]
    factor = next(module.walk(ops.Constant)).value
    np.testing.assert_allclose(factor, np.exp(-1.5 * np.array([0.1, 0.2, 0.3])), rtol=1e-6)


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
    (layer,) = (op for op in module.func.ops if op.name != "const")
    assert isinstance(layer, ops.SparseConv2D)
    assert layer.attr("epilogue") == (ReluStage(), KWTAStage(9, (1, 2, 3)), MaxPoolStage((2, 2), (2, 2)))
    assert layer.operand("boost") is not None and layer.attr("kernel") == "auto"
    assert layer.result.type.encoding is not None  # the consumer learns its input is k-sparse
    np.testing.assert_array_equal(_run(module, (3, 1, 6, 6)), before)


def test_fuse_kwta_leaves_shared_values_alone() -> None:
    w = np.ones((4, 1, 3, 3), np.float32)
    text = _with_blob(KWTA_CHAIN, w=w).replace('("y": tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>)',
                                              '("y": tensor<?x4x2x2xf32, #kwta<k=9, over=[1, 2, 3]>>, '
                                              '"c": tensor<?x4x4x4xf32>)').replace("return %y", "return %y, %c")
    module = parse_module(text)
    PassManager("fuse-kwta").run(module)
    assert module.count(ops.Conv2D) == 1 and module.count(ops.SparseConv2D) == 0  # %c is also an output


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
    return next(module.walk(ops.Linear)).operand("weight").type.encoding  # type: ignore[union-attr]


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
    assert _weight_encoding(irregular).mnemonic == "csr"


def test_compress_weights_can_be_overridden_per_layer() -> None:
    module = _linear_module([2, 2, 2, 2], None)
    PassManager("compress-weights{layers=y:bsr,block=2x5}").run(module)
    assert _weight_encoding(module).mnemonic == "bsr"
    with pytest.raises(PassError, match="bad layer override"):
        parse_pipeline("compress-weights{layers=y:zip}")
    with pytest.raises(PassError, match="do not tile"):
        PassManager("compress-weights{format=bsr,block=3x3}").run(_linear_module([2, 2, 2, 2], None))


@pytest.mark.parametrize(("rows", "input_k", "kernel"), [
    ([8, 9, 7, 8], None, "dense"), ([8, 9, 7, 8], 3, "act_sparse"),
    ([2, 2, 2, 2], None, "weight_sparse"), ([2, 2, 2, 2], 3, "sparse_sparse"),
])
def test_schedule_sparse_picks_the_kernel_from_both_sparsities(rows: list[int], input_k: int | None,
                                                               kernel: str) -> None:
    module = _linear_module(rows, input_k)
    PassManager("compress-weights,schedule-sparse").run(module)
    (layer,) = module.walk(ops.SparseLinear)
    assert layer.attr("kernel") == kernel


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
@dataclasses.dataclass
class _CountLayers(Pass):
    """A user's analysis pass: counts conv/linear layers (registered with the decorator)."""

    name = "test-count-layers"
    found: int = dataclasses.field(default=0, init=False, compare=False)

    def apply(self, module: Module) -> None:
        self.found = module.count((ops.Conv2D, ops.Linear, ops.SparseConv2D, ops.SparseLinear))


@dataclasses.dataclass
class _BreakTypes(Pass):
    """A buggy user pass (registered by subclassing): it changes a type without re-inferring it."""

    name = "test-break-types"

    def apply(self, module: Module) -> None:
        op = next(module.walk(ops.Conv2D))
        op.result.set_type(op.result.type.with_shape((None, 99, 1, 1)))


def test_user_passes_run_in_pipelines_and_are_verified() -> None:
    module = parse_module(BN_AFTER_CONV)
    manager = PassManager("canonicalize,test-count-layers")
    manager.run(module)
    assert manager.passes[1].found == 1  # type: ignore[attr-defined]
    assert [t.name for t in manager.timings] == ["canonicalize", "test-count-layers"]
    assert "total" in manager.timing_report()
    with pytest.raises(PassError, match="IR is invalid after pass 'test-break-types'"):
        PassManager("test-break-types").run(parse_module(BN_AFTER_CONV))


def test_compile_takes_pass_instances_as_well_as_strings() -> None:
    import sparsecc

    module = parse_module(BN_AFTER_CONV)
    from_text, _ = sparsecc.optimize(module, "canonicalize,test-count-layers")
    counter = parse_pipeline("test-count-layers")[0]
    from_objects, manager = sparsecc.optimize(module, [*parse_pipeline("canonicalize"), counter])
    assert counter.found == 1  # type: ignore[attr-defined]  # the instance given is the one that ran
    assert [t.name for t in manager.timings] == ["canonicalize", "test-count-layers"]
    assert str(from_objects) == str(from_text)
