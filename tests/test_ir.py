"""The IR: types check themselves, the verifier catches broken IR, the text form round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest
from support import filecheck

from sparsecc.compiler.errors import IRParseError, VerificationError
from sparsecc.compiler.ir import (
    ELL,
    Function,
    KWTABound,
    Module,
    SparseWeights,
    TensorType,
    Value,
    ops,
    parse_module,
    print_module,
    verify_module,
)

GSC_LAYER = """module @layer {
  func @main(%input: tensor<?x1x8x8xf32>) -> ("output": tensor<?x4x3x3xf32, #kwta<k=5, over=[1, 2, 3]>>) {
    %w = const blob<"w"> : tensor<4x1x3x3xf32, #sparse<density=0.4444444444444444, fan_in=4>>
    %b = const dense<[0.5, -0.25, 1.0, 0.0]> : tensor<4xf32>
    %f = const dense<[1.0, 2.0, 0.5, 1.0]> : tensor<1x4x1x1xf32>
    %c = nn.conv2d(%input, %w, bias=%b) : tensor<?x4x6x6xf32>
    %a = sparse.kwta(%c, boost=%f) {k=5, over=[1, 2, 3]} : tensor<?x4x6x6xf32, #kwta<k=5, over=[1, 2, 3]>>
    %output = nn.maxpool2d(%a) {kernel=[2, 2], strides=[2, 2]} : tensor<?x4x3x3xf32, #kwta<k=5, over=[1, 2, 3]>>
    return %output
  }
}
"""


def _weight() -> np.ndarray:
    w = np.zeros((4, 9), np.float32)
    for row in range(4):
        w[row, [row, row + 1, row + 3, 8]] = np.arange(1, 5) * (row + 1)
    return w.reshape(4, 1, 3, 3)


def gsc_layer_text() -> str:
    return GSC_LAYER + 'blobs {\n  "w" = 0x' + _weight().astype("<f4").tobytes().hex() + "\n}\n"


def test_tensor_type_rejects_unknown_dtype() -> None:
    with pytest.raises(VerificationError, match="unknown dtype"):
        TensorType((2, 3), "f12")


def test_tensor_type_rejects_negative_dims() -> None:
    with pytest.raises(VerificationError, match="negative dimension"):
        TensorType((2, -3))


def test_kwta_bound_must_fit_the_group() -> None:
    with pytest.raises(VerificationError, match="exceeds the group size"):
        TensorType((None, 4, 2, 2), "f32", KWTABound(17, (1, 2, 3)))


def test_weight_encoding_needs_a_static_matrix() -> None:
    with pytest.raises(VerificationError, match="rank >= 2"):
        TensorType((10,), "f32", SparseWeights(0.5))
    with pytest.raises(VerificationError, match="static shape"):
        TensorType((None, 10), "f32", ELL(3, 0.3))


def test_types_are_immutable() -> None:
    t = TensorType((1, 2))
    with pytest.raises(AttributeError):
        t.shape = (3,)  # type: ignore[misc]


def test_print_parse_print_is_identical() -> None:
    text = gsc_layer_text()
    module = parse_module(text)
    assert print_module(module) == text
    assert print_module(parse_module(print_module(module))) == text


def test_parsed_types_carry_the_sparsity_encodings() -> None:
    module = parse_module(gsc_layer_text())
    kwta = next(module.walk(ops.KWinners))
    assert kwta.result.type.encoding == KWTABound(5, (1, 2, 3))
    conv = kwta.input.owner
    assert isinstance(conv, ops.Conv2D)
    assert conv.weight.type.encoding == SparseWeights(4 / 9, 4)


def test_parse_error_names_line_and_column() -> None:
    broken = gsc_layer_text().replace("nn.maxpool2d(%a)", "nn.maxpool2d(%zz)")
    with pytest.raises(IRParseError, match=r"line 8:\d+: use of undefined value %zz"):
        parse_module(broken)


def test_parsed_text_is_verified() -> None:
    broken = gsc_layer_text().replace(": tensor<?x4x6x6xf32>", ": tensor<?x4x5x5xf32>", 1)
    with pytest.raises(VerificationError, match=r"nn.conv2d \(defining %c\): .*differs from the inferred"):
        parse_module(broken)


def test_parse_rejects_unknown_ops_and_attributes() -> None:
    with pytest.raises(IRParseError, match="unknown op 'nn.frobnicate'"):
        parse_module(gsc_layer_text().replace("nn.maxpool2d", "nn.frobnicate"))
    with pytest.raises(IRParseError, match="unknown attribute"):
        parse_module(gsc_layer_text().replace("{kernel=[2, 2]", "{kernal=[2, 2]"))


def test_constant_encoding_must_be_true_of_the_data() -> None:
    wrong = gsc_layer_text().replace("fan_in=4>", "fan_in=3>", 1)
    with pytest.raises(VerificationError, match="fan_in=3 but the rows hold 4"):
        parse_module(wrong)
    wrong = gsc_layer_text().replace("density=0.4444444444444444", "density=0.5", 1)
    with pytest.raises(VerificationError, match="density 0.5"):
        parse_module(wrong)


def test_elided_blobs_print_but_do_not_parse() -> None:
    module = parse_module(gsc_layer_text())
    text = print_module(module, elide_blobs=True)
    # the module as written, with the 4x1x3x3 float32 weight's bytes left out
    filecheck(text, """
