"""C-simulation bridge of the HLS target: compile HLS C++ with g++ and run it on numpy arrays.

Vitis HLS is not needed: the sources are compiled by ``g++ -std=c++14 -O2`` against the Xilinx ``ap_types``
headers (``ap_int.h``, ``ap_fixed.h``, ``hls_stream.h``) that the hls4ml wheel ships, and against the
sparsecc kernel headers (``#include <sparsecc/sparsecc.h>``). HLS pragmas are ignored by g++.

Two ways to run what was compiled:

* a **shared library** whose ``extern "C"`` entry points take pointers to arrays (and plain ``int`` /
  ``double`` scalars): ``SharedLibrary(compile_cpp(..., shared=True))``, then :meth:`SharedLibrary.call`;
* an **executable** testbench that reads and writes raw little-endian binary files:
  ``compile_cpp(..., shared=False)`` + :func:`run_executable`, with :func:`write_binary` / :func:`read_binary`.

Builds are cached in the build directory by content: the key hashes the compiler, the flags and the content
of every file the compilation read (from the compiler's own dependency list), so an edit to any included
header rebuilds, and an unchanged build is reused across processes.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from sparsecc.compiler.errors import CompileError, SparseccError

#: Flags of every C-simulation build. ``-ffp-contract=off`` keeps float arithmetic to separately rounded
#: multiplies and adds (no FMA contraction), as the hardware computes it.
BASE_FLAGS: tuple[str, ...] = (
    "-std=c++14",
    "-O2",
    "-ffp-contract=off",
    "-Wno-unknown-pragmas",
    "-Wno-unused-label",
)

#: How many lines of compiler output a CompileError quotes, starting at the first error.
ERROR_LINES = 25

#: Hex digits of the content hash in a build's file name.
_KEY_LENGTH = 20


class CSimulationError(SparseccError):
    """A C-simulation program or library failed at run time (non-zero exit, missing entry point)."""


def ap_types_include_dir() -> Path:
    """The ``ap_types`` headers of the installed hls4ml package (found without importing hls4ml)."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise CompileError(
            "the HLS C-simulation needs the ap_types headers shipped by hls4ml, but hls4ml is not installed "
            "(pip install hls4ml==1.3.0)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "templates" / "vivado" / "ap_types"
        if (candidate / "ap_fixed.h").is_file():
            return candidate
    raise CompileError(
        f"hls4ml is installed at {list(spec.submodule_search_locations)} but has no "
        "templates/vivado/ap_types/ap_fixed.h"
    )


def kernel_include_dir() -> Path:
    """The directory holding ``sparsecc/*.h``, the hand-written HLS kernel headers."""
    return Path(__file__).resolve().parent / "include"


@functools.cache
def _compiler_identity(compiler: str) -> str:
    """Path and version line of a compiler (part of every cache key)."""
    path = shutil.which(compiler)
    if path is None:
        raise CompileError(f"the HLS C-simulation needs the C++ compiler '{compiler}', which is not on PATH")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return f"{path}\n{version.stdout.splitlines()[0] if version.stdout else ''}"


def _parse_depfile(text: str) -> list[Path]:
    """The prerequisites of a make-style dependency file written by ``g++ -MD``."""
    body = text.replace("\\\n", " ")
    _, _, prerequisites = body.partition(": ")
    words: list[str] = []
    current = ""
    escaped = False
    for char in prerequisites:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    if current:
        words.append(current)
    return [Path(word).resolve() for word in words]


