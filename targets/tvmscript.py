"""Faster TVMScript macro expansion for the kernel generators (TVM 0.27, pinned).

Every ``T.macro`` call looks up the parser of the function being parsed. TVM does it with
``inspect.getouterframes()``, which builds a ``FrameInfo`` (with source lines: it reads the file of every outer
frame and maps code objects to files through every loaded module) for each frame of the stack, on every macro
call. The generators call macros thousands of times per model: that lookup was ~60 % of compiling a CIFAR VGG19
for llvm (34 s -> 13 s of CPU without it) and ~80 % of a CUDA compile of NotSoDenseNet.

:func:`install` replaces the lookup with a walk of ``frame.f_back`` that returns the same object (the first frame,
innermost first, whose globals hold the parser), so the generated code does not change
(``tests/test_tvmscript.py`` compares both).
"""

from __future__ import annotations

import sys
from typing import Any

from tvm.script.parser.core.parser import ScriptMacro

_ORIGINAL = ScriptMacro._find_parser_def


def _find_parser_def(self: ScriptMacro) -> Any:
    frame = sys._getframe(1)
    while frame is not None:
        parser = frame.f_globals.get(ScriptMacro.parser_object_name)
        if parser is not None:
            return parser
        frame = frame.f_back
    raise RuntimeError(f"{ScriptMacro.parser_object_name} not available")


def install() -> None:
    """Use the frame walk for every ``T.macro`` call (idempotent)."""
    ScriptMacro._find_parser_def = _find_parser_def  # type: ignore[method-assign]


def uninstall() -> None:
    """Back to TVM's own lookup (for tests)."""
    ScriptMacro._find_parser_def = _ORIGINAL  # type: ignore[method-assign]