CHECK:      module @layer {
CHECK-NEXT:   func @main(%input: tensor<?x1x8x8xf32>) -> ("output": tensor<?x4x3x3xf32, #kwta<k=5, over=[1, 2, 3]>>) {
CHECK-NEXT:     %w = const blob<"w"> : tensor<4x1x3x3xf32, #sparse<density=0.4444444444444444, fan_in=4>>
CHECK-NEXT:     %b = const dense<[0.5, -0.25, 1.0, 0.0]> : tensor<4xf32>
CHECK-NEXT:     %f = const dense<[1.0, 2.0, 0.5, 1.0]> : tensor<1x4x1x1xf32>
CHECK-NEXT:     %c = nn.conv2d(%input, %w, bias=%b) : tensor<?x4x6x6xf32>
CHECK-NEXT:     %a = sparse.kwta(%c, boost=%f) {k=5, over=[1, 2, 3]} : tensor<?x4x6x6xf32, #kwta<k=5, over=[1, 2, 3]>>
CHECK-NEXT:     %output = nn.maxpool2d(%a) {kernel=[2, 2], strides=[2, 2]} : tensor<?x4x3x3xf32, #kwta<k=5, over=[1, 2, 3]>>
CHECK-NEXT:     return %output
CHECK-NEXT:   }
CHECK-NEXT: }
CHECK-NEXT: blobs {
CHECK-NEXT:   "w" = elided<144 bytes>
CHECK-NEXT: }
""")
    with pytest.raises(IRParseError, match="was elided"):
        parse_module(text)


def test_verifier_rejects_use_before_definition() -> None:
    module = parse_module(gsc_layer_text())
    func = module.func
    conv = next(func.walk(ops.Conv2D))
    func.ops.remove(conv)
    func.ops.append(conv)  # now after its users
    with pytest.raises(VerificationError, match="used before it is defined"):
        verify_module(module)


def test_verifier_rejects_a_stale_result_type() -> None:
    module = parse_module(gsc_layer_text())
    kwta = next(module.walk(ops.KWinners))
    kwta.result.set_type(kwta.result.type.with_encoding(None))
    with pytest.raises(VerificationError, match="differs from the inferred"):
        verify_module(module)


def test_ops_check_their_operands() -> None:
    x = Value(TensorType((None, 3, 8, 8)), "x")
    w = Value(TensorType((4, 2, 3, 3)), "w")
    with pytest.raises(VerificationError, match="input has 3 channels"):
        ops.Conv2D.create(x, w)
    with pytest.raises(VerificationError, match="cannot select over the batch axis"):
        ops.KWinners.create(x, k=2, over=(0, 1))
    with pytest.raises(VerificationError, match="must be one of"):
        ops.KWinners.create(x, k=2, over=(1,), ties="sometimes")


def test_kwta_bound_flows_through_maxpool_and_flatten() -> None:
    module = parse_module(gsc_layer_text())
    out = module.func.outputs[0]
    flat = ops.Reshape.create(out, shape=(-1, 36))
    assert flat.result.type.encoding == KWTABound(5, (1,))
    overlapping = ops.MaxPool2D.create(next(module.walk(ops.KWinners)).result, kernel=(3, 3), strides=(1, 1))
    assert overlapping.result.type.encoding is None  # overlapping windows can multiply non-zeros


def test_module_clone_is_independent() -> None:
    module = parse_module(gsc_layer_text())
    copy = module.clone()
    assert print_module(copy) == print_module(module)
    next(copy.walk(ops.KWinners)).set_attrs(ties="break")
    assert print_module(module) == gsc_layer_text()
    assert print_module(copy) == gsc_layer_text().replace("{k=5, over=[1, 2, 3]}", '{k=5, over=[1, 2, 3], ties="break"}')


def test_function_outputs_need_unique_names() -> None:
    x = Value(TensorType((2,)), "x")
    func = Function("main", [x])
    func.set_outputs([x, x], ["y", "y"])
    with pytest.raises(VerificationError, match="must be unique"):
        verify_module(Module("m", func))
