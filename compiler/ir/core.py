"""Values, operations, functions and modules.

Mutation style: **mutable operations with use lists** (as in MLIR). Every :class:`Value` knows its uses;
operands are changed only through :meth:`Operation.set_operand` (or the rewriter, which uses it), so the use
lists stay right. Types and attributes themselves are immutable; an op's attributes are replaced, never
edited in place.

Ops are declared classes. A subclass of :class:`Operation` states its ``name`` (``"nn.conv2d"``), its operand
slots and attributes as class-level declarations, how it infers result types, and optional extra checks in
``verify``::

    @register_op
    class Scale(Operation):
        \"\"\"x * factor elementwise.\"\"\"
        name = "nn.scale"
        input = operand_def()              # op.input: Value
        bias = opt_operand_def()           # op.bias: Value | None
        factor = attr_def(float, 1.0)      # op.factor: float
        def infer_types(self):
            return [self.input.type]

The declarations are typed descriptors: on an op, ``op.input`` is a :class:`Value`, ``op.bias`` a
``Value | None``, ``op.factor`` a ``float`` — a type checker sees the same. They also fill the class's
``operands`` and ``attributes`` tables (:class:`Operand`, :class:`Attr`), which generic code (the parser,
printer, verifier, interpreter) reads together with ``op.operand(name)`` and ``op.attr(name)``. A class may
still give those tables directly instead of declaring descriptors.

Create ops with ``Scale.create(x, factor=2.0)`` (attributes and optional operands by keyword). A module is
one function ``main`` holding a straight-line list of ops in SSA order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, overload

import numpy as np

from ..errors import VerificationError
from .attributes import StructAttr, freeze
from .types import TensorType


class Value:
    """An SSA value: a function argument or the result of an operation."""

    __slots__ = ("_type", "index", "name", "owner", "uses")

    def __init__(self, type: TensorType, name: str | None = None, owner: Operation | None = None, index: int = 0):
        if not isinstance(type, TensorType):
            raise VerificationError(f"value type must be a TensorType, got {type!r}")
        self._type = type
        self.name = name
        self.owner = owner
        self.index = index
        self.uses: list[Use] = []

    @property
    def type(self) -> TensorType:
        return self._type

    def set_type(self, type: TensorType) -> None:
        """Change the type (passes that specialise shapes or choose an encoding do this)."""
        if not isinstance(type, TensorType):
            raise VerificationError(f"value type must be a TensorType, got {type!r}")
        self._type = type

    @property
    def users(self) -> list[Operation]:
        """Distinct ops using this value, in first-use order."""
        seen: dict[int, Operation] = {}
        for use in self.uses:
            seen.setdefault(id(use.op), use.op)
        return list(seen.values())

    def has_one_use(self) -> bool:
        return len(self.uses) == 1

    def replace_all_uses_with(self, new: Value) -> None:
        for use in list(self.uses):
            use.op.set_operand(use.index, new)

    def __repr__(self) -> str:
        return f"<Value %{self.name} : {self.type}>"


@dataclasses.dataclass(frozen=True)
class Use:
    op: Operation
    index: int


@dataclasses.dataclass(frozen=True)
class Operand:
    """An operand slot. ``kind``: ``single`` (required), ``optional`` or ``variadic`` (zero or more)."""

    name: str
    kind: str = "single"

    def __post_init__(self) -> None:
        if self.kind not in ("single", "optional", "variadic"):
            raise ValueError(f"bad operand kind {self.kind!r}")


_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Attr:
    """An attribute slot: a name, a kind (a type, tuple of types or checker) and a default.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``, ``"ints"`` (tuple of ints), ``"floats"``,
    a :class:`StructAttr` subclass, ``"structs"`` (tuple of structured attributes), or ``"tensor"``
    (a numpy array, only for constants). ``choices`` restricts a ``str`` attribute, ``length`` the number of
    items of an ``"ints"`` attribute.
    """

    name: str
    kind: Any
    default: Any = _REQUIRED
    choices: tuple[str, ...] | None = None
    length: int | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def coerce(self, op_name: str, value: Any) -> Any:
        value = freeze(value) if self.kind != "tensor" else value
        where = f"{op_name}: attribute '{self.name}'"
        kind = self.kind
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            if isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            ok = isinstance(value, float)
        elif kind is bool:
            ok = isinstance(value, bool)
        elif kind is str:
            ok = isinstance(value, str) and (self.choices is None or value in self.choices)
            if isinstance(value, str) and not ok:
                raise VerificationError(f"{where} must be one of {list(self.choices or ())}, got '{value}'")
        elif kind == "ints":
            ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            if ok and self.length is not None and len(value) != self.length:
                raise VerificationError(f"{where} must be {self.length} ints, got {list(value)}")
        elif kind == "floats":
            value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value) \
                if isinstance(value, tuple) else value
            ok = isinstance(value, tuple) and all(isinstance(v, float) for v in value)
        elif kind == "structs":
            ok = isinstance(value, tuple) and all(isinstance(v, StructAttr) for v in value)
        elif kind == "tensor":
            ok = isinstance(value, np.ndarray)
            if ok:
                value = np.asarray(value, order="C")
                value.setflags(write=False)
        elif isinstance(kind, type) and issubclass(kind, StructAttr):
            ok = isinstance(value, kind)
        else:  # pragma: no cover - a mistake in an op declaration
            raise TypeError(f"{where}: unknown attribute kind {kind!r}")
        if not ok:
            raise VerificationError(f"{where} has the wrong kind of value: {value!r}")
        return value


# -- declarations: typed descriptors ----------------------------------------------------------------------
T = TypeVar("T")
S = TypeVar("S", bound=StructAttr)


class _OperandDef:
    """Base of operand declarations; ``__set_name__`` gives each its slot name."""

    kind: ClassVar[str] = "single"

    def __init__(self) -> None:
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def slot(self) -> Operand:
        return Operand(self.name, self.kind)

    def __set__(self, obj: Operation, value: Any) -> None:
        raise AttributeError(f"operand '{self.name}' is changed with set_operand or the rewriter, not assigned")


class OperandDef(_OperandDef):
    """A required operand: ``op.<name>`` is its :class:`Value`."""

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Operation, owner: type | None = None) -> Value: ...
    def __get__(self, obj: Operation | None, owner: type | None = None) -> Value | Self:
        return self if obj is None else obj.operand_group(self.name)[0]  # a required slot holds one value


class OptOperandDef(_OperandDef):
    """An optional operand: ``op.<name>`` is its :class:`Value` or None when absent."""

    kind = "optional"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Operation, owner: type | None = None) -> Value | None: ...
    def __get__(self, obj: Operation | None, owner: type | None = None) -> Value | Self | None:
        return self if obj is None else obj.operand(self.name)


class VarOperandDef(_OperandDef):
    """A variadic operand (zero or more values): ``op.<name>`` is a tuple of values."""

    kind = "variadic"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Operation, owner: type | None = None) -> tuple[Value, ...]: ...
    def __get__(self, obj: Operation | None, owner: type | None = None) -> tuple[Value, ...] | Self:
        return self if obj is None else obj.operand_group(self.name)


def operand_def() -> OperandDef:
    """Declare a required operand slot."""
    return OperandDef()


def opt_operand_def() -> OptOperandDef:
    """Declare an optional operand slot (given by keyword to ``create``)."""
    return OptOperandDef()


def var_operand_def() -> VarOperandDef:
    """Declare a variadic operand slot (at most one per op)."""
    return VarOperandDef()


class AttrDef(Generic[T]):
    """An attribute declaration: ``op.<name>`` is the attribute's value, of type ``T``."""

    def __init__(self, kind: Any, default: Any = _REQUIRED, choices: tuple[str, ...] | None = None,
                 length: int | None = None) -> None:
        self.name = ""
        self.kind = kind
        self.default = default
        self.choices = choices
        self.length = length

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def slot(self) -> Attr:
        kind = "ints" if self.length is not None else self.kind
        return Attr(self.name, kind, self.default, self.choices, self.length)

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Operation, owner: type | None = None) -> T: ...
    def __get__(self, obj: Operation | None, owner: type | None = None) -> T | Self:
        return self if obj is None else obj.attr(self.name)

    def __set__(self, obj: Operation, value: Any) -> None:
        raise AttributeError(f"attribute '{self.name}' is changed with set_attrs or the rewriter, not assigned")


