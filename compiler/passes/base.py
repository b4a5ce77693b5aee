"""Passes, the pass registry, pipeline strings and the pass manager.

A pass is a small dataclass with a kebab-case ``name``, its options as fields, and ``apply(module)``; it
keeps no state between runs. Register it with :func:`register_pass` (or, equivalently, by subclassing
:class:`Pass` with a ``name``): no edit inside sparsecc is needed to make a user's pass available to
pipelines, ``sparsecc.compile`` and ``sparsecc opt``::

    @register_pass
    @dataclass
    class CountOps(Pass):
        \"\"\"Reports how many ops the module has.\"\"\"
        name = "count-ops"
        verbose: bool = False
        def apply(self, module): ...

Pipelines are strings: ``"canonicalize,fuse-kwta,compress-weights{format=auto,min-density=0.1}"``.
Option names are the field names with ``-`` or ``_``; values are parsed to the field's type.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TextIO

from ..errors import PassError, SparseccError
from ..ir.core import Module
from ..ir.printer import print_module
from ..ir.verifier import verify_module

_PASSES: dict[str, type[Pass]] = {}
_KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class Pass:
    """Base class of passes (see module docstring). Subclasses are dataclasses."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            _register(cls)

    def apply(self, module: Module) -> None:
        raise NotImplementedError

    def options_text(self) -> str:
        if not dataclasses.is_dataclass(self):
            return ""
        parts = [f"{f.name.replace('_', '-')}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                 if f.init and getattr(self, f.name) != f.default]
        return "{" + ",".join(parts) + "}" if parts else ""

    def __str__(self) -> str:
        return self.name + self.options_text()


def _register(cls: type[Pass]) -> None:
    if not _KEBAB.match(cls.name):
        raise PassError(f"pass name '{cls.name}' must be kebab-case")
    existing = _PASSES.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise PassError(f"pass '{cls.name}' is already registered by {existing.__qualname__}")
    _PASSES[cls.name] = cls


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator making ``cls`` available to pipelines under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)) or not cls.name:
        raise PassError("register_pass needs a Pass subclass with a name")
    _register(cls)
    return cls


def registered_passes() -> dict[str, type[Pass]]:
    _load_builtin_passes()
    return dict(sorted(_PASSES.items()))


def _load_builtin_passes() -> None:
    from . import builtin  # noqa: F401  (registers the built-in passes)


def _convert_option(pass_name: str, field: dataclasses.Field, text: str) -> Any:
    kind = field.type if isinstance(field.type, type) else str(field.type).removesuffix(" | None")
    try:
        if kind in (bool, "bool"):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if kind in (int, "int"):
            return int(text)
        if kind in (float, "float"):
            return float(text)
        return text
    except ValueError:
        raise PassError(f"pass '{pass_name}': option '{field.name}' expects {kind}, got '{text}'") from None


def make_pass(name: str, options: dict[str, str] | None = None) -> Pass:
    """Instantiate a registered pass from string options."""
    _load_builtin_passes()
    cls = _PASSES.get(name)
    if cls is None:
        raise PassError(f"unknown pass '{name}'; known passes: {', '.join(sorted(_PASSES))}")
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    kwargs = {}
    for key, text in (options or {}).items():
        field = fields.get(key.replace("-", "_"))
        if field is None:
            known = ", ".join(n.replace("_", "-") for n in fields) or "none"
            raise PassError(f"pass '{name}' has no option '{key}' (options: {known})")
        kwargs[field.name] = _convert_option(name, field, text)
    try:
        return cls(**kwargs)
    except SparseccError:
        raise
    except (TypeError, ValueError) as exc:
        raise PassError(f"pass '{name}': {exc}") from None


_ITEM = re.compile(r"\s*([A-Za-z0-9_-]+)\s*(?:\{([^{}]*)\})?\s*(?:,|$)")


def parse_pipeline(text: str) -> list[Pass]:
    """``"a,b{x=1,y=z},c"`` -> passes. Raises PassError naming the offending part."""
    passes: list[Pass] = []
    pos = 0
    text = text.strip()
    if not text:
        return passes
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise PassError(f"malformed pipeline at '{text[pos:]}' (expected name or name{{opt=value,...}})")
        options: dict[str, str] = {}
        if m.group(2):
            for item in m.group(2).split(","):
                if "=" not in item:
                    raise PassError(f"pass '{m.group(1)}': option '{item.strip()}' needs the form name=value")
                key, value = item.split("=", 1)
                options[key.strip()] = value.strip()
        passes.append(make_pass(m.group(1), options))
        pos = m.end()
    return passes


@dataclasses.dataclass
class PassTiming:
    name: str
    seconds: float


class PassManager:
    """Runs passes in order, verifying after each; optionally prints the IR after each and times them."""

    def __init__(self, passes: Sequence[Pass] | str, *, verify: bool = True,
                 print_after_all: TextIO | None = None, elide_blobs: bool = True,
                 progress: Callable[[str], None] | None = None) -> None:
        self.passes = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
        self.verify = verify
        self.print_after_all = print_after_all
        self.elide_blobs = elide_blobs
        self.progress = progress
        self.timings: list[PassTiming] = []

    def run(self, module: Module) -> Module:
        for p in self.passes:
            label = str(p)  # as configured, before it runs
            if self.progress:
                self.progress(f"pass {label}")
            start = time.perf_counter()
            try:
                p.apply(module)
            except SparseccError:
                raise
            except Exception as exc:  # a bug in a (possibly user-written) pass: say which pass
                raise PassError(f"pass '{p.name}' failed: {type(exc).__name__}: {exc}") from exc
            self.timings.append(PassTiming(label, time.perf_counter() - start))
            if self.verify:
                try:
                    verify_module(module)
                except SparseccError as exc:
                    raise PassError(f"IR is invalid after pass '{p.name}': {exc}") from None
            if self.print_after_all is not None:
                self.print_after_all.write(f"// ----- IR after {label} -----\n")
                self.print_after_all.write(print_module(module, elide_blobs=self.elide_blobs))
        return module

    def timing_report(self) -> str:
        total = sum(t.seconds for t in self.timings)
        lines = [f"{'pass':<40} {'ms':>10}"]
        lines += [f"{t.name:<40} {t.seconds * 1e3:>10.2f}" for t in self.timings]
        lines.append(f"{'total':<40} {total * 1e3:>10.2f}")
        return "\n".join(lines)
