"""Rewrite patterns, the rewriter through which all IR changes go, and a greedy driver.

A pattern is a class with one method ``match_and_rewrite(op, rewriter) -> bool``: it returns False without
touching anything when ``op`` does not match, or rewrites through ``rewriter`` and returns True. Setting
``op_type`` restricts which ops the driver offers it. :func:`apply_patterns` sweeps the function, offering
every op to every pattern until nothing changes, removing dead ops between sweeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from ..errors import PassError
from ..ir.core import Function, Module, Operation, Value
from ..ir.types import TensorType

OpT = TypeVar("OpT", bound=Operation)


class Rewriter:
    """The one way patterns and passes change a function: keeps use lists, outputs and names right."""

    def __init__(self, func: Function) -> None:
        self.func = func

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        return self.func.insert_before(anchor, op)

    def create(self, anchor: Operation, cls: type[OpT], *operands: Any, **kwargs: Any) -> OpT:
        """``cls.create(*operands, **kwargs)`` inserted before ``anchor``."""
        op = cls.create(*operands, **kwargs)
        self.insert_before(anchor, op)
        return op

    def replace_all_uses(self, old: Value, new: Value) -> None:
        old.replace_all_uses_with(new)
        self.func.replace_output(old, new)

    def replace_op(self, op: Operation, new: Sequence[Value] | Operation) -> None:
        """Replace each result of ``op`` by the matching new value (or result of ``new``), then erase ``op``.

        A new value without a name takes the name of the value it replaces, so the IR stays readable.
        """
        values = list(new.results) if isinstance(new, Operation) else list(new)
        if len(values) != len(op.results):
            raise PassError(f"replacing {op.name}: {len(op.results)} result(s), {len(values)} replacement(s)")
        for old, value in zip(op.results, values, strict=True):
            if value.name is None:
                value.name = old.name
            self.replace_all_uses(old, value)
        self.erase_op(op)

    def erase_op(self, op: Operation) -> None:
        for result in op.results:
            if result.uses or self.func.is_output(result):
                raise PassError(f"cannot erase {op.name}: its result %{result.name} is still used")
        op.drop_operand_uses()
        self.func.remove(op)

    def set_operand(self, op: Operation, index: int | str, value: Value) -> None:
        """Replace operand ``index`` of ``op``: a flat position or the name of a single/optional slot."""
        op.set_operand(index, value)

    def set_attrs(self, op: Operation, **changes: Any) -> None:
        op.set_attrs(**changes)

    def set_type(self, value: Value, type: TensorType) -> None:
        value.set_type(type)


class RewritePattern(Generic[OpT]):
    """Base class of rewrite patterns. Subclasses implement ``match_and_rewrite``.

    Parameterise the base with the op class(es) the pattern handles and set ``op_type`` to the same, so
    that ``match_and_rewrite`` sees a typed op (``op.input``, ``op.weight``)::

        class DropRelu(RewritePattern[ops.Relu]):
            op_type = ops.Relu
            def match_and_rewrite(self, op: ops.Relu, rewriter: Rewriter) -> bool: ...
    """

    op_type: ClassVar[type[Operation] | tuple[type[Operation], ...] | None] = None

    def match_and_rewrite(self, op: OpT, rewriter: Rewriter) -> bool:
        raise NotImplementedError


def erase_dead_ops(func: Function) -> int:
    """Remove ops whose results are all unused and not returned (ops have no side effects)."""
    rewriter = Rewriter(func)
    erased = 0
    for op in reversed(list(func.ops)):
        if all(func.is_dead(r) for r in op.results):
            rewriter.erase_op(op)
            erased += 1
    return erased


def refresh_types(func: Function, start: int = 0) -> None:
    """Re-infer every op's result types in order (constants keep theirs).

    Activation encodings are derived facts (a k-WTA bound flows through pooling and reshapes), so after a
    rewrite changes an op's operands the types downstream are recomputed rather than patched by hand.
    """
    for op in func.ops[start:]:
        if op.name == "const":
            continue
        for result, inferred in zip(op.results, op.infer_types(), strict=True):
            if result.type != inferred:
                result.set_type(inferred)


def apply_patterns(module: Module, patterns: Sequence[RewritePattern[Any]], *, max_sweeps: int = 20) -> bool:
    """Apply ``patterns`` greedily until a fixed point; returns whether anything changed."""
    func = module.func
    rewriter = Rewriter(func)
    changed_any = False
    for _ in range(max_sweeps):
        changed = False
        for op in list(func.ops):
            if op.function is not func:  # erased by an earlier rewrite in this sweep
                continue
            for pattern in patterns:
                if pattern.op_type is not None and not isinstance(op, pattern.op_type):
                    continue
                position = func.ops.index(op)
                if pattern.match_and_rewrite(op, rewriter):
                    refresh_types(func, position)  # users of replaced values sit after this point
                    changed = True
                    break
        changed = bool(erase_dead_ops(func)) or changed
        changed_any = changed_any or changed
        if not changed:
            return changed_any
    raise PassError(f"rewrite patterns did not reach a fixed point in {max_sweeps} sweeps")