@overload
def attr_def(kind: type[bool], default: bool = ...) -> AttrDef[bool]: ...
@overload
def attr_def(kind: type[int], default: int = ...) -> AttrDef[int]: ...
@overload
def attr_def(kind: type[float], default: float = ...) -> AttrDef[float]: ...
@overload
def attr_def(kind: type[str], default: str = ..., *, choices: tuple[str, ...] | None = None) -> AttrDef[str]: ...
@overload
def attr_def(kind: type[S], default: S = ...) -> AttrDef[S]: ...
@overload
def attr_def(kind: Literal["ints"], default: tuple[int, ...] = ...) -> AttrDef[tuple[int, ...]]: ...
@overload
def attr_def(kind: Literal["ints2"], default: tuple[int, int] = ...) -> AttrDef[tuple[int, int]]: ...
@overload
def attr_def(kind: Literal["ints4"], default: tuple[int, int, int, int] = ...
             ) -> AttrDef[tuple[int, int, int, int]]: ...
@overload
def attr_def(kind: Literal["floats"], default: tuple[float, ...] = ...) -> AttrDef[tuple[float, ...]]: ...
@overload
def attr_def(kind: Literal["structs"], default: tuple[StructAttr, ...] = ...) -> AttrDef[tuple[StructAttr, ...]]: ...
@overload
def attr_def(kind: Literal["tensor"], default: np.ndarray = ...) -> AttrDef[np.ndarray]: ...
def attr_def(kind: Any, default: Any = _REQUIRED, *, choices: tuple[str, ...] | None = None) -> AttrDef[Any]:
    """Declare an attribute of ``kind`` (see :class:`Attr`; ``"ints2"``/``"ints4"``: exactly 2/4 ints) with
    an optional ``default`` (none: the attribute is required)."""
    length = {"ints2": 2, "ints4": 4}.get(kind) if isinstance(kind, str) else None
    return AttrDef(kind, default, choices, length)


