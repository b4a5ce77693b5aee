"""Structured attributes: small immutable records with a textual mnemonic.

A structured attribute is a frozen dataclass deriving from :class:`StructAttr`. It prints as
``#mnemonic<field=value, ...>`` (fields equal to their default are left out, a record with no fields left
prints as ``#mnemonic``) and checks itself on construction in ``__post_init__``. Encodings of tensor types
and the epilogue stages of fused ops are structured attributes; users may define their own with
:func:`struct_attr`.

Field values are restricted to ``int``, ``float``, ``bool``, ``str`` and tuples of those, which keeps the
textual form exact: the printer writes floats in their shortest round-trip form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform

from ..errors import VerificationError

_REGISTRY: dict[str, type[StructAttr]] = {}

S = TypeVar("S", bound="StructAttr")


class StructAttr:
    """Base class of structured attributes (see module docstring)."""

    mnemonic: ClassVar[str] = ""

    def fields(self) -> dict[str, Any]:
        """Field values that differ from their defaults, in declaration order (what the printer shows)."""
        shown: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            shown[f.name] = value
        return shown


@dataclass_transform(frozen_default=True)
def struct_attr(mnemonic: str) -> Callable[[type[S]], type[S]]:
    """Class decorator: make ``cls`` a frozen dataclass registered under ``mnemonic`` (type checkers see the
    dataclass, as ``dataclass_transform`` tells them)."""

    def wrap(cls: type[S]) -> type[S]:
        if mnemonic in _REGISTRY:
            raise ValueError(f"structured attribute #{mnemonic} is already registered")
        cls.mnemonic = mnemonic
        frozen = dataclasses.dataclass(frozen=True)(cls)
        _REGISTRY[mnemonic] = frozen
        return frozen

    return wrap


def lookup_struct_attr(mnemonic: str) -> type[StructAttr] | None:
    return _REGISTRY.get(mnemonic)


def build_struct_attr(mnemonic: str, values: dict[str, Any]) -> StructAttr:
    """Construct a registered structured attribute from parsed field values (lists become tuples)."""
    cls = _REGISTRY.get(mnemonic)
    if cls is None:
        raise VerificationError(f"unknown attribute #{mnemonic}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise VerificationError(f"#{mnemonic} has no field(s) {', '.join(unknown)}")
    try:
        return cls(**{k: freeze(v) for k, v in values.items()})
    except TypeError as exc:
        raise VerificationError(f"#{mnemonic}: {exc}") from None


def freeze(value: Any) -> Any:
    """Lists (recursively) to tuples, numpy scalars to Python scalars: attribute values are immutable."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if hasattr(value, "item") and not isinstance(value, StructAttr):  # numpy scalar
        return value.item()
    return value


def check(condition: bool, message: str) -> None:
    """Raise :class:`VerificationError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise VerificationError(message)
