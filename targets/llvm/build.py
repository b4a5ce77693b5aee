"""Code generation for the llvm target in a child process, so that an LLVM fatal error is an exception.

LLVM reports some failures (``Cannot select``, ``Do not know how to split``) by printing ``LLVM ERROR: ...`` and
calling ``abort()``: inside the user's process that would kill it. :func:`build_library` forks, lets the child run
TVM's build and export the shared library, and turns a child that died or failed into a :class:`CompileError`
carrying LLVM's message. Where ``fork`` does not exist, the build runs in-process.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from ...compiler.errors import CompileError

#: exit status of a child whose build raised a Python exception (its message is in the log)
_FAILED = 3
_MARK = "sparsecc-build-error: "


def run_isolated(job: Callable[[], None], what: str) -> None:
    """Run ``job`` in a forked child; a signal or an error there becomes a CompileError naming ``what``."""
    if not hasattr(os, "fork"):
        job()
        return
    with tempfile.TemporaryFile(mode="w+b") as log:
        pid = os.fork()
        if pid == 0:  # the child: never return into the caller's stack
            status = 0
            try:
                import faulthandler

                faulthandler.disable()  # LLVM's abort() is reported by the parent, not dumped as a Python crash
                os.dup2(log.fileno(), 2)
                job()
            except BaseException as exc:  # reported to the parent through the log
                os.write(2, f"\n{_MARK}{type(exc).__name__}: {exc}\n".encode(errors="replace"))
                status = _FAILED
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        if wait_status == 0:
            return
        log.seek(0)
        text = log.read().decode(errors="replace")
    raise CompileError(f"{what} failed: {_diagnose(text, wait_status)}")


def _diagnose(text: str, wait_status: int) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    llvm = [line for line in lines if line.startswith("LLVM ERROR")]
    detail = next((line for line in lines if line.startswith("In function:")), "")
    if llvm:
        return f"{llvm[0]}{f' ({detail})' if detail else ''}"
    marked = [line[len(_MARK):] for line in lines if line.startswith(_MARK)]
    if marked:
        return marked[-1].splitlines()[0][:500]
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        tail = lines[-1][:300] if lines else "no message"
        return f"the code generator died with {name} ({tail})"
    return lines[-1][:500] if lines else f"exit status {os.WEXITSTATUS(wait_status)}"


def build_library(irmod: object, target: object, library: Path, *, cross_compiler: str | None = None,
                  llvm_ir: Path | None = None) -> None:
    """``relax.build`` the module for ``target`` and export the shared library ``library`` (isolated);
    ``cross_compiler`` links for another architecture; ``llvm_ir`` receives the kernels' LLVM IR."""

    def job() -> None:
        from tvm import relax

        from ..relax_lowering import relax_pipeline

        executable = relax.build(irmod, target=target, relax_pipeline=relax_pipeline(target))
        if llvm_ir is not None:
            text = "\n".join(str(m.inspect_source("ll")) for m in executable.mod.imports if m.kind == "llvm")
            llvm_ir.write_text(text)
        if cross_compiler is not None:
            from tvm.support.cc import cross_compiler as make_cross

            executable.export_library(str(library), fcompile=make_cross(cross_compiler))
        else:
            executable.export_library(str(library))

    run_isolated(job, "code generation")