def _declared(cls: type, base: type) -> list[Any]:
    """The descriptors of type ``base`` visible on ``cls``, base classes' first, in declaration order (a
    subclass that declares a name again replaces the declaration in its place)."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for attr_name, value in vars(klass).items():
            if isinstance(value, base):
                found[attr_name] = value
    return list(found.values())


_OP_REGISTRY: dict[str, type[Operation]] = {}


def register_op(cls: type[Operation]) -> type[Operation]:
    """Class decorator registering an op class under its ``name`` (used by the parser)."""
    if not cls.name or ("." not in cls.name and cls.name != "const"):
        raise ValueError(f"op class {cls.__name__} needs a dotted name such as 'nn.relu'")
    if cls.name in _OP_REGISTRY and _OP_REGISTRY[cls.name] is not cls:
        raise ValueError(f"op name {cls.name} is already registered by {_OP_REGISTRY[cls.name].__name__}")
    names = [o.name for o in cls.operands] + [a.name for a in cls.attributes]
    if len(set(names)) != len(names):
        raise ValueError(f"{cls.__name__}: operand and attribute names must be distinct")
    if sum(o.kind == "variadic" for o in cls.operands) > 1:
        raise ValueError(f"{cls.__name__}: at most one variadic operand")
    _OP_REGISTRY[cls.name] = cls
    return cls


def lookup_op(name: str) -> type[Operation] | None:
    return _OP_REGISTRY.get(name)


def registered_ops() -> Mapping[str, type[Operation]]:
    return MappingProxyType(_OP_REGISTRY)


class Operation:
    """Base class of all ops (see module docstring)."""

    name: ClassVar[str] = ""
    operands: ClassVar[tuple[Operand, ...]] = ()
    attributes: ClassVar[tuple[Attr, ...]] = ()
    num_results: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        operand_defs, attr_defs = _declared(cls, _OperandDef), _declared(cls, AttrDef)
        if operand_defs:
            if "operands" in cls.__dict__:
                raise TypeError(f"{cls.__name__}: declare operands either with operand_def() or in 'operands'")
            cls.operands = tuple(d.slot for d in operand_defs)
        if attr_defs:
            if "attributes" in cls.__dict__:
                raise TypeError(f"{cls.__name__}: declare attributes either with attr_def() or in 'attributes'")
            cls.attributes = tuple(d.slot for d in attr_defs)

    def __init__(
        self,
        operands: Sequence[Value | Sequence[Value] | None],
        attrs: Mapping[str, Any] | None = None,
        result_types: Sequence[TensorType] | None = None,
        result_names: Sequence[str | None] | None = None,
    ) -> None:
        """``operands`` has one entry per declared slot: a Value, None (absent optional) or a list (variadic)."""
        cls_operands = type(self).operands
        if len(operands) != len(cls_operands):
            raise VerificationError(f"{self.name} takes {len(cls_operands)} operand slot(s), got {len(operands)}")
        self._segments: list[int] = []
        self._operands: list[Value] = []
        self.function: Function | None = None
        for spec, given in zip(cls_operands, operands, strict=True):
            group = self._normalise_slot(spec, given)
            self._segments.append(len(group))
            for value in group:
                self._operands.append(value)
                value.uses.append(Use(self, len(self._operands) - 1))
        self._attrs = MappingProxyType(self._coerce_attrs(attrs or {}))
        types = list(result_types) if result_types is not None else list(self.infer_types())
        if len(types) != self.num_results:
            raise VerificationError(f"{self.name} has {self.num_results} result(s), got {len(types)} type(s)")
        names = list(result_names) if result_names is not None else [None] * len(types)
        self.results: tuple[Value, ...] = tuple(
            Value(t, n, owner=self, index=i) for i, (t, n) in enumerate(zip(types, names, strict=True))
        )

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, *operands: Value | Sequence[Value], name: str | None = None, **kwargs: Any) -> Self:
        """Build an op: required/variadic operands positionally, optional operands and attributes by keyword."""
        slots: list[Value | Sequence[Value] | None] = []
        positional = list(operands)
        for spec in cls.operands:
            if spec.kind == "optional":
                slots.append(kwargs.pop(spec.name, None))
            elif positional:
                slots.append(positional.pop(0))
            elif spec.kind == "variadic":
                slots.append(kwargs.pop(spec.name, []))
            else:
                raise VerificationError(f"{cls.name}: missing operand '{spec.name}'")
        if positional:
            raise VerificationError(f"{cls.name}: {len(positional)} operand(s) too many")
        op = cls(slots, kwargs)
        if name is not None and op.results:
            op.results[0].name = name
        return op

    def _normalise_slot(self, spec: Operand, given: Any) -> list[Value]:
        if spec.kind == "variadic":
            group = list(given or [])
        elif given is None:
            if spec.kind == "single":
                raise VerificationError(f"{self.name}: operand '{spec.name}' is required")
            group = []
        else:
            group = [given]
        for v in group:
            if not isinstance(v, Value):
                raise VerificationError(f"{self.name}: operand '{spec.name}' must be a Value, got {type(v).__name__}")
        return group

    def _coerce_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        known = {a.name: a for a in type(self).attributes}
        unknown = sorted(set(attrs) - set(known))
        if unknown:
            raise VerificationError(f"{self.name}: unknown attribute(s) {', '.join(unknown)}")
        out: dict[str, Any] = {}
        for spec in type(self).attributes:
            if spec.name in attrs:
                out[spec.name] = spec.coerce(self.name, attrs[spec.name])
            elif spec.required:
                raise VerificationError(f"{self.name}: attribute '{spec.name}' is required")
            else:
                out[spec.name] = spec.default
        return out

    # -- operands -----------------------------------------------------------------------------------------
    @property
    def operand_values(self) -> tuple[Value, ...]:
        return tuple(self._operands)

    def _slot_range(self, name: str) -> tuple[Operand, int, int]:
        start = 0
        for spec, size in zip(type(self).operands, self._segments, strict=True):
            if spec.name == name:
                return spec, start, size
            start += size
        raise KeyError(f"{self.name} has no operand '{name}'")

    def operand(self, name: str) -> Value | None:
        """The value in a single or optional slot (None if an optional slot is empty)."""
        spec, start, size = self._slot_range(name)
        if spec.kind == "variadic":
            raise KeyError(f"{self.name}: operand '{name}' is variadic; use operand_group")
        return self._operands[start] if size else None

    def operand_group(self, name: str) -> tuple[Value, ...]:
        _, start, size = self._slot_range(name)
        return tuple(self._operands[start : start + size])

    def operand_slots(self) -> list[Value | tuple[Value, ...] | None]:
        """One entry per declared slot, as the constructor takes them."""
        out: list[Value | tuple[Value, ...] | None] = []
        start = 0
        for spec, size in zip(type(self).operands, self._segments, strict=True):
            group = tuple(self._operands[start : start + size])
            out.append(group if spec.kind == "variadic" else (group[0] if group else None))
            start += size
        return out

    def set_operand(self, index: int | str, value: Value) -> None:
        """Replace the flat operand ``index`` (or the value of the single/optional slot so named, which must
        hold one), keeping use lists right."""
        if isinstance(index, str):
            spec, index, size = self._slot_range(index)
            if spec.kind == "variadic" or not size:
                raise VerificationError(f"{self.name}: operand slot '{spec.name}' holds no single value to replace")
        old = self._operands[index]
        old.uses = [u for u in old.uses if not (u.op is self and u.index == index)]
        self._operands[index] = value
        value.uses.append(Use(self, index))

    def drop_operand_uses(self) -> None:
        """Remove this op from the use lists of its operands (before erasing it)."""
        for value in set(self._operands):
            value.uses = [u for u in value.uses if u.op is not self]

    # -- attributes and results ---------------------------------------------------------------------------
    @property
    def attrs(self) -> Mapping[str, Any]:
        return self._attrs

    def attr(self, name: str) -> Any:
        return self._attrs[name]

    def set_attrs(self, **changes: Any) -> None:
        """Replace attribute values (checked like at construction)."""
        merged = dict(self._attrs)
        merged.update(changes)
        self._attrs = MappingProxyType(self._coerce_attrs(merged))

    def non_default_attrs(self) -> dict[str, Any]:
        out = {}
        for spec in type(self).attributes:
            value = self._attrs[spec.name]
            if spec.required or not _attr_equal(value, spec.default):
                out[spec.name] = value
        return out

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise VerificationError(f"{self.name} has {len(self.results)} results")
        return self.results[0]

    # -- semantics hooks ----------------------------------------------------------------------------------
    def infer_types(self) -> list[TensorType]:
        """Result types from operand types and attributes. Subclasses must implement."""
        raise NotImplementedError(f"{type(self).__name__}.infer_types")

    def verify(self) -> None:
        """Extra op-specific checks; raise VerificationError. Result types are checked by the verifier."""

    def types_match(self) -> bool:
        """Whether the stored result types are what ``infer_types`` derives (the verifier's type check)."""
        return [r.type for r in self.results] == list(self.infer_types())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _attr_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return False
    return bool(a == b)


OpT = TypeVar("OpT", bound=Operation)


class Function:
    """A straight-line SSA function: arguments, ops in order, returned values with their output names."""

    def __init__(self, name: str, args: Sequence[Value], output_names: Sequence[str] | None = None) -> None:
        self.name = name
        self.args: list[Value] = list(args)
        self.ops: list[Operation] = []
        self._outputs: list[Value] = []
        self.output_names: list[str] = list(output_names or [])

    @property
    def outputs(self) -> tuple[Value, ...]:
        return tuple(self._outputs)

    def set_outputs(self, values: Sequence[Value], names: Sequence[str] | None = None) -> None:
        self._outputs = list(values)
        if names is not None:
            self.output_names = list(names)
        if len(self.output_names) != len(self._outputs):
            raise VerificationError(
                f"function @{self.name} returns {len(self._outputs)} value(s) but names {len(self.output_names)}"
            )

    def replace_output(self, old: Value, new: Value) -> None:
        self._outputs = [new if v is old else v for v in self._outputs]

    def append(self, op: Operation) -> Operation:
        op.function = self
        self.ops.append(op)
        return op

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        op.function = self
        self.ops.insert(self.ops.index(anchor), op)
        return op

    def remove(self, op: Operation) -> None:
        self.ops.remove(op)
        op.function = None

    @overload
    def walk(self, op_type: None = None) -> Iterator[Operation]: ...
    @overload
    def walk(self, op_type: type[OpT] | tuple[type[OpT], ...]) -> Iterator[OpT]: ...
    def walk(self, op_type: type[Operation] | tuple[type[Operation], ...] | None = None) -> Iterator[Operation]:
        """Ops in order (a snapshot, safe against mutation), optionally only of the given class(es)."""
        for op in list(self.ops):
            if op_type is None or isinstance(op, op_type):
                yield op

    def is_output(self, value: Value) -> bool:
        return any(v is value for v in self._outputs)

    def is_dead(self, value: Value) -> bool:
        return not value.uses and not self.is_output(value)


class Module:
    """A compilation unit: a name and one function ``main``."""

    def __init__(self, name: str, func: Function) -> None:
        self.name = name
        self.func = func

    @overload
    def walk(self, op_type: None = None) -> Iterator[Operation]: ...
    @overload
    def walk(self, op_type: type[OpT] | tuple[type[OpT], ...]) -> Iterator[OpT]: ...
    def walk(self, op_type: type[Operation] | tuple[type[Operation], ...] | None = None) -> Iterator[Operation]:
        """Ops of ``func`` in order, optionally only of the given class(es) (see :meth:`Function.walk`)."""
        return self.func.walk(op_type)

    def count(self, op_type: type[Operation] | tuple[type[Operation], ...]) -> int:
        return sum(1 for _ in self.walk(op_type))

    def clone(self) -> Module:
        """A deep copy (via the textual form's object graph, constants shared read-only)."""
        from .clone import clone_module

        return clone_module(self)

    def __str__(self) -> str:
        from .printer import print_module

        return print_module(self)
