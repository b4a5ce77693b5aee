"""Declared op accessors: ``op.weight``, ``op.bias``, ``op.strides`` read the op's operands and attributes,
the declarations make the tables generic code reads, and ops declared the old way keep working."""

from __future__ import annotations

import numpy as np
import pytest

from sparsecc.compiler.errors import VerificationError
from sparsecc.compiler.ir import Operand, Operation, TensorType, Value, ops, parse_module, print_module
from sparsecc.compiler.ir.core import (
    Function,
    Module,
    attr_def,
    operand_def,
    opt_operand_def,
    register_op,
    var_operand_def,
)


def _conv(bias: bool = True) -> ops.Conv2D:
    x = Value(TensorType((None, 2, 6, 6)), "x")
    w = ops.Constant.of(np.ones((3, 2, 3, 3), np.float32), name="w").result
    b = ops.Constant.of(np.zeros(3, np.float32), name="b").result if bias else None
    return ops.Conv2D.create(x, w, bias=b, strides=(2, 1), pads=(1, 1, 1, 1))


def test_operand_accessors_return_the_values_of_their_slots() -> None:
    conv = _conv()
    assert conv.input is conv.operand_values[0]
    assert conv.weight is conv.operand_values[1] and conv.weight.name == "w"
    assert conv.bias is conv.operand_values[2] and conv.bias is not None and conv.bias.name == "b"


def test_an_absent_optional_operand_reads_as_none() -> None:
    assert _conv(bias=False).bias is None


def test_attribute_accessors_return_the_attribute_values_defaults_included() -> None:
    conv = _conv()
    assert conv.strides == (2, 1)
    assert conv.pads == (1, 1, 1, 1)
    assert conv.dilations == (1, 1)  # the default
    assert conv.groups == 1
    assert conv.attr("strides") == conv.strides  # the generic lookup stays


def test_accessors_follow_set_operand_and_set_attrs() -> None:
    conv = _conv()
    other = ops.Constant.of(np.full((3, 2, 3, 3), 2.0, np.float32), name="w2").result
    conv.set_operand("weight", other)
    conv.set_attrs(strides=(1, 1))
    assert conv.weight is other and conv.strides == (1, 1)
    assert other.uses[0].op is conv


def test_accessors_cannot_be_assigned() -> None:
    conv = _conv()
    with pytest.raises(AttributeError, match="set_operand"):
        conv.weight = conv.input  # the point of the test: assignment is refused
    with pytest.raises(AttributeError, match="set_attrs"):
        conv.strides = (1, 1)


def test_set_operand_by_name_refuses_an_empty_optional_slot() -> None:
    conv = _conv(bias=False)
    with pytest.raises(VerificationError, match="'bias' holds no single value"):
        conv.set_operand("bias", conv.input)


def test_declarations_build_the_slot_tables_in_declaration_order() -> None:
    assert [(o.name, o.kind) for o in ops.SparseConv2D.operands] == [
        ("input", "single"), ("weight", "single"), ("bias", "optional"), ("boost", "optional")]
    assert [a.name for a in ops.SparseConv2D.attributes] == [
        "strides", "pads", "dilations", "groups", "epilogue", "kernel"]
    assert [a.name for a in ops.AvgPool2D.attributes] == ["kernel", "strides", "pads", "ceil_mode",
                                                          "count_include_pad"]


def test_a_pair_attribute_must_have_two_items() -> None:
    x = Value(TensorType((1, 1, 4, 4)), "x")
    with pytest.raises(VerificationError, match="attribute 'kernel' must be 2 ints"):
        ops.MaxPool2D.create(x, kernel=(2, 2, 2))


def test_a_variadic_operand_reads_as_a_tuple() -> None:
    a, b = Value(TensorType((1, 2)), "a"), Value(TensorType((1, 3)), "b")
    cat = ops.Concat.create([a, b], axis=1)
    assert cat.inputs == (a, b)
    assert cat.result.type.shape == (1, 5)


@register_op
class _Scale(Operation):
    """Test op declared with descriptors: ``input * factor`` (+ offset)."""

    name = "test.scale"
    input = operand_def()
    offset = opt_operand_def()
    extra = var_operand_def()
    factor = attr_def(float, 1.0)
    mode = attr_def(str, "plain", choices=("plain", "fancy"))

    def infer_types(self) -> list[TensorType]:
        return [self.input.type]


@register_op
class _OldStyle(Operation):
    """Test op declared the old way, with the tables written out."""

    name = "test.old_style"
    operands = (Operand("input"),)

    def infer_types(self) -> list[TensorType]:
        value = self.operand("input")
        assert value is not None
        return [value.type]


def test_a_user_op_with_descriptors_prints_and_parses() -> None:
    x = Value(TensorType((2, 3)), "x")
    func = Function("main", [x])
    op = func.append(_Scale.create(x, factor=2, mode="fancy", name="y"))
    func.set_outputs([op.result], ["y"])
    text = print_module(Module("m", func))
    parsed = parse_module(text)
    scale = next(parsed.walk(_Scale))
    assert scale.factor == 2.0 and scale.mode == "fancy" and scale.offset is None and scale.extra == ()
    assert print_module(parsed) == text


def test_an_op_declared_with_tables_still_works() -> None:
    x = Value(TensorType((2, 3)), "x")
    op = _OldStyle.create(x)
    assert op.operand("input") is x and op.result.type == x.type


def test_an_op_cannot_declare_operands_both_ways() -> None:
    with pytest.raises(TypeError, match="either"):
        class _Both(Operation):
            name = "test.both"
            operands = (Operand("input"),)
            input = operand_def()