def _cache_key(identity: str, command: Sequence[str], dependencies: Sequence[Path]) -> str | None:
    """Hash of compiler, command and dependency contents; None when a dependency no longer exists."""
    digest = hashlib.sha256()
    digest.update(identity.encode())
    digest.update("\0".join(command).encode())
    for path in sorted(set(dependencies)):
        try:
            content = path.read_bytes()
        except OSError:
            return None
        digest.update(str(path).encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()[:_KEY_LENGTH]


def _remove_stale_builds(build: Path, name: str, suffix: str, keep: Path) -> None:
    """Delete earlier builds of ``name`` (other keys); a process that loaded one keeps its mapping."""
    stale = re.compile(rf"{re.escape(name)}-[0-9a-f]{{{_KEY_LENGTH}}}{re.escape(suffix)}")
    for candidate in build.iterdir():
        if candidate != keep and stale.fullmatch(candidate.name):
            candidate.unlink(missing_ok=True)


def _error_excerpt(output: str) -> str:
    """The compiler output from its first error on, at most ERROR_LINES lines."""
    lines = output.splitlines()
    first = next((n for n, line in enumerate(lines) if "error" in line), 0)
    return "\n".join(lines[first : first + ERROR_LINES])


def compile_cpp(
    sources: Sequence[str | os.PathLike[str]],
    build_dir: str | os.PathLike[str],
    name: str,
    *,
    shared: bool,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, str | None] | None = None,
    extra_flags: Sequence[str] = (),
    compiler: str = "g++",
) -> Path:
    """Compile C++ sources with the C-simulation flags into ``build_dir`` and return the output's path.

    The include path holds, in order, ``include_dirs``, the sparsecc kernel headers and (as a system
    directory, so its warnings are silenced) hls4ml's ap_types headers. ``defines`` become ``-DNAME[=VALUE]``.
    The output is ``<name>-<key>.so`` (``shared``) or ``<name>-<key>`` (executable); an existing build with
    the same key is reused. Raises CompileError with the first error lines when g++ fails; the full log
    is kept in ``<build_dir>/<name>.log``.
    """
    if not sources:
        raise CompileError(f"nothing to compile for '{name}': no sources given")
    source_paths = [Path(source).resolve() for source in sources]
    for source in source_paths:
        if not source.is_file():
            raise CompileError(f"C++ source {source} does not exist")
    build = Path(build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)

    flags = [*BASE_FLAGS, *(["-shared", "-fPIC"] if shared else []), *extra_flags]
    for key, value in (defines or {}).items():
        flags.append(f"-D{key}" if value is None else f"-D{key}={value}")
    for directory in include_dirs:
        flags += ["-I", str(Path(directory).resolve())]
    flags += ["-I", str(kernel_include_dir()), "-isystem", str(ap_types_include_dir())]
    command = [*flags, *map(str, source_paths)]
    identity = _compiler_identity(compiler)
    suffix = ".so" if shared else ""
    manifest = build / f"{name}.deps.json"

    if manifest.is_file():
        try:
            recorded = [Path(p) for p in json.loads(manifest.read_text())["dependencies"]]
        except (ValueError, KeyError, TypeError):
            recorded = []
        key = _cache_key(identity, command, recorded) if recorded else None
        if key is not None and (build / f"{name}-{key}{suffix}").is_file():
            return build / f"{name}-{key}{suffix}"

    with tempfile.TemporaryDirectory(dir=build, prefix=f".{name}-") as scratch:
        output = Path(scratch) / f"{name}{suffix}"
        depfile = Path(scratch) / f"{name}.d"
        argv = [compiler, *command, "-MD", "-MF", str(depfile), "-o", str(output)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        log = build / f"{name}.log"
        log.write_text(f"$ {shlex.join(argv)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise CompileError(f"g++ failed to compile '{name}' (full log: {log}):\n{_error_excerpt(result.stderr)}")
        dependencies = _parse_depfile(depfile.read_text())
        key = _cache_key(identity, command, dependencies)
        if key is None:
            raise CompileError(f"a file read while compiling '{name}' vanished during the build")
        target = build / f"{name}-{key}{suffix}"
        os.replace(output, target)
        _remove_stale_builds(build, name, suffix, keep=target)
        staged_manifest = Path(scratch) / manifest.name
        staged_manifest.write_text(json.dumps({"dependencies": [str(p) for p in dependencies]}, indent=1))
        os.replace(staged_manifest, manifest)
    return target


_CArgument = ctypes.c_void_p | ctypes.c_int | ctypes.c_double


def _c_argument(value: object, symbol: str, position: int) -> _CArgument:
    """One argument of an ``extern "C"`` call: arrays by pointer, ints as int, floats as double."""
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            raise CSimulationError(f"argument {position} of {symbol}: the array must be C-contiguous")
        return ctypes.c_void_p(value.ctypes.data)
    if isinstance(value, bool | int | np.integer):
        return ctypes.c_int(int(value))
    if isinstance(value, float | np.floating):
        return ctypes.c_double(float(value))
    raise CSimulationError(f"argument {position} of {symbol}: cannot pass a {type(value).__name__}")


class SharedLibrary:
    """A loaded C-simulation library; :meth:`call` runs one of its ``extern "C"`` entry points.

    Arrays are passed as pointers to their data (the callee writes outputs in place, so output arrays must
    be preallocated, C-contiguous and of the element type the C signature expects); Python ints as C
    ``int`` and floats as C ``double``. The callee's return value, if any, is ignored.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._library = ctypes.CDLL(str(self.path))
        except OSError as error:
            raise CSimulationError(f"cannot load C-simulation library {self.path}: {error}") from error

    def has(self, symbol: str) -> bool:
        """Whether the library exports ``symbol``."""
        return hasattr(self._library, symbol)

    def call(self, symbol: str, *args: object, stack_mib: int | None = None) -> None:
        """Call ``symbol(*args)``. With ``stack_mib`` the call runs on a fresh thread with that much stack
        (HLS code keeps whole feature maps in local arrays; large models need more than the default 8 MiB).
        """
        if not self.has(symbol):
            raise CSimulationError(f"{self.path.name} has no entry point '{symbol}'")
        function = getattr(self._library, symbol)
        function.restype = None
        c_args = [_c_argument(value, symbol, n) for n, value in enumerate(args)]
        if stack_mib is None:
            function(*c_args)
            return
        _run_with_stack(lambda: function(*c_args), stack_mib)


_STACK_SIZE_LOCK = threading.Lock()


def _run_with_stack(call: Callable[[], object], stack_mib: int) -> None:
    """Run ``call()`` on a new thread whose stack is ``stack_mib`` MiB, and wait for it."""
    failure: list[BaseException] = []

    def body() -> None:
        try:
            call()
        except BaseException as error:  # re-raised in the caller's thread
            failure.append(error)

    with _STACK_SIZE_LOCK:
        previous = threading.stack_size(stack_mib * 1024 * 1024)
        try:
            worker = threading.Thread(target=body, name="sparsecc-csim")
            worker.start()
        finally:
            threading.stack_size(previous)
    worker.join()
    if failure:
        raise failure[0]


def run_executable(
    executable: str | os.PathLike[str],
    args: Sequence[str] = (),
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
    stack_mib: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a compiled testbench; raises CSimulationError on a non-zero exit (quoting its stderr).

    ``stack_mib`` raises the stack limit of the child (its main thread's stack) for large feature maps.
    """

    def raise_stack_limit() -> None:
        if stack_mib is not None:
            size = stack_mib * 1024 * 1024
            _, hard = resource.getrlimit(resource.RLIMIT_STACK)
            if hard != resource.RLIM_INFINITY:
                size = min(size, hard)
            resource.setrlimit(resource.RLIMIT_STACK, (size, hard))

    argv = [str(Path(executable).resolve()), *args]
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            preexec_fn=raise_stack_limit if stack_mib is not None else None,
        )
    except subprocess.TimeoutExpired as error:
        raise CSimulationError(f"C-simulation {Path(executable).name} ran past {timeout_s} s") from error
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-ERROR_LINES:])
        raise CSimulationError(f"C-simulation {Path(executable).name} exited with status {result.returncode}:\n{tail}")
    return result


def write_binary(path: str | os.PathLike[str], array: np.ndarray, dtype: str = "<f4") -> Path:
    """Write ``array`` as raw little-endian values (default float32, C order) for a testbench to read."""
    target = Path(path)
    np.ascontiguousarray(array, dtype=np.dtype(dtype)).tofile(target)
    return target


def read_binary(path: str | os.PathLike[str], shape: Sequence[int], dtype: str = "<f4") -> np.ndarray:
    """Read raw little-endian values written by a testbench and reshape them; checks the element count."""
    data = np.fromfile(Path(path), dtype=np.dtype(dtype))
    expected = int(np.prod(shape))
    if data.size != expected:
        raise CSimulationError(f"{path}: expected {expected} values of {dtype}, found {data.size}")
    return data.reshape(tuple(shape))
