"""The textual form of the IR. ``parse_module(print_module(m))`` rebuilds ``m`` exactly (see parser.py).

Example::

    module @gsc_sparse_cnn {
      func @main(%input: tensor<?x1x32x32xf32>) -> ("output": tensor<?x12xf32>) {
        %w1 = const blob<"w1"> : tensor<64x1x5x5xf32, #sparse<density=0.48, fan_in=12>>
        %c1 = nn.conv2d(%input, %w1, bias=%b1) : tensor<?x64x28x28xf32>
        %a1 = sparse.kwta(%c1, boost=%f1) {k=4767, over=[1, 2, 3]}
                : tensor<?x64x28x28xf32, #kwta<k=4767, over=[1, 2, 3]>>     (on one line)
        return %out
      }
    }
    blobs {
      "w1" = 0x0000803f...
    }

Required operands print positionally, optional operands as ``name=%value``; attributes equal to their
default are left out. Constants with at most ``inline_limit`` elements print inline as ``dense<[...]>``
(flat, row-major, floats as the shortest text of their exact double value); larger ones refer to a blob,
raw little-endian bytes in hex at the end of the module. ``elide_blobs=True`` leaves the bytes out (for
reading; such text cannot be parsed back).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from .attributes import StructAttr
from .core import Function, Module, Operation, Value
from .types import TensorType

_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_DIGITS = re.compile(r"^[0-9]+$")
INLINE_LIMIT = 16


def format_name(name: str) -> str:
    return name if _PLAIN_NAME.match(name) or _DIGITS.match(name) else json.dumps(name)


def format_type(t: TensorType) -> str:
    dims = "".join(f"{'?' if d is None else d}x" for d in t.shape)
    enc = f", {format_attr(t.encoding)}" if t.encoding is not None else ""
    return f"tensor<{dims}{t.dtype}{enc}>"


def format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))


def format_attr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, StructAttr):
        fields = value.fields()
        if not fields:
            return f"#{value.mnemonic}"
        return f"#{value.mnemonic}<" + ", ".join(f"{k}={format_attr(v)}" for k, v in fields.items()) + ">"
    raise TypeError(f"cannot print attribute value {value!r}")


def format_dense(array: np.ndarray) -> str:
    flat = array.reshape(-1)
    if array.dtype == np.bool_:
        items = ["true" if v else "false" for v in flat]
    elif array.dtype.kind == "f":
        items = [format_float(float(v)) for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    return "dense<[" + ", ".join(items) + "]>"


class _Namer:
    """Gives every value a unique printed name: its hint when free, else the hint with a suffix."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.taken: set[str] = set()
        self.counter = 0

    def assign(self, value: Value) -> str:
        base = value.name
        if base is None or not base:
            while str(self.counter) in self.taken:
                self.counter += 1
            name = str(self.counter)
        elif base not in self.taken:
            name = base
        else:
            i = 1
            while f"{base}_{i}" in self.taken:
                i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        self.names[id(value)] = name
        return name

    def __getitem__(self, value: Value) -> str:
        try:
            return "%" + format_name(self.names[id(value)])
        except KeyError:
            raise KeyError(f"value {value!r} is used before it is defined") from None


class Printer:
    def __init__(self, *, inline_limit: int = INLINE_LIMIT, elide_blobs: bool = False) -> None:
        self.inline_limit = inline_limit
        self.elide_blobs = elide_blobs

    def module(self, module: Module) -> str:
        namer = _Namer()
        blobs: list[tuple[str, np.ndarray]] = []
        lines = [f"module @{format_name(module.name)} {{"]
        lines += ["  " + line for line in self.function(module.func, namer, blobs)]
        lines.append("}")
        if blobs:
            lines.append("blobs {")
            for name, array in blobs:
                data = f"elided<{array.nbytes} bytes>" if self.elide_blobs else "0x" + _le_bytes(array).hex()
                lines.append(f"  {json.dumps(name)} = {data}")
            lines.append("}")
        return "\n".join(lines) + "\n"

    def function(self, func: Function, namer: _Namer, blobs: list[tuple[str, np.ndarray]]) -> list[str]:
        args = []
        for arg in func.args:
            namer.assign(arg)
            args.append(f"{namer[arg]}: {format_type(arg.type)}")
        pairs = zip(func.output_names, func.outputs, strict=True)
        outs = ", ".join(f"{json.dumps(n)}: {format_type(v.type)}" for n, v in pairs)
        lines = [f"func @{format_name(func.name)}({', '.join(args)}) -> ({outs}) {{"]
        for op in func.ops:
            lines.append("  " + self.operation(op, namer, blobs))
        lines.append("  return " + ", ".join(namer[v] for v in func.outputs))
        lines.append("}")
        return lines

    def operation(self, op: Operation, namer: _Namer, blobs: list[tuple[str, np.ndarray]]) -> str:
        operand_text = [namer[v] for v in op.operand_values]  # resolve before naming results
        for r in op.results:
            namer.assign(r)
        results = ", ".join(namer[r] for r in op.results)
        types = ", ".join(format_type(r.type) for r in op.results)
        if op.name == "const":
            value: np.ndarray = op.attr("value")
            if value.size <= self.inline_limit:
                body = format_dense(value)
            else:
                blob_name = namer.names[id(op.result)]
                blobs.append((blob_name, value))
                body = f"blob<{json.dumps(blob_name)}>"
            return f"{results} = const {body} : {types}"
        parts: list[str] = []
        index = 0
        for spec, group in zip(type(op).operands, op.operand_slots(), strict=True):
            if spec.kind == "optional":
                if group is not None:
                    parts.append(f"{spec.name}={operand_text[index]}")
                    index += 1
            elif spec.kind == "variadic":
                assert isinstance(group, tuple)
                parts.extend(operand_text[index : index + len(group)])
                index += len(group)
            else:
                parts.append(operand_text[index])
                index += 1
        attrs = op.non_default_attrs()
        attr_text = " {" + ", ".join(f"{k}={format_attr(v)}" for k, v in attrs.items()) + "}" if attrs else ""
        return f"{results} = {op.name}({', '.join(parts)}){attr_text} : {types}"


def _le_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def print_module(module: Module, *, inline_limit: int = INLINE_LIMIT, elide_blobs: bool = False) -> str:
    """The textual form of ``module`` (see module docstring)."""
    return Printer(inline_limit=inline_limit, elide_blobs=elide_blobs).module(module)
