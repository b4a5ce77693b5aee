"""Parse the textual IR written by printer.py back into a :class:`Module`.

Errors are :class:`IRParseError` with ``line:column``. The parsed module is verified before it is returned
(types are re-inferred and must equal the printed ones), so a text that parses is a valid module.
``//`` starts a comment that runs to the end of the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ..errors import IRParseError, SparseccError
from .attributes import build_struct_attr
from .core import Function, Module, Operation, Value, lookup_op
from .types import DTYPES, Encoding, TensorType

_WS = re.compile(r"(?:\s|//[^\n]*)*")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"-?(?:inf|nan|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_HEX = re.compile(r"0x([0-9a-fA-F]*)")
_DIM = re.compile(r"\?|[0-9]+")
T = TypeVar("T")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.values: dict[str, Value] = {}
        self.blob_refs: list[tuple[Operation, str, TensorType, int]] = []

    # -- low level ----------------------------------------------------------------------------------------
    def error(self, message: str, pos: int | None = None) -> IRParseError:
        pos = self.pos if pos is None else pos
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return IRParseError(f"line {line}:{col}: {message}")

    def skip(self) -> None:
        m = _WS.match(self.text, self.pos)
        self.pos = m.end() if m else self.pos

    def peek(self, literal: str) -> bool:
        self.skip()
        return self.text.startswith(literal, self.pos)

    def accept(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str) -> None:
        if not self.accept(literal):
            found = self.text[self.pos : self.pos + 12].split("\n")[0] or "end of input"
            raise self.error(f"expected '{literal}', found '{found}'")

    def match(self, pattern: re.Pattern[str], what: str) -> re.Match[str]:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if not m:
            found = self.text[self.pos : self.pos + 12].split("\n")[0] or "end of input"
            raise self.error(f"expected {what}, found '{found}'")
        self.pos = m.end()
        return m

    def comma_list(self, close: str, item: Callable[[], T]) -> list[T]:
        """Items separated by commas, up to ``close`` (which may follow at once)."""
        items: list[T] = []
        if self.accept(close):
            return items
        while True:
            items.append(item())
            if self.accept(close):
                return items
            self.expect(",")

    def key_value(self, what: str) -> tuple[str, Any]:
        key = self.match(_IDENT, what).group(0)
        self.expect("=")
        return key, self.attr_value()

    def string(self) -> str:
        return json.loads(self.match(_STRING, "a string").group(0))

    def name(self) -> str:
        self.skip()
        if self.peek('"'):
            return self.string()
        m = _IDENT.match(self.text, self.pos) or re.compile(r"[0-9]+").match(self.text, self.pos)
        if not m:
            raise self.error("expected a name")
        self.pos = m.end()
        return m.group(0)

    def value_name(self) -> str:
        self.expect("%")
        return self.name()

    def value_ref(self) -> Value:
        pos = self.pos
        name = self.value_name()
        if name not in self.values:
            raise self.error(f"use of undefined value %{name}", pos)
        return self.values[name]

    def define(self, name: str, value: Value, pos: int) -> None:
        if name in self.values:
            raise self.error(f"value %{name} is defined twice", pos)
        value.name = name
        self.values[name] = value

    # -- types and attributes -----------------------------------------------------------------------------
    def type(self) -> TensorType:
        self.expect("tensor<")
        shape: list[int | None] = []
        while True:
            self.skip()
            m = _DIM.match(self.text, self.pos)
            if m and self.text.startswith("x", m.end()):
                shape.append(None if m.group(0) == "?" else int(m.group(0)))
                self.pos = m.end() + 1
                continue
            break
        pos = self.pos
        dtype = self.match(_IDENT, "an element type").group(0)
        if dtype not in DTYPES:
            raise self.error(f"unknown element type '{dtype}'", pos)
        encoding = None
        if self.accept(","):
            pos = self.pos
            encoding = self.attr_value()
            if not isinstance(encoding, Encoding):
                raise self.error("expected a tensor encoding such as #kwta<...>", pos)
        self.expect(">")
        try:
            return TensorType(tuple(shape), dtype, encoding)
        except SparseccError as exc:
            raise self.error(exc.message, pos) from None

    def attr_value(self) -> Any:
        self.skip()
        pos = self.pos
        if self.accept("["):
            return tuple(self.comma_list("]", self.attr_value))
        if self.accept("#"):
            mnemonic = self.match(_IDENT, "an attribute mnemonic").group(0)
            fields = dict(self.comma_list(">", lambda: self.key_value("a field name"))) if self.accept("<") else {}
            try:
                return build_struct_attr(mnemonic, fields)
            except SparseccError as exc:
                raise self.error(exc.message, pos) from None
        if self.peek('"'):
            return self.string()
        if self.accept("true"):
            return True
        if self.accept("false"):
            return False
        if self.peek("tensor<"):
            return self.type()
        token = self.match(_NUMBER, "an attribute value").group(0)
        if re.fullmatch(r"-?[0-9]+", token):
            return int(token)
        return float(token)

    # -- structure ----------------------------------------------------------------------------------------
    def module(self) -> Module:
        self.expect("module")
        self.expect("@")
        name = self.name()
        self.expect("{")
        func = self.function()
        self.expect("}")
        blobs = self.blobs() if self.accept("blobs") else {}
        self.skip()
        if self.pos != len(self.text):
            raise self.error("unexpected text after the module")
        self.resolve_blobs(func, blobs)
        return Module(name, func)

    def function(self) -> Function:
        self.expect("func")
        self.expect("@")
        fname = self.name()
        self.expect("(")
        args = self.comma_list(")", self.argument)
        self.expect("->")
        self.expect("(")
        outputs = self.comma_list(")", self.output)
        out_names = [name for name, _ in outputs]
        out_types = [t for _, t in outputs]
        self.expect("{")
        func = Function(fname, args)
        while not self.peek("return"):
            op = self.operation()
            func.append(op)
        self.expect("return")
        pos = self.pos
        outs = [self.value_ref()]
        while self.accept(","):
            outs.append(self.value_ref())
        if len(outs) != len(out_names):
            raise self.error(f"return gives {len(outs)} value(s), the signature names {len(out_names)}", pos)
        for value, t in zip(outs, out_types, strict=True):
            if value.type != t:
                raise self.error(f"returned %{value.name} has type {value.type}, the signature says {t}", pos)
        func.set_outputs(outs, out_names)
        self.expect("}")
        return func

    def argument(self) -> Value:
        pos = self.pos
        name = self.value_name()
        self.expect(":")
        value = Value(self.type())
        self.define(name, value, pos)
        return value

    def output(self) -> tuple[str, TensorType]:
        name = self.string()
        self.expect(":")
        return name, self.type()

    def operand(self, named: dict[str, Value]) -> Value | None:
        """A positional operand (returned) or ``name=%v`` for an optional slot (recorded in ``named``)."""
        self.skip()
        m = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=").match(self.text, self.pos)
        if m:
            self.pos = m.end()
            named[m.group(1)] = self.value_ref()
            return None
        return self.value_ref()

    def operation(self) -> Operation:
        start = self.pos
        result_names: list[tuple[str, int]] = []
        while True:
            self.skip()
            pos = self.pos
            result_names.append((self.value_name(), pos))
            if not self.accept(","):
                break
        self.expect("=")
        self.skip()
        pos = self.pos
        op_name = self.match(_IDENT, "an op name").group(0)
        cls = lookup_op(op_name)
        if cls is None:
            raise self.error(f"unknown op '{op_name}'", pos)
        if op_name == "const":
            return self.constant(cls, result_names)
        named: dict[str, Value] = {}
        self.expect("(")
        positional = [v for v in self.comma_list(")", lambda: self.operand(named)) if v is not None]
        attrs = dict(self.comma_list("}", lambda: self.key_value("an attribute name"))) if self.accept("{") else {}
        self.expect(":")
        types = [self.type()]
        while self.accept(","):
            types.append(self.type())
        slots = self.assign_slots(cls, positional, named, pos)
        try:
            op = cls(slots, attrs, types)
        except SparseccError as exc:
            raise self.error(exc.message, start) from None
        self.name_results(op, result_names)
        return op

    def assign_slots(self, cls: type[Operation], positional: list[Value], named: dict[str, Value], pos: int) -> list:
        specs = cls.operands
        fixed = sum(1 for s in specs if s.kind == "single")
        variadic = len(positional) - fixed
        has_variadic = any(s.kind == "variadic" for s in specs)
        if variadic < 0 or (variadic > 0 and not has_variadic):
            raise self.error(f"{cls.name} takes {fixed} positional operand(s), got {len(positional)}", pos)
        slots: list[Any] = []
        it = iter(positional)
        for spec in specs:
            if spec.kind == "single":
                slots.append(next(it))
            elif spec.kind == "variadic":
                slots.append([next(it) for _ in range(variadic)])
            else:
                slots.append(named.pop(spec.name, None))
        if named:
            raise self.error(f"{cls.name} has no optional operand(s) {', '.join(sorted(named))}", pos)
        return slots

    def name_results(self, op: Operation, names: list[tuple[str, int]]) -> None:
        if len(names) != len(op.results):
            raise self.error(f"{op.name} has {len(op.results)} result(s), {len(names)} named", names[0][1])
        for value, (name, pos) in zip(op.results, names, strict=True):
            self.define(name, value, pos)

    def constant(self, cls: type[Operation], names: list[tuple[str, int]]) -> Operation:
        self.skip()
        pos = self.pos
        if self.accept("dense<"):
            self.expect("[")
            items = self.comma_list("]", self.attr_value)
            self.expect(">")
            self.expect(":")
            t = self.type()
            try:
                array = np.array(items, dtype=t.numpy_dtype).reshape(t.shape)
            except (ValueError, TypeError) as exc:
                raise self.error(f"constant data does not fit {t}: {exc}", pos) from None
            return self.make_constant(cls, array, t, names, pos)
        if self.accept("blob<"):
            blob = self.string()
            self.expect(">")
            self.expect(":")
            t = self.type()
            op = cls([], {"value": np.zeros((0,), dtype=t.numpy_dtype)}, [t])  # data filled in from the blob
            self.name_results(op, names)
            self.blob_refs.append((op, blob, t, pos))
            return op
        raise self.error("expected dense<...> or blob<...> after 'const'")

    def make_constant(self, cls: type[Operation], array: np.ndarray, t: TensorType,
                      names: list[tuple[str, int]], pos: int) -> Operation:
        try:
            op = cls([], {"value": array}, [t])
        except SparseccError as exc:
            raise self.error(exc.message, pos) from None
        self.name_results(op, names)
        return op

    def blobs(self) -> dict[str, tuple[bytes | None, int]]:
        self.expect("{")
        out: dict[str, tuple[bytes | None, int]] = {}
        while not self.accept("}"):
            pos = self.pos
            name = self.string()
            self.expect("=")
            self.skip()
            if self.accept("elided<"):
                self.match(re.compile(r"[0-9]+ bytes"), "a byte count")
                self.expect(">")
                out[name] = (None, pos)
                continue
            m = self.match(_HEX, "hex data 0x...")
            if len(m.group(1)) % 2:
                raise self.error(f"blob \"{name}\" has an odd number of hex digits", pos)
            out[name] = (bytes.fromhex(m.group(1)), pos)
        return out

    def resolve_blobs(self, func: Function, blobs: dict[str, tuple[bytes | None, int]]) -> None:
        used = set()
        for op, name, t, pos in self.blob_refs:
            if name not in blobs:
                raise self.error(f"constant refers to blob \"{name}\", which is not in the blobs section", pos)
            data, _bpos = blobs[name]
            if data is None:
                raise self.error(f"blob \"{name}\" was elided when printed; print with the data to parse it", pos)
            expected = t.numel() or 0
            dtype = t.numpy_dtype.newbyteorder("<")
            if len(data) != expected * dtype.itemsize:
                raise self.error(f"blob \"{name}\" holds {len(data)} bytes, {t} needs {expected * dtype.itemsize}", pos)
            array = np.frombuffer(data, dtype=dtype).astype(t.numpy_dtype).reshape(t.shape)
            op.set_attrs(value=array)
            used.add(name)
        unused = sorted(set(blobs) - used)
        if unused:
            raise self.error(f"blob(s) {', '.join(unused)} are not used by any constant")


def parse_module(text: str, *, verify: bool = True) -> Module:
    """Parse IR text. With ``verify`` (default) the result is checked by the verifier.

    Any text gives a module or a SparseccError: nesting too deep for the recursive parser and values that
    an op or type rejects while being built are reported as IRParseError."""
    if not isinstance(text, str):
        raise IRParseError(f"IR text must be a str, got {type(text).__name__}")
    try:
        module = _Parser(text).module()
        if verify:
            from .verifier import verify_module

            verify_module(module)
    except RecursionError:
        raise IRParseError("the IR is nested too deeply to parse") from None
    except SparseccError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, ArithmeticError, AttributeError) as exc:
        raise IRParseError(f"malformed IR: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") \
            from None
    return module
