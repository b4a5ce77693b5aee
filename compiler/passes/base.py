"""Passes, the pass registry, pipeline strings, the pass manager and its instruments.

A pass is a small **frozen** dataclass with a kebab-case ``name``, its options as fields (fixed when it is
built), and ``apply(module)``, which changes the module and never the pass: a pass object keeps no state
and can run any number of times. Register it with :func:`register_pass` (or, equivalently, by subclassing
:class:`Pass` with a ``name``): no edit inside sparsecc is needed to make a user's pass available to
pipelines, ``sparsecc.compile`` and ``sparsecc opt``::

    @register_pass
    @dataclass(frozen=True)
    class CountOps(Pass):
        \"\"\"Prints how many ops the module has.\"\"\"
        name = "count-ops"
        verbose: bool = False
        def apply(self, module): ...

Pipelines are strings: ``"canonicalize,fuse-kwta,compress-weights{format=auto,min-density=0.1}"``.
Option names are the field names with ``-`` or ``_``; values are parsed to the field's type.

The :class:`PassManager` runs a pipeline; what happens around each pass is done by **instruments**
(:class:`PassInstrument`, after TVM's): verifying the IR (:class:`VerifyIR`, on by default), timing
(:class:`PassTimer`), printing the IR (:class:`PrintIR`) and progress messages (:class:`ReportProgress`).
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
    """Base class of passes (see module docstring). Subclasses are frozen dataclasses."""

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


def check_frozen(p: Pass) -> None:
    """A pass must be a frozen dataclass, so that running it cannot change its options or keep state."""
    params = getattr(type(p), "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise PassError(f"pass '{p.name or type(p).__name__}' must be a frozen dataclass "
                        "(@dataclasses.dataclass(frozen=True)): its options are fixed when it is built and "
                        "apply() changes only the module")


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
    fields: dict[str, dataclasses.Field[Any]] = (
        {f.name: f for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else {})
    kwargs = {}
    for key, text in (options or {}).items():
        field = fields.get(key.replace("-", "_"))
        if field is None:
            known = ", ".join(n.replace("_", "-") for n in fields) or "none"
            raise PassError(f"pass '{name}' has no option '{key}' (options: {known})")
        kwargs[field.name] = _convert_option(name, field, text)
    try:
        made = cls(**kwargs)
    except SparseccError:
        raise
    except (TypeError, ValueError) as exc:
        raise PassError(f"pass '{name}': {exc}") from None
    check_frozen(made)
    return made


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


@dataclasses.dataclass(frozen=True)
class PassTiming:
    name: str
    seconds: float


class PassInstrument:
    """Hooks the pass manager calls around a pipeline run and around each pass (TVM's ``PassInstrument``).

    ``enter_pass_ctx``/``exit_pass_ctx`` bracket a whole :meth:`PassManager.run` (exit also when a pass
    fails); ``run_before_pass``/``run_after_pass`` bracket each pass (after: only when it succeeded, in the
    order the instruments were given). Override what you need; an instrument may raise to stop the run.
    """

    def enter_pass_ctx(self) -> None:
        """Called once before the first pass."""

    def exit_pass_ctx(self) -> None:
        """Called once after the last pass, or after a failure."""

    def run_before_pass(self, module: Module, p: Pass) -> None:
        """Called before ``p`` runs on ``module``."""

    def run_after_pass(self, module: Module, p: Pass) -> None:
        """Called after ``p`` ran on ``module`` without error."""


class VerifyIR(PassInstrument):
    """Verify the module after each pass; invalid IR is a :class:`PassError` naming the pass."""

    def run_after_pass(self, module: Module, p: Pass) -> None:
        try:
            verify_module(module)
        except SparseccError as exc:
            raise PassError(f"IR is invalid after pass '{p.name}': {exc}") from None


class PassTimer(PassInstrument):
    """Time each pass (wall clock); ``timings`` and :meth:`report` give the results of the last run."""

    def __init__(self) -> None:
        self.timings: list[PassTiming] = []
        self._start = 0.0

    def enter_pass_ctx(self) -> None:
        self.timings = []

    def run_before_pass(self, module: Module, p: Pass) -> None:
        self._start = time.perf_counter()

    def run_after_pass(self, module: Module, p: Pass) -> None:
        self.timings.append(PassTiming(str(p), time.perf_counter() - self._start))

    def report(self) -> str:
        """A table: one line per pass with its milliseconds, then the total."""
        total = sum(t.seconds for t in self.timings)
        lines = [f"{'pass':<40} {'ms':>10}"]
        lines += [f"{t.name:<40} {t.seconds * 1e3:>10.2f}" for t in self.timings]
        lines.append(f"{'total':<40} {total * 1e3:>10.2f}")
        return "\n".join(lines)


class PrintIR(PassInstrument):
    """Write the IR after each pass to ``stream``, under a ``// ----- IR after PASS -----`` line."""

    def __init__(self, stream: TextIO, *, elide_blobs: bool = True) -> None:
        self.stream = stream
        self.elide_blobs = elide_blobs

    def run_after_pass(self, module: Module, p: Pass) -> None:
        self.stream.write(f"// ----- IR after {p} -----\n")
        self.stream.write(print_module(module, elide_blobs=self.elide_blobs))


class ReportProgress(PassInstrument):
    """Call ``callback("pass NAME{options}")`` before each pass (the CLI's progress line)."""

    def __init__(self, callback: Callable[[str], None]) -> None:
        self.callback = callback

    def run_before_pass(self, module: Module, p: Pass) -> None:
        self.callback(f"pass {p}")


class PassManager:
    """Runs passes in order, with instruments around each pass.

    The keyword shortcuts build the standard instruments: ``verify`` (:class:`VerifyIR`, default on),
    ``print_after_all`` (:class:`PrintIR` to that stream), ``progress`` (:class:`ReportProgress`); a
    :class:`PassTimer` is always there (``timings``, :meth:`timing_report`). ``instruments`` come after them.
    """

    def __init__(self, passes: Sequence[Pass] | str, *, verify: bool = True,
                 print_after_all: TextIO | None = None, elide_blobs: bool = True,
                 progress: Callable[[str], None] | None = None,
                 instruments: Sequence[PassInstrument] = ()) -> None:
        self.passes = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
        for p in self.passes:
            check_frozen(p)
        self.timer = PassTimer()
        standard: list[PassInstrument] = [ReportProgress(progress)] if progress else []
        standard.append(self.timer)
        if verify:
            standard.append(VerifyIR())
        if print_after_all is not None:
            standard.append(PrintIR(print_after_all, elide_blobs=elide_blobs))
        self.instruments: list[PassInstrument] = [*standard, *instruments]

    @property
    def timings(self) -> list[PassTiming]:
        return self.timer.timings

    def run(self, module: Module) -> Module:
        for instrument in self.instruments:
            instrument.enter_pass_ctx()
        try:
            for p in self.passes:
                for instrument in self.instruments:
                    instrument.run_before_pass(module, p)
                try:
                    p.apply(module)
                except SparseccError:
                    raise
                except Exception as exc:  # a bug in a (possibly user-written) pass: say which pass
                    raise PassError(f"pass '{p.name}' failed: {type(exc).__name__}: {exc}") from exc
                for instrument in self.instruments:
                    instrument.run_after_pass(module, p)
        finally:
            for instrument in self.instruments:
                instrument.exit_pass_ctx()
        return module

    def timing_report(self) -> str:
        return self.timer.report()
