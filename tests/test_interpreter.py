"""The reference interpreter: each op agrees with onnxruntime; k-WTA follows DESIGN.md §2 exactly."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from support import make_model, ort_run

from sparsecc.compiler.errors import InputError
from sparsecc.compiler.interpreter import interpret, kwta
from sparsecc.compiler.ir import parse_module
from sparsecc.frontends.onnx import import_onnx

F = TensorProto.FLOAT
RNG = np.random.default_rng(7)


def _vi(name: str, shape: list, elem: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name)


def _single(op: str, x_shape: list, out_shape: list | None, inits: dict | None = None, extra_inputs=(),
            out_elem: int = F, n_out: int = 1, x_elem: int = F, **attrs) -> onnx.ModelProto:
    inits = inits or {}
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, ["x", *inits, *extra_inputs], outs, **attrs)
    out_vis = [_vi(o, out_shape, out_elem if i == 0 else TensorProto.INT64) for i, o in enumerate(outs)]
    return make_model([node], [_vi("x", x_shape, x_elem)], out_vis, [_init(k, v) for k, v in inits.items()])


CASES = {
    "conv_pad_stride": lambda: _single("Conv", [None, 3, 9, 9], None, {"w": RNG.standard_normal((4, 3, 3, 3)).astype(
        np.float32), "b": RNG.standard_normal(4).astype(np.float32)}, pads=[1, 0, 2, 1], strides=[2, 1]),
    "conv_dilation_groups": lambda: _single("Conv", [None, 4, 10, 10], None, {"w": RNG.standard_normal(
        (6, 2, 3, 3)).astype(np.float32)}, dilations=[2, 2], group=2),
    "conv_same_upper": lambda: _single("Conv", [None, 2, 7, 7], None, {"w": RNG.standard_normal(
        (3, 2, 4, 4)).astype(np.float32)}, auto_pad="SAME_UPPER"),
    "maxpool_ceil_pad": lambda: _single("MaxPool", [None, 2, 7, 7], None, kernel_shape=[3, 3], strides=[2, 2],
                                        pads=[1, 1, 1, 1], ceil_mode=1),
    "avgpool_pad_exclude": lambda: _single("AveragePool", [None, 2, 6, 6], None, kernel_shape=[3, 3],
                                           pads=[1, 1, 1, 1], strides=[2, 2]),
    "avgpool_pad_include": lambda: _single("AveragePool", [None, 2, 6, 6], None, kernel_shape=[3, 3],
                                           pads=[1, 1, 1, 1], count_include_pad=1),
    "global_avgpool": lambda: _single("GlobalAveragePool", [None, 3, 5, 4], None),
    "gemm_alpha_beta": lambda: _single("Gemm", [None, 5], None, {"B": RNG.standard_normal((5, 3)).astype(np.float32),
                                       "C": RNG.standard_normal(3).astype(np.float32)}, alpha=0.5, beta=2.0),
    "gemm_transb": lambda: _single("Gemm", [None, 5], None, {"B": RNG.standard_normal((3, 5)).astype(np.float32)},
                                   transB=1),
    "matmul": lambda: _single("MatMul", [None, 6], None, {"W": RNG.standard_normal((6, 4)).astype(np.float32)}),
    "batchnorm": lambda: _single("BatchNormalization", [None, 3, 4, 4], None, {
        "s": RNG.random(3).astype(np.float32) + 0.5, "bb": RNG.standard_normal(3).astype(np.float32),
        "m": RNG.standard_normal(3).astype(np.float32), "v": RNG.random(3).astype(np.float32) + 0.1}, epsilon=1e-3),
    "softmax": lambda: _single("Softmax", [None, 7], None, axis=1),
    "log_softmax": lambda: _single("LogSoftmax", [None, 3, 5], None, axis=1),
    "relu": lambda: _single("Relu", [None, 3, 5], None),
    "exp": lambda: _single("Exp", [None, 4], None),
    "transpose": lambda: _single("Transpose", [None, 2, 3], None, perm=[0, 2, 1]),
    "flatten": lambda: _single("Flatten", [None, 2, 3, 4], None, axis=1),
    "slice_negative_step": lambda: _single("Slice", [None, 8], None, {
        "st": np.array([-2], np.int64), "en": np.array([-9], np.int64), "ax": np.array([1], np.int64),
        "sp": np.array([-2], np.int64)}),
    "gather": lambda: _single("Gather", [None, 6], None, {"i": np.array([[0, -1], [3, 2]], np.int64)}, axis=1),
    "topk_with_ties": lambda: _single("TopK", [None, 9], None, {"k": np.array([4], np.int64)}, n_out=2, axis=1),
    "topk_smallest": lambda: _single("TopK", [None, 9], None, {"k": np.array([3], np.int64)}, n_out=2, axis=-1,
                                     largest=0),
    "less": lambda: _single("Less", [None, 5], None, {"c": np.float32(0.1)}, out_elem=TensorProto.BOOL),
    "div": lambda: _single("Div", [None, 5], None, {"d": np.array([2, -4, 8, 0.5, 3], np.float32)}),
    "cast_to_int": lambda: _single("Cast", [None, 5], None, to=TensorProto.INT64, out_elem=TensorProto.INT64),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case: str) -> None:
    model = CASES[case]()
    module = import_onnx(model, cleanup=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [3 if d.dim_param or not d.dim_value else d.dim_value for d in dims]
    x = RNG.standard_normal(shape).astype(np.float32)
    if case == "topk_with_ties":
        x = np.round(x)  # many exact ties: ONNX puts the lower index first
    expected = ort_run(model, {"x": x})
    actual = interpret(module, {"x": x})
    for a, e in zip(actual, expected, strict=True):
        assert a.dtype == e.dtype
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


def reference_kwta(x: np.ndarray, boost: np.ndarray | None, k: int, over: tuple[int, ...], ties: str) -> np.ndarray:
    """DESIGN.md §2, written independently: sort each group, take the k-th largest boosted value."""
    boosted = x * boost if boost is not None else x
    rest = [a for a in range(x.ndim) if a not in over]
    out = np.zeros_like(x)
    for index in np.ndindex(*[x.shape[a] for a in rest]):
        sel: list = [slice(None)] * x.ndim
        for a, i in zip(rest, index, strict=True):
            sel[a] = i
        group_b = boosted[tuple(sel)].reshape(-1)
        group_x = x[tuple(sel)].reshape(-1)
        if ties == "keep":
            threshold = sorted(group_b, reverse=True)[k - 1]
            keep = group_b >= threshold
        else:
            order = sorted(range(group_b.size), key=lambda j: (-group_b[j], j))[:k]
            keep = np.zeros(group_b.size, bool)
            keep[order] = True
        out[tuple(sel)] = np.where(keep, group_x, 0).reshape(out[tuple(sel)].shape)
    return out


@pytest.mark.parametrize("over", [(1, 2, 3), (1,)])
@pytest.mark.parametrize("ties", ["keep", "break"])
def test_kwta_matches_the_design_definition(over: tuple[int, ...], ties: str) -> None:
    x = np.round(RNG.standard_normal((3, 4, 3, 2)) * 2).astype(np.float32)  # small ints: many exact ties
    boost = np.array([1.0, 0.5, 2.0, 1.0], np.float32).reshape(1, 4, 1, 1)
    k = 2 if over == (1,) else 7
    np.testing.assert_array_equal(kwta(x, boost, k, over, ties), reference_kwta(x, boost, k, over, ties))


def test_kwta_keeps_every_tie_at_the_threshold() -> None:
    x = np.array([[5.0, 3.0, 3.0, 3.0, 1.0]], np.float32)
    out = kwta(x, None, 2, (1,), "keep")
    np.testing.assert_array_equal(out, [[5.0, 3.0, 3.0, 3.0, 0.0]])
    out = kwta(x, None, 2, (1,), "break")
    np.testing.assert_array_equal(out, [[5.0, 3.0, 0.0, 0.0, 0.0]])


def test_kwta_winners_keep_original_negative_values() -> None:
    x = np.array([[-1.0, -2.0, -3.0, -4.0]], np.float32)
    boost = np.array([[1.0, 1.0, 0.1, 1.0]], np.float32)  # boosted: -1, -2, -0.3, -4
    np.testing.assert_array_equal(kwta(x, boost, 2, (1,), "keep"), [[-1.0, 0.0, -3.0, 0.0]])


def test_interpreter_validates_inputs() -> None:
    module = parse_module("""module @m {
  func @main(%x: tensor<?x3xf32>) -> ("y": tensor<?x3xf32>) {
    %y = nn.relu(%x) : tensor<?x3xf32>
    return %y
  }
}
""")
    with pytest.raises(InputError, match="missing input"):
        interpret(module, {})
    with pytest.raises(InputError, match="unknown input"):
        interpret(module, {"x": np.zeros((1, 3), np.float32), "z": np.zeros(1)})
    with pytest.raises(InputError, match="dtype float64"):
        interpret(module, {"x": np.zeros((1, 3))})
    with pytest.raises(InputError, match=r"shape \[2, 4\], expected \['\?', 3\]"):
        interpret(module, {"x": np.zeros((2, 4), np.float32)})
