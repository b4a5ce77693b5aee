"""The IR verifier: SSA order, use lists, op constraints and result types.

Checks, for a module:

* every operand is a function argument or the result of an earlier op (straight-line SSA);
* use lists match the operands exactly (no stale or missing uses);
* each op's attributes and operands satisfy its ``infer_types``/``verify``, and its stored result types
  equal what ``infer_types`` derives (constants: shape and dtype of the data, and a true encoding);
* the returned values are defined and named uniquely.

Errors are :class:`VerificationError` naming the op and its first result.
"""

from __future__ import annotations

from ..errors import SparseccError, VerificationError
from .core import Function, Module, Operation, Value


def _where(op: Operation) -> str:
    result = f" (defining %{op.results[0].name})" if op.results and op.results[0].name else ""
    return f"{op.name}{result}"


def verify_function(func: Function) -> None:
    defined: set[int] = set()
    for arg in func.args:
        if arg.owner is not None:
            raise VerificationError(f"argument %{arg.name} of @{func.name} is owned by an op")
        defined.add(id(arg))
    in_func = {id(op) for op in func.ops}
    for op in func.ops:
        if op.function is not func:
            raise VerificationError(f"{_where(op)} is listed in @{func.name} but does not belong to it")
        for index, value in enumerate(op.operand_values):
            if id(value) not in defined:
                raise VerificationError(f"{_where(op)}: operand #{index} %{value.name} is used before it is defined")
            if not any(u.op is op and u.index == index for u in value.uses):
                raise VerificationError(f"{_where(op)}: operand #{index} is missing from the use list of %{value.name}")
        try:
            op.verify()
            if not op.types_match():
                stored = ", ".join(str(r.type) for r in op.results)
                inferred = ", ".join(str(t) for t in op.infer_types())
                raise VerificationError(f"result type {stored} differs from the inferred {inferred}")
        except SparseccError as exc:
            raise VerificationError(f"{_where(op)}: {exc.message}") from None
        for result in op.results:
            if result.owner is not op or id(result) in defined:
                raise VerificationError(f"{_where(op)}: result #{result.index} is malformed")
            defined.add(id(result))
    for value in _all_values(func):
        for use in value.uses:
            if id(use.op) not in in_func or use.op.operand_values[use.index] is not value:
                raise VerificationError(f"%{value.name} has a stale use by {use.op.name}")
    for value in func.outputs:
        if id(value) not in defined:
            raise VerificationError(f"@{func.name} returns %{value.name}, which is not defined")
    if len(set(func.output_names)) != len(func.output_names) or len(func.output_names) != len(func.outputs):
        raise VerificationError(f"@{func.name}: output names {func.output_names} must be unique, one per output")
    arg_names = [a.name for a in func.args]
    if len(set(arg_names)) != len(arg_names) or any(not n for n in arg_names):
        raise VerificationError(f"@{func.name}: arguments need unique names, got {arg_names}")


def _all_values(func: Function) -> list[Value]:
    values = list(func.args)
    for op in func.ops:
        values.extend(op.results)
    return values


def verify_module(module: Module) -> None:
    """Raise :class:`VerificationError` if ``module`` breaks an invariant (see module docstring)."""
    verify_function(module.func)
