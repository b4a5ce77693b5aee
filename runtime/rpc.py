"""Running llvm artifacts on another machine through TVM RPC, the way TVM users run boards.

The device runs TVM's RPC server (``python -m tvm.exec.rpc_server`` on a Raspberry Pi, Jetson or Graviton
machine, or :class:`~sparsecc.runtime.aarch64_emulator.Aarch64Emulator` here); the host uploads the
artifact's ``model.so``, loads it remotely and runs its Relax VM there. :func:`remote_session` opens the
session a manifest needs: ``--rpc HOST:PORT`` (one server), ``--rpc-tracker HOST:PORT --rpc-key KEY`` (a
pool behind a tracker), or, for an aarch64 artifact on a host of another architecture and no address given,
the local emulator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.errors import ArtifactError, DeviceUnavailableError, InputError
from .artifact import CompiledModel, Manifest, read_manifest
from .host import host_arch, normalize_arch


@dataclasses.dataclass(frozen=True)
class RemoteOptions:
    """Where to run: one RPC server (``rpc``), or a tracker and a device key; all None means "here"."""

    rpc: str | None = None
    rpc_tracker: str | None = None
    rpc_key: str | None = None

    def __post_init__(self) -> None:
        if self.rpc and self.rpc_tracker:
            raise InputError("give either --rpc HOST:PORT or --rpc-tracker HOST:PORT, not both")
        if self.rpc_tracker and not self.rpc_key:
            raise InputError("--rpc-tracker needs --rpc-key KEY (the device kind the tracker serves)")
        if self.rpc_key and not self.rpc_tracker:
            raise InputError("--rpc-key applies with --rpc-tracker only")
        for flag, value in (("--rpc", self.rpc), ("--rpc-tracker", self.rpc_tracker)):
            if value is not None:
                parse_address(value, flag)

    @property
    def given(self) -> bool:
        return bool(self.rpc or self.rpc_tracker)


def parse_address(text: str, flag: str = "--rpc") -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); a malformed address is an InputError naming ``flag``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{flag} must be HOST:PORT (e.g. 192.168.1.20:9090), got '{text}'")
    return host, int(port)


def emulated(triple: str | None) -> bool:
    """True when code for ``triple`` runs here only through the aarch64 emulator (aarch64 on another host)."""
    return bool(triple) and normalize_arch(str(triple)) == "aarch64" and host_arch() != "aarch64"


def needs_emulator(manifest: Manifest) -> bool:
    """True for an llvm artifact built for aarch64 when this host is not aarch64."""
    return manifest.target == "llvm" and emulated(manifest.target_options.get("mtriple"))


def connect(options: RemoteOptions) -> Any:
    """Open a TVM RPC session to the server or tracker in ``options`` (DeviceUnavailableError when unreachable)."""
    from tvm import rpc

    try:
        if options.rpc_tracker:
            host, port = parse_address(options.rpc_tracker, "--rpc-tracker")
            return rpc.connect_tracker(host, port).request(options.rpc_key)
        assert options.rpc is not None
        host, port = parse_address(options.rpc)
        return rpc.connect(host, port)
    except Exception as exc:  # TVM raises its own error types (TVMError, RuntimeError, socket errors)
        where = options.rpc_tracker or options.rpc
        message = str(exc).strip().splitlines()
        raise DeviceUnavailableError(f"cannot reach the TVM RPC server at {where}: "
                                     f"{message[-1] if message else type(exc).__name__}") from None


@contextlib.contextmanager
def remote_session(manifest: Manifest, options: RemoteOptions | None = None) -> Iterator[Any]:
    """The RPC session ``manifest``'s artifact runs in: the given server or tracker, else the local aarch64
    emulator when the artifact is for aarch64 and this host is not, else None (run it here)."""
    options = options or RemoteOptions()
    if options.given:
        yield connect(options)
        return
    if not needs_emulator(manifest):
        yield None
        return
    from .aarch64_emulator import Aarch64Emulator

    with Aarch64Emulator() as emulator:
        yield connect(RemoteOptions(rpc=emulator.address))


class RemoteModel(CompiledModel):
    """An llvm artifact run on the other end of a TVM RPC session (uploaded and loaded on first use)."""

    def __init__(self, manifest: Manifest, library: Path, session: Any) -> None:
        super().__init__(manifest)
        if manifest.target != "llvm":
            raise ArtifactError(f"only llvm artifacts run over TVM RPC, not '{manifest.target}' ones")
        self._library = library
        self._session = session
        self._main: Any = None

    @staticmethod
    def load(path: str | os.PathLike[str], session: Any) -> RemoteModel:
        manifest = read_manifest(path)
        return RemoteModel(manifest, Path(path) / manifest.files["library"], session)

    def _machine(self) -> Any:
        if self._main is None:
            from tvm import relax

            name = f"sparsecc_{self.manifest.model}.so"
            try:
                self._session.upload(str(self._library), name)
                library = self._session.load_module(name)
            except Exception as exc:  # TVM's remote errors arrive as TVMError/RPCError
                lines = str(exc).strip().splitlines()
                raise ArtifactError(f"the RPC device cannot load {self._library}: "
                                    f"{lines[-1] if lines else type(exc).__name__}") from None
            self._main = relax.VirtualMachine(library, self._session.cpu())["main"]
        return self._main

    def __enter__(self) -> RemoteModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the remote module and VM. A TVM RPC server serves one session at a time and ends it only
        when the client has freed every remote object (the VM's Python wrapper sits in a reference cycle,
        hence the collection), so a later session would otherwise wait for this one."""
        self._main = None
        self._session = None
        gc.collect()

    def _execute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        if self._session is None:
            raise ArtifactError("this remote model was closed")
        main = self._machine()
        device = self._session.cpu()
        # tvm.runtime.tensor allocates with TVM's alignment on the device and copies the data over
        result = main(*[tvm.runtime.tensor(np.ascontiguousarray(x), device) for x in inputs])
        outs = [result] if hasattr(result, "numpy") else list(result)
        return [o.numpy() for o in outs]


@contextlib.contextmanager
def exported_remote_model(compiled: CompiledModel, session: Any) -> Iterator[RemoteModel]:
    """``compiled`` (fresh from the compiler) exported to a temporary artifact and run through ``session``."""
    folder = Path(tempfile.mkdtemp(prefix="sparsecc-remote-"))
    model = None
    try:
        model = RemoteModel.load(compiled.export(folder / "artifact"), session)
        yield model
    finally:
        if model is not None:
            model.close()
        shutil.rmtree(folder, ignore_errors=True)
