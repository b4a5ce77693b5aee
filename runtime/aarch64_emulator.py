"""A local aarch64 "board": TVM's RPC server run by an aarch64 Python under ``qemu-aarch64`` on 127.0.0.1.

``scripts/setup_aarch64.sh`` (``make aarch64-env``) assembles the emulated environment outside the repository:
a root folder with Debian's arm64 Python 3.11, its libraries and TVM's aarch64 wheels. :class:`Aarch64Emulator`
starts ``python -m tvm.exec.rpc_server`` there, waits until it listens, and stops its whole process group on
exit, so a cross-compiled artifact is uploaded and run from the host exactly as on a real Raspberry Pi or
Graviton machine (:mod:`sparsecc.runtime.rpc`).

The server starts its worker through ``sys.executable``; under qemu-user that is an aarch64 binary the kernel
cannot exec, so the server runs with ``sys.executable`` set to a small host script that re-enters the emulator.
The device side loads only TVM's runtime library (``TVM_USE_RUNTIME_LIB=1``), as a board would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ..compiler.errors import DeviceUnavailableError

QEMU = "qemu-aarch64"
PYTHON = "usr/bin/python3.11"
READY_MARK = ".sparsecc-ready"  # written by scripts/setup_aarch64.sh when the root is complete
SETUP_HINT = ("run `make aarch64-env` (scripts/setup_aarch64.sh) to set it up, "
              "or give --rpc HOST:PORT of an aarch64 machine")
#: the server's log line once it listens (tvm.rpc.server: "bind to HOST:PORT")
_BOUND = re.compile(r"bind to [^\s:]+:(\d+)")

#: The server and its worker each import TVM under emulation (~15 s of CPU each); on a busy machine it takes
#: a few times that in wall time.
START_TIMEOUT_S = 600.0


def default_root() -> Path:
    """Where ``scripts/setup_aarch64.sh`` puts the emulated root by default (the same rule as the script:
    ``$SPARSECC_AARCH64_ROOT``, else the user's cache folder)."""
    given = os.environ.get("SPARSECC_AARCH64_ROOT")
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sparsecc" / "aarch64"


def emulator_problem(root: Path | None = None) -> str | None:
    """Why the local aarch64 emulator cannot run here (one sentence ending in how to fix it), or None."""
    root = root or default_root()
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed; {SETUP_HINT}"
    if not (root / PYTHON).is_file() or not (root / READY_MARK).is_file():
        return f"no emulated aarch64 environment in {root}; {SETUP_HINT}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Aarch64Emulator:
    """``with Aarch64Emulator() as emu:`` a TVM RPC server under qemu at ``emu.host:emu.port``.

    Starting takes tens of seconds (two emulated ``import tvm``); everything it starts (the server, its
    worker, their session processes and temporary files) is stopped and removed on exit, also on error.
    """

    host = "127.0.0.1"

    def __init__(self, root: Path | None = None, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.root = Path(root or default_root())
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.start_seconds = 0.0  # from launch until the server listened
        self._begin = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    def __enter__(self) -> Aarch64Emulator:
        self.launch()  # the caller may compile meanwhile; ``address`` waits until the server listens
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``HOST:PORT`` of the running server (waits until it listens)."""
        self.wait_ready()
        return f"{self.host}:{self.port}"

    def _command(self, work: Path, port: int) -> list[str]:
        qemu = shutil.which(QEMU) or QEMU
        python = self.root / PYTHON
        launcher = work / "python3.11"  # what the server sees as sys.executable
        launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(qemu)} -L {shlex.quote(str(self.root))} '
                            f'{shlex.quote(str(python))} "$@"\n')
        launcher.chmod(0o755)
        argv = ["rpc_server", "--host", self.host, "--port", str(port), "--port-end", str(port + 100)]
        code = ("import runpy, sys\n"
                f"sys.executable = {str(launcher)!r}\n"
                f"sys.argv = {argv!r}\n"
                "runpy.run_module('tvm.exec.rpc_server', run_name='__main__')\n")
        return [qemu, "-L", str(self.root), str(python), "-c", code]

    def start(self) -> None:
        """Launch the server and wait until it listens."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the server in the background (it takes tens of seconds to listen)."""
        problem = emulator_problem(self.root)
        if problem:
            raise DeviceUnavailableError(f"cannot emulate aarch64: {problem}")
        if self._proc is not None:
            return
        self._dir = Path(tempfile.mkdtemp(prefix="sparsecc-aarch64-"))
        log = self._dir / "server.log"
        env = {**os.environ, "TVM_USE_RUNTIME_LIB": "1", "TMPDIR": str(self._dir), "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)  # host packages must not shadow the aarch64 ones
        env.pop("PYTHONHOME", None)
        self._begin = time.monotonic()
        try:
            with open(log, "wb") as out:
                # its own process group, so stop() ends the server, its worker and their forks together
                self._proc = subprocess.Popen(self._command(self._dir, _free_port()), stdout=out,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self._dir,
                                              env=env, start_new_session=True)
        except OSError as exc:
            self.stop()
            raise DeviceUnavailableError(f"cannot start {QEMU}: {exc}") from None

    def wait_ready(self) -> None:
        """Block until the launched server listens (DeviceUnavailableError, server stopped, if it fails)."""
        if self.port:
            return
        if self._proc is None or self._dir is None:
            raise DeviceUnavailableError("the aarch64 emulator was not started")
        try:
            self.port = self._wait_bound(self._dir / "server.log")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - self._begin

    def _wait_bound(self, log: Path) -> int:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            match = _BOUND.search(log.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            if self._proc.poll() is not None:
                tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
                raise DeviceUnavailableError(f"the emulated aarch64 RPC server exited with code "
                                             f"{self._proc.returncode}: {tail[0] if tail else 'no output'}")
            if time.monotonic() > deadline:
                raise DeviceUnavailableError(f"the emulated aarch64 RPC server did not start within "
                                             f"{self.start_timeout_s:.0f} s")
            time.sleep(0.5)  # polls a log file the server writes; nothing to wait on instead

    def stop(self) -> None:
        """End the server's process group (TERM, then KILL after 10 s) and remove its files."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10.0)
            _signal_group(proc.pid, signal.SIGKILL)  # the worker and session forks, and a leader that hung
            proc.wait(10.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.port = 0


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group may have exited already
        os.killpg(pgid, sig)
