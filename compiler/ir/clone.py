"""Deep copy of a module: new values and ops; constant arrays (read-only) are shared."""

from __future__ import annotations

from .core import Function, Module, Value


def clone_module(module: Module) -> Module:
    old = module.func
    mapping: dict[int, Value] = {}
    args = []
    for arg in old.args:
        new_arg = Value(arg.type, arg.name)
        mapping[id(arg)] = new_arg
        args.append(new_arg)
    func = Function(old.name, args, old.output_names)

    def remap(slot):
        if slot is None:
            return None
        if isinstance(slot, tuple):
            return [mapping[id(v)] for v in slot]
        return mapping[id(slot)]

    for op in old.ops:
        new_op = type(op)([remap(s) for s in op.operand_slots()], dict(op.attrs),
                          [r.type for r in op.results], [r.name for r in op.results])
        for r_old, r_new in zip(op.results, new_op.results, strict=True):
            mapping[id(r_old)] = r_new
        func.append(new_op)
    func.set_outputs([mapping[id(v)] for v in old.outputs], old.output_names)
    return Module(module.name, func)
